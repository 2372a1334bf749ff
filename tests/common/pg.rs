//! The PostgreSQL the tests use: `MASKD_TEST_PG_URL`, a superuser on a throwaway cluster that
//! `scripts/test` starts on loopback (scripts/lib/postgres.sh). Each test takes a database of
//! its own. Without the variable the calling test fails, naming what to run; it never passes
//! silently.

use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The cluster's URL (its `postgres` database).
pub fn admin_url() -> String {
    std::env::var("MASKD_TEST_PG_URL").expect(
        "MASKD_TEST_PG_URL is not set: run scripts/test, which starts a throwaway PostgreSQL \
         on loopback, or set it to a superuser URL of a PostgreSQL you own",
    )
}

/// Runs SQL on the cluster's `postgres` database as the superuser and returns the first
/// column of each row as text.
pub fn admin(sql: &str) -> Vec<Option<String>> {
    run_on(&admin_url(), sql)
}

pub fn run_on(url: &str, sql: &str) -> Vec<Option<String>> {
    let url = url.to_string();
    let sql = sql.to_string();
    // On a thread of its own: a test may call this from inside a runtime.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to the test PostgreSQL: {e}"));
            tokio::spawn(conn);
            let msgs = client
                .simple_query(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            msgs.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(String::from)),
                    _ => None,
                })
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// A new, empty database on the cluster; returns its URL.
pub fn fresh_database(prefix: &str) -> String {
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    admin(&format!("CREATE DATABASE {name}"));
    let base = admin_url();
    let at = base.rfind('/').expect("a URL with a database");
    format!("{}/{name}", &base[..at])
}
