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

/// A PostgreSQL cluster of a test's own (initdb in a temporary directory, a free loopback
/// port, run as the `postgres` user when the test runs as root), for tests that stop and
/// start the server. Stopped and removed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    pub port: u16,
}

fn as_pg(program: &std::path::Path) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries (scripts/test installs Debian's postgresql)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql");
        let dir = tempfile::tempdir().unwrap();
        let _ = std::process::Command::new("chown")
            .args(["postgres"])
            .arg(dir.path())
            .status();
        let ok = as_pg(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", "maskd", "--auth=trust", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb");
        let port = super::free_port();
        let c = Cluster { dir, bin, port };
        c.up();
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://maskd@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (again) on the same port and data.
    pub fn up(&self) {
        let ok = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "30", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={}",
                self.port,
                self.dir.path().display()
            ))
            .arg("start")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "pg_ctl start");
    }

    /// Stops the server (fast: connections are cut).
    pub fn down(&self) {
        let _ = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A daemon on `url` as node `node` (`store.node_timeout` 3 s), with `services` (the config's
/// services and peers).
pub fn node(dir: &std::path::Path, url: &str, node: u16, services: &str) -> super::Daemon {
    node_with_timeout(dir, url, node, services, "3s")
}

/// `node` with `store.node_timeout` `timeout`: longer where a test must not see a node
/// taken for gone while the machine is busy (its heartbeat is written every third of it).
pub fn node_with_timeout(
    dir: &std::path::Path,
    url: &str,
    node: u16,
    services: &str,
    timeout: &str,
) -> super::Daemon {
    let edit = |cfg: &str| {
        let start = cfg.find("store:").unwrap();
        let end = start + cfg[start..].find("\ntimer_tick").unwrap();
        format!(
            "{}store:\n  url: \"{url}\"\n  node_id: {node}\n  node_timeout: \"{timeout}\"{}",
            &cfg[..start],
            &cfg[end..]
        )
    };
    super::Daemon::start_edited(dir, services, edit)
}
