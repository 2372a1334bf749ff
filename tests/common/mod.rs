//! Test support: starts the real `maskd` binary on loopback with a config of its own in a
//! temporary directory, and speaks plain HTTP/1.1 to it over a TCP socket.
#![allow(dead_code)]

pub mod hook;
pub mod load;
pub mod media;
pub mod media_call;
pub mod pg;
pub mod recordings;
pub mod seed;
pub mod sip;
pub mod sipp;
pub mod smpp;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-token";

/// The Python that has the test peers' PyPI packages (twilio, smpplib, schemathesis):
/// `MASKD_PYTHON`, or `./.venv/bin/python`, which `scripts/test` creates. Without it the
/// calling test fails (it never passes silently).
pub fn python() -> String {
    if let Ok(p) = std::env::var("MASKD_PYTHON") {
        return p;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    assert!(
        Path::new(venv).exists(),
        "no Python with the test packages: run scripts/test (it creates .venv), or set MASKD_PYTHON"
    );
    venv.to_string()
}

/// A free loopback port (bound and released; the daemon binds it right after).
/// A port the kernel just gave and took back is often the next one it gives: never the same
/// port twice in one test process (among the last 4,096 handed out), so one daemon's API and
/// metrics listeners, or two tests running side by side, do not get the same.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::VecDeque<u16>> =
        std::sync::Mutex::new(std::collections::VecDeque::new());
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            if given.len() >= 4096 {
                given.pop_front();
            }
            given.push_back(port);
            return port;
        }
    }
    panic!("the kernel keeps giving ports already handed out");
}

/// `maskd check-config` on the test config with `sections` (as `config_yaml`) in `dir`:
/// its exit code and standard error.
pub fn check_config(dir: &Path, sections: &str) -> (Option<i32>, String) {
    let path = dir.join("check.yaml");
    std::fs::write(&path, config_yaml(dir, free_port(), free_port(), sections)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn config_yaml(dir: &Path, api: u16, metrics: u16, services: &str) -> String {
    let smpp = if services.contains("smpp:") {
        String::new()
    } else {
        format!("smpp:\n  listen: \"127.0.0.1:{}\"\n", free_port())
    };
    let sip = if services.contains("sip:") {
        ""
    } else {
        "sip:\n  listen: \"127.0.0.1:0\"\n"
    };
    format!(
        r#"api:
  listen: "127.0.0.1:{api}"
  public_url: "http://127.0.0.1:{api}"
  account_sid: "{ACCOUNT}"
  auth_token: "{TOKEN}"
metrics:
  listen: "127.0.0.1:{metrics}"
store:
  {store}
timer_tick: "50ms"
shutdown_grace: "5s"
{smpp}{sip}{services}
"#,
        store = store_line(dir)
    )
}

/// The daemon's store: SQLite in `dir`, or with `MASKD_TEST_STORE=postgres` a PostgreSQL
/// database of the test cluster's own to `dir` (made at the first start, its URL kept in
/// `dir/pg-url`, so a restart finds it): `scripts/test` runs a set of the end-to-end tests
/// again that way.
pub fn store_line(dir: &Path) -> String {
    if std::env::var("MASKD_TEST_STORE").as_deref() == Ok("postgres") {
        format!("url: \"{}\"", pg_database_of(dir))
    } else {
        format!("path: \"{}\"", dir.join("maskd.db").display())
    }
}

/// The store a daemon on `dir` uses (see `store_line`), opened in the test's process.
pub fn open_store(dir: &Path) -> std::sync::Arc<dyn maskd::core::store::Store> {
    let fail: Box<dyn Fn(maskd::core::store::StoreError) + Send> =
        Box::new(|e| panic!("store failed: {e}"));
    if std::env::var("MASKD_TEST_STORE").as_deref() == Ok("postgres") {
        std::sync::Arc::new(maskd::store::PgStore::open(&pg_database_of(dir), 1, fail).unwrap())
    } else {
        std::sync::Arc::new(maskd::store::SqliteStore::open(&dir.join("maskd.db"), fail).unwrap())
    }
}

/// The PostgreSQL database kept for `dir` (created on first use).
pub fn pg_database_of(dir: &Path) -> String {
    let file = dir.join("pg-url");
    match std::fs::read_to_string(&file) {
        Ok(url) => url,
        Err(_) => {
            let url = pg::fresh_database("e2e");
            std::fs::write(&file, &url).unwrap();
            url
        }
    }
}

pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    /// The SMPP listener, as the daemon reported it.
    pub smpp: SocketAddr,
    /// The SIP (UDP) listener, as the daemon reported it.
    pub sip: SocketAddr,
    pub log: mpsc::Receiver<String>,
    pub lines: Vec<String>,
    /// The `maskd ready` line.
    pub ready: String,
}

impl Daemon {
    /// A daemon on a fresh store with no services.
    pub fn start(dir: &Path) -> Daemon {
        Daemon::start_with(dir, "")
    }

    /// A daemon with `services_yaml` appended to its config (e.g. a `services:` list).
    pub fn start_with(dir: &Path, services_yaml: &str) -> Daemon {
        Daemon::start_edited(dir, services_yaml, str::to_string)
    }

    /// Like `start_with`, with the whole config text passed through `edit` first. A port
    /// `free_port` handed out can be taken by another test before the daemon binds it (the
    /// daemon then exits 69 naming it): that start is retried on fresh ports, at most 3 times.
    pub fn start_edited(dir: &Path, services_yaml: &str, edit: impl Fn(&str) -> String) -> Daemon {
        Daemon::start_full(dir, services_yaml, edit, &[])
    }

    /// Like `start_with`, with environment variables set for the daemon.
    pub fn start_env(dir: &Path, services_yaml: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_full(dir, services_yaml, str::to_string, env)
    }

    fn start_full(
        dir: &Path,
        services_yaml: &str,
        edit: impl Fn(&str) -> String,
        env: &[(&str, &str)],
    ) -> Daemon {
        let cfg = dir.join("config.yaml");
        for attempt in 1..=3 {
            let (api, metrics) = (free_port(), free_port());
            std::fs::write(&cfg, edit(&config_yaml(dir, api, metrics, services_yaml))).unwrap();
            match Daemon::spawn(dir, &cfg, api, metrics, env) {
                Ok(d) => return d,
                Err(log) if attempt < 3 && log.contains("cannot listen") => continue,
                Err(log) => panic!("maskd did not start; log:\n{log}"),
            }
        }
        unreachable!()
    }

    /// Restarts on the same directory and store (new ports).
    pub fn restart(dir: &Path, services_yaml: &str) -> Daemon {
        Daemon::start_with(dir, services_yaml)
    }

    fn spawn(
        dir: &Path,
        cfg: &Path,
        api: u16,
        metrics: u16,
        env: &[(&str, &str)],
    ) -> Result<Daemon, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_maskd"))
            .args(["run", "--config"])
            .arg(cfg)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,maskd=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn maskd");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            api: ([127, 0, 0, 1], api).into(),
            metrics: ([127, 0, 0, 1], metrics).into(),
            smpp: ([127, 0, 0, 1], 0).into(),
            sip: ([127, 0, 0, 1], 0).into(),
            log: rx,
            lines: Vec::new(),
            ready: String::new(),
        };
        let Some(ready) = d.try_wait_for_log("maskd ready", Duration::from_secs(30)) else {
            return Err(d.lines.join("\n"));
        };
        if let Some(addr) = ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix("smpp="))
        {
            d.smpp = addr.parse().expect("smpp address in the ready line");
        }
        if let Some(addr) = ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix("sip="))
        {
            d.sip = addr.parse().expect("sip address in the ready line");
        }
        d.ready = ready;
        Ok(d)
    }

    /// Reads log lines until one contains `needle`; panics after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        self.try_wait_for_log(needle, timeout).unwrap_or_else(|| {
            panic!(
                "no log line with {needle:?} within {timeout:?}; log so far:\n{}",
                self.lines.join("\n")
            )
        })
    }

    /// Reads log lines until one contains `needle`; `None` after `timeout` or when the log
    /// ends (the daemon exited).
    pub fn try_wait_for_log(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.log.recv_timeout(left).ok()?;
            self.lines.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "maskd did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        let c = self.child.as_ref().expect("running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
    }

    /// Waits (at most `timeout`) for the process to exit: its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Remaining log lines after the process has exited.
    pub fn drain_log(&mut self) -> Vec<String> {
        while let Ok(l) = self.log.recv_timeout(Duration::from_millis(200)) {
            self.lines.push(l);
        }
        self.lines.clone()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn get(&self, path: &str) -> Resp {
        http(self.api, "GET", path, Some((ACCOUNT, TOKEN)), None)
    }
    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        http(
            self.api,
            "POST",
            path,
            Some((ACCOUNT, TOKEN)),
            Some(&encode(form)),
        )
    }
    pub fn delete(&self, path: &str) -> Resp {
        http(self.api, "DELETE", path, Some((ACCOUNT, TOKEN)), None)
    }
    /// An address the ready line gives as `name=addr` (e.g. `smpp_tls`).
    pub fn ready_addr(&self, name: &str) -> SocketAddr {
        let prefix = format!("{name}=");
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {name} address in {:?}", self.ready))
    }

    pub fn metrics_text(&self) -> String {
        http(self.metrics, "GET", "/metrics", None, None).body
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn encode(form: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        s.append_pair(k, v);
    }
    s.finish()
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as received (binary bodies, such as a WAV).
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Asserts a Twilio error body with this status and code.
    pub fn assert_error(&self, status: u16, code: u64) {
        assert_eq!(self.status, status, "{}", self.body);
        let j = self.json();
        assert_eq!(j["code"], code, "{}", self.body);
        assert_eq!(j["status"], status, "{}", self.body);
        assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            j["more_info"],
            format!("https://www.twilio.com/docs/errors/{code}")
        );
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&str>,
) -> Resp {
    raw_http(
        addr,
        method,
        path,
        auth,
        body.map(str::as_bytes),
        "application/x-www-form-urlencoded",
    )
}

pub fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&[u8]>,
    content_type: &str,
) -> Resp {
    raw_http_with(addr, method, path, auth, &[], body, content_type)
}

/// `raw_http` with more request headers.
pub fn raw_http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    content_type: &str,
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((u, p)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    let body = body.unwrap_or(b"");
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (raw, &b""[..]),
    };
    let head = String::from_utf8_lossy(head).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let bytes = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).to_string(),
        bytes,
    }
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let Some(eol) = s.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size = String::from_utf8_lossy(&s[..eol]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Path of a created resource's `url` (relative to the daemon's base).
pub fn path_of(v: &serde_json::Value, base: &str) -> String {
    v["url"]
        .as_str()
        .unwrap()
        .strip_prefix(base)
        .unwrap()
        .to_string()
}

/// The `smpp:` section most end-to-end tests use: carriers A and B as accounts, messages to
/// +1415555100x routed via carrier A and to +1415555200x via carrier B. `extra` adds keys
/// under `smpp:` (indented two spaces).
pub fn two_carriers(extra: &str) -> String {
    format!(
        r#"smpp:
  listen: "127.0.0.1:0"
{extra}  accounts:
    - system_id: "carrier-a"
      password: "secret-a"
    - system_id: "carrier-b"
      password: "secret-b"
  routes:
    - prefix: "+1415555100"
      via: "carrier-a"
    - prefix: "+1415555200"
      via: "carrier-b"
"#
    )
}

/// Creates session `name` in `service` between `a` and `b` over the API; returns their proxy
/// numbers (E.164, with `+`), in that order.
pub fn two_party_session(
    d: &Daemon,
    service: &str,
    name: &str,
    a: &str,
    b: &str,
) -> (String, String) {
    let p1 = format!(r#"{{"Identifier":"{a}"}}"#);
    let p2 = format!(r#"{{"Identifier":"{b}"}}"#);
    let r = d.post(
        &format!("/v1/Services/{service}/Sessions"),
        &[
            ("UniqueName", name),
            ("Participants", &p1),
            ("Participants", &p2),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let parts = d
        .get(&format!(
            "/v1/Services/{service}/Sessions/{name}/Participants"
        ))
        .json();
    let proxy = |i: usize| {
        parts["participants"][i]["proxy_identifier"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (proxy(0), proxy(1))
}

/// A session's participants as the API lists them: (identifier, proxy_identifier), in the
/// API's order.
pub fn participant_pairs(d: &Daemon, service: &str, session: &str) -> Vec<(String, String)> {
    let list = d
        .get(&format!(
            "/v1/Services/{service}/Sessions/{session}/Participants"
        ))
        .json();
    list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["identifier"].as_str().unwrap().to_string(),
                p["proxy_identifier"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
