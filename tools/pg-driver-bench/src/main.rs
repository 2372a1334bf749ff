//! The PostgreSQL client for maskd's store, chosen by measurement (issue 14): the store's
//! writer commits a batch of row upserts in one transaction (group commit), and its readers
//! look rows up by primary key. Both crates, on one connection each, from a plain thread
//! running its own current-thread runtime (as a store thread would), against the same local
//! PostgreSQL, on an interactions-shaped table:
//!
//! - `tokio-postgres/pipelined`: one prepared upsert per row, all of a batch's executes
//!   polled together (sent before any answer is read), in one transaction.
//! - `tokio-postgres/unnest`: one `INSERT … SELECT FROM UNNEST($1::text[], …)` per batch.
//! - `sqlx/per-row`: one upsert per row in one transaction (sqlx waits for each answer).
//! - `sqlx/unnest`: the same UNNEST statement through sqlx.
//!
//! Usage: `DATABASE_URL=postgres://… pg-driver-bench [BATCHES]` (`./run` starts a throwaway
//! server on loopback and runs it).

use std::time::{Duration, Instant};

use futures_util::future::try_join_all;

const UPSERT: &str = "INSERT INTO interactions (sid, seq, session_sid, service_sid, data, type, \
    in_participant, in_resource_sid, in_status, out_participant, out_resource_sid, out_status, \
    date_created, date_updated) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) \
    ON CONFLICT (sid) DO UPDATE SET out_status = EXCLUDED.out_status, \
    date_updated = EXCLUDED.date_updated, data = EXCLUDED.data";

const UNNEST: &str = "INSERT INTO interactions (sid, seq, session_sid, service_sid, data, type, \
    in_participant, in_resource_sid, in_status, out_participant, out_resource_sid, out_status, \
    date_created, date_updated) SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], \
    $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
    $11::text[], $12::text[], $13::int8[], $14::int8[]) \
    ON CONFLICT (sid) DO UPDATE SET out_status = EXCLUDED.out_status, \
    date_updated = EXCLUDED.date_updated, data = EXCLUDED.data";

const SCHEMA: &str = "DROP TABLE IF EXISTS interactions; CREATE TABLE interactions (
    sid TEXT PRIMARY KEY, seq BIGINT NOT NULL, session_sid TEXT NOT NULL, service_sid TEXT NOT NULL,
    data TEXT NOT NULL, type TEXT NOT NULL, in_participant TEXT, in_resource_sid TEXT,
    in_status TEXT, out_participant TEXT, out_resource_sid TEXT, out_status TEXT,
    date_created BIGINT NOT NULL, date_updated BIGINT NOT NULL);
    CREATE INDEX interactions_session ON interactions(session_sid, seq);";

/// One row, as maskd writes an interaction.
#[derive(Clone)]
struct Row {
    sid: String,
    seq: i64,
    session: String,
    service: String,
    data: String,
    kind: String,
    in_p: String,
    in_r: String,
    in_s: String,
    out_p: String,
    out_r: String,
    out_s: String,
    created: i64,
    updated: i64,
}

fn hex(n: u64) -> String {
    format!("{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn row(n: u64) -> Row {
    Row {
        sid: format!("KI{}", hex(n)),
        seq: n as i64,
        session: format!("KC{}", hex(n / 4)),
        service: format!("KS{}", hex(1)),
        data: "{\"body\":\"hello there, this is a message of ordinary length\"}".into(),
        kind: "message".into(),
        in_p: format!("KP{}", hex(n / 4 * 2)),
        in_r: format!("SM{}", hex(n + 7)),
        in_s: "received".into(),
        out_p: format!("KP{}", hex(n / 4 * 2 + 1)),
        out_r: format!("SM{}", hex(n + 11)),
        out_s: "sent".into(),
        created: 1_800_000_000 + n as i64,
        updated: 1_800_000_000 + n as i64,
    }
}

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

fn params(r: &Row) -> [Param<'_>; 14] {
    [
        &r.sid, &r.seq, &r.session, &r.service, &r.data, &r.kind, &r.in_p, &r.in_r, &r.in_s,
        &r.out_p, &r.out_r, &r.out_s, &r.created, &r.updated,
    ]
}

/// Column arrays for UNNEST.
struct Cols {
    text: [Vec<String>; 11],
    seq: Vec<i64>,
    created: Vec<i64>,
    updated: Vec<i64>,
}

fn columns(rows: &[Row]) -> Cols {
    let t = |f: &dyn Fn(&Row) -> &String| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    Cols {
        text: [
            t(&|r| &r.sid),
            t(&|r| &r.session),
            t(&|r| &r.service),
            t(&|r| &r.data),
            t(&|r| &r.kind),
            t(&|r| &r.in_p),
            t(&|r| &r.in_r),
            t(&|r| &r.in_s),
            t(&|r| &r.out_p),
            t(&|r| &r.out_r),
            t(&|r| &r.out_s),
        ],
        seq: rows.iter().map(|r| r.seq).collect(),
        created: rows.iter().map(|r| r.created).collect(),
        updated: rows.iter().map(|r| r.updated).collect(),
    }
}

struct Stats(Vec<Duration>);

impl Stats {
    fn report(&mut self, name: &str, batch: usize) {
        self.0.sort();
        let n = self.0.len();
        let total: Duration = self.0.iter().sum();
        let p = |q: f64| self.0[((n as f64 - 1.0) * q) as usize].as_micros();
        println!(
            "client={name} batch={batch} commits={n} p50_us={} p99_us={} rows_per_s={:.0}",
            p(0.5),
            p(0.99),
            (n * batch) as f64 / total.as_secs_f64()
        );
    }
}

async fn tokio_postgres_runs(url: &str, batches: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (mut c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute(SCHEMA).await?;
    let st = c.prepare(UPSERT).await?;
    let un = c.prepare(UNNEST).await?;
    let mut next = 0u64;
    for batch in [10usize, 100, 1000] {
        let mut s = Stats(Vec::new());
        for _ in 0..batches {
            let rows: Vec<Row> = (next..next + batch as u64).map(row).collect();
            next += batch as u64;
            let t = Instant::now();
            let tx = c.transaction().await?;
            try_join_all(rows.iter().map(|r| tx.execute_raw(&st, params(r)))).await?;
            tx.commit().await?;
            s.0.push(t.elapsed());
        }
        s.report("tokio-postgres/pipelined", batch);
        let mut s = Stats(Vec::new());
        for _ in 0..batches {
            let rows: Vec<Row> = (next..next + batch as u64).map(row).collect();
            next += batch as u64;
            let t = Instant::now();
            let k = columns(&rows);
            let tx = c.transaction().await?;
            let [a, b, cc, d, e, f, g, h, i, j, l] = &k.text;
            tx.execute(
                &un,
                &[
                    a, &k.seq, b, cc, d, e, f, g, h, i, j, l, &k.created, &k.updated,
                ],
            )
            .await?;
            tx.commit().await?;
            s.0.push(t.elapsed());
        }
        s.report("tokio-postgres/unnest", batch);
    }
    // Point lookups by primary key.
    let get = c
        .prepare("SELECT * FROM interactions WHERE sid = $1")
        .await?;
    let mut s = Stats(Vec::new());
    for n in 0..20_000u64 {
        let sid = format!("KI{}", hex(n * 7 % next));
        let t = Instant::now();
        let r = c.query_opt(&get, &[&sid]).await?;
        s.0.push(t.elapsed());
        assert!(r.is_some());
    }
    s.report("tokio-postgres/lookup", 1);
    Ok(())
}

async fn sqlx_runs(url: &str, batches: usize) -> Result<(), Box<dyn std::error::Error>> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(SCHEMA).execute(&mut c).await?;
    let mut next = 0u64;
    for batch in [10usize, 100, 1000] {
        let mut s = Stats(Vec::new());
        for _ in 0..batches {
            let rows: Vec<Row> = (next..next + batch as u64).map(row).collect();
            next += batch as u64;
            let t = Instant::now();
            let mut tx = c.begin().await?;
            for r in &rows {
                sqlx::query(UPSERT)
                    .bind(&r.sid)
                    .bind(r.seq)
                    .bind(&r.session)
                    .bind(&r.service)
                    .bind(&r.data)
                    .bind(&r.kind)
                    .bind(&r.in_p)
                    .bind(&r.in_r)
                    .bind(&r.in_s)
                    .bind(&r.out_p)
                    .bind(&r.out_r)
                    .bind(&r.out_s)
                    .bind(r.created)
                    .bind(r.updated)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            s.0.push(t.elapsed());
        }
        s.report("sqlx/per-row", batch);
        let mut s = Stats(Vec::new());
        for _ in 0..batches {
            let rows: Vec<Row> = (next..next + batch as u64).map(row).collect();
            next += batch as u64;
            let t = Instant::now();
            let k = columns(&rows);
            let mut tx = c.begin().await?;
            let [a, b, cc, d, e, f, g, h, i, j, l] = &k.text;
            sqlx::query(UNNEST)
                .bind(a)
                .bind(&k.seq)
                .bind(b)
                .bind(cc)
                .bind(d)
                .bind(e)
                .bind(f)
                .bind(g)
                .bind(h)
                .bind(i)
                .bind(j)
                .bind(l)
                .bind(&k.created)
                .bind(&k.updated)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            s.0.push(t.elapsed());
        }
        s.report("sqlx/unnest", batch);
    }
    let mut s = Stats(Vec::new());
    for n in 0..20_000u64 {
        let sid = format!("KI{}", hex(n * 7 % next));
        let t = Instant::now();
        let r = sqlx::query("SELECT * FROM interactions WHERE sid = $1")
            .bind(&sid)
            .fetch_optional(&mut c)
            .await?;
        s.0.push(t.elapsed());
        assert!(r.is_some());
    }
    s.report("sqlx/lookup", 1);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let batches: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Twice each, alternating, so neither always runs on a colder server.
    for _ in 0..2 {
        rt.block_on(tokio_postgres_runs(&url, batches))?;
        rt.block_on(sqlx_runs(&url, batches))?;
    }
    Ok(())
}
