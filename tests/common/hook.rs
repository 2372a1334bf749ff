//! A real HTTP receiver on loopback for callback tests: records every request (path,
//! headers, form parameters) and answers each path as told (status, content type, body, or
//! no answer at all to force a timeout).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub params: Vec<(String, String)>,
    /// The status it was answered with (`None`: never answered).
    pub answered: Option<u16>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a path answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    Json(String),
    /// Reads the request and never answers (the sender's timeout fires).
    Silent,
}

#[derive(Default)]
struct Shared {
    requests: Vec<Request>,
    replies: HashMap<String, Reply>,
}

#[derive(Clone)]
pub struct Hook {
    pub addr: SocketAddr,
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl Hook {
    pub fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Hook { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn reply(&self, path: &str, r: Reply) {
        self.shared
            .0
            .lock()
            .unwrap()
            .replies
            .insert(path.to_string(), r);
    }

    pub fn requests(&self, path: &str) -> Vec<Request> {
        let g = self.shared.0.lock().unwrap();
        g.requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The GET requests to `path` (whatever their query string), each as its query's
    /// parameters, decoded as UTF-8 (invalid bytes replaced).
    pub fn queries(&self, path: &str) -> Vec<Vec<(String, String)>> {
        let g = self.shared.0.lock().unwrap();
        g.requests
            .iter()
            .filter_map(|r| {
                let (p, q) = r.path.split_once('?').unwrap_or((&r.path, ""));
                (p == path).then(|| {
                    form_urlencoded::parse(q.as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
            })
            .collect()
    }

    /// The raw (percent-decoded) bytes of parameter `name` in each GET request to `path`:
    /// for binary or UCS-2 text, which is no UTF-8.
    pub fn query_bytes(&self, path: &str, name: &str) -> Vec<Vec<u8>> {
        let g = self.shared.0.lock().unwrap();
        g.requests
            .iter()
            .filter_map(|r| {
                let (p, q) = r.path.split_once('?')?;
                (p == path).then_some(q)?;
                q.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k == name).then(|| percent_decode(v))
                })
            })
            .collect()
    }

    /// Waits (bounded) until requests to `path` (query strings ignored) satisfy `done`.
    pub fn wait_queries(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&[Vec<(String, String)>]) -> bool,
    ) -> Vec<Vec<(String, String)>> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        loop {
            let got = self.queries(path);
            let now = Instant::now();
            if done(&got) || now >= deadline {
                return got;
            }
            let g = m.lock().unwrap();
            let _ = cv.wait_timeout(g, (deadline - now).min(Duration::from_millis(100)));
        }
    }

    /// Waits (bounded) until the requests to `path` satisfy `done`.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap();
        loop {
            let got: Vec<Request> = g
                .requests
                .iter()
                .filter(|r| r.path == path)
                .cloned()
                .collect();
            let now = Instant::now();
            if done(&got) || now >= deadline {
                return got;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits (bounded) until `path` has received at least `n` requests.
    pub fn wait(&self, path: &str, n: usize, timeout: Duration) -> Vec<Request> {
        self.wait_for(path, timeout, |got| got.len() >= n)
    }
}

/// `%XX` and `+` decoded into bytes.
fn percent_decode(v: &str) -> Vec<u8> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    out
}

fn serve(mut conn: TcpStream, shared: &Arc<(Mutex<Shared>, Condvar)>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let params = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let reply = {
        let (m, cv) = &**shared;
        let mut g = m.lock().unwrap();
        let reply = g.replies.get(&path).cloned().unwrap_or(Reply::Status(200));
        g.requests.push(Request {
            path: path.clone(),
            headers,
            params,
            answered: match reply {
                Reply::Status(c) => Some(c),
                Reply::Json(_) => Some(200),
                Reply::Silent => None,
            },
        });
        cv.notify_all();
        reply
    };
    let (code, ct, body) = match reply {
        Reply::Status(c) => (c, "text/plain", String::new()),
        Reply::Json(j) => (200, "application/json", j),
        Reply::Silent => {
            // Hold the connection open past any sender timeout, then drop it.
            std::thread::sleep(Duration::from_secs(8));
            return;
        }
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {code} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
