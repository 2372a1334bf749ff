//! Overload on the REST API: beyond `api.rate_limit_per_second` (and its burst) a client
//! gets 429 with Twilio's error 20429 and Retry-After, and another client address (127.0.0.2
//! on loopback) keeps being served while the first one floods.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;

use common::*;

/// One GET from `src` (a loopback address), with the test credentials; returns the status
/// line and the whole answer.
fn get_from(src: &str, api: SocketAddr, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
        sock.connect(api).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    let mut stream = stream;
    let auth = base64_basic(ACCOUNT, TOKEN);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn base64_basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[test]
fn a_flooding_client_gets_429_20429_and_another_client_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_edited(dir.path(), "", |c| {
        c.replace(
            &format!("  auth_token: \"{TOKEN}\"\n"),
            &format!(
                "  auth_token: \"{TOKEN}\"\n  rate_limit_per_second: 2\n  rate_limit_burst: 5\n"
            ),
        )
    });
    // The burst is served, then the flood is refused, Twilio-shaped.
    let codes: Vec<u16> = (0..12)
        .map(|_| get_from("127.0.0.1", d.api, "/v1/Services").0)
        .collect();
    assert!(codes[..5].iter().all(|c| *c == 200), "{codes:?}");
    let refused = codes.iter().filter(|c| **c == 429).count();
    assert!(refused >= 5, "{codes:?}");
    let (code, answer) = get_from("127.0.0.1", d.api, "/v1/Services");
    assert_eq!(code, 429);
    assert!(answer.contains("\"code\":20429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Another client, meanwhile: served.
    for _ in 0..3 {
        assert_eq!(get_from("127.0.0.2", d.api, "/v1/Services").0, 200);
    }
}
