//! A carrier's trunk given by hostname (RFC 3263): maskd asks the DNS server (`sip.dns_server`,
//! a server written here on loopback) for `_sip._udp.trunk.test` SRV records, then each
//! target's A records, and tries the targets in priority order: the first answers 503, the
//! call goes to the second.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use common::sip::{header, recv_until, respond, socket};
use common::*;

/// A question's name and type.
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_string());
        at += len;
    }
    let t = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    Some((labels.join("."), t, at + 4))
}

fn wire(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in name.split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

/// Every (name, type) the server was asked.
type Questions = Arc<Mutex<Vec<(String, u16)>>>;

/// A DNS server on loopback: SRV for `_sip._udp.trunk.test` (sbc1 at priority 10 on
/// `p1`, sbc2 at priority 20 on `p2`), A 127.0.0.1 for both targets, nothing else. Records
/// every question it is asked.
fn dns_server(p1: u16, p2: u16) -> (SocketAddr, Questions) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    let asked: Questions = Arc::default();
    let seen = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..10_000 {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                return;
            };
            let q = &buf[..n];
            let Some((name, t, end)) = question(q) else {
                continue;
            };
            seen.lock().unwrap().push((name.clone(), t));
            let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
            match (name.as_str(), t) {
                ("_sip._udp.trunk.test", 33) => {
                    for (prio, port, target) in
                        [(20u16, p2, "sbc2.trunk.test"), (10, p1, "sbc1.trunk.test")]
                    {
                        let mut rd = Vec::new();
                        rd.extend_from_slice(&prio.to_be_bytes());
                        rd.extend_from_slice(&10u16.to_be_bytes());
                        rd.extend_from_slice(&port.to_be_bytes());
                        rd.extend(wire(target));
                        answers.push((33, rd));
                    }
                }
                ("sbc1.trunk.test" | "sbc2.trunk.test", 1) => answers.push((1, vec![127, 0, 0, 1])),
                _ => {}
            }
            let mut out = q[..end].to_vec();
            out[2] = 0x81;
            out[3] = 0x80;
            out[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
            // The query's EDNS0 record is not echoed.
            out[10..12].copy_from_slice(&[0, 0]);
            for (t, rd) in answers {
                out.extend_from_slice(&[0xc0, 12]);
                out.extend_from_slice(&t.to_be_bytes());
                out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
                out.extend_from_slice(&(rd.len() as u16).to_be_bytes());
                out.extend(rd);
            }
            let _ = s.send_to(&out, from);
        }
    });
    (addr, asked)
}

#[test]
fn a_trunk_given_by_hostname_is_found_by_srv_and_its_targets_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let (_default, default_port) = socket();
    let (first, first_port) = socket();
    let (second, second_port) = socket();
    let (dns, asked) = dns_server(first_port, second_port);
    let cfg = format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{default_port}\"\n  dns_server: \"{dns}\"\n\
         carriers:\n  - name: \"alpha\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n    sip:\n      trunks:\n        - address: \"trunk.test\"\n\
         services:\n  - unique_name: \"s\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n"
    );
    let d = Daemon::start_with(dir.path(), &cfg);
    let (a, b) = ("+14155551001", "+14155552002");
    let (pa, _) = two_party_session(&d, "s", "chat", a, b);
    let (caller, caller_port) = socket();
    caller
        .send_to(
            common::sip::invite(caller_port, a, &pa, "bydns").as_bytes(),
            d.sip,
        )
        .unwrap();
    // Priority 10 first: sbc1.
    let (inv1, from) = recv_until(&first, "INVITE ");
    assert!(
        inv1.starts_with(&format!("INVITE sip:{b}@127.0.0.1:{first_port}")),
        "{inv1}"
    );
    respond(&first, &inv1, from, 503, "Service Unavailable");
    let (inv2, from) = recv_until(&second, "INVITE ");
    assert_eq!(header(&inv2, "Call-ID"), header(&inv1, "Call-ID"));
    respond(&second, &inv2, from, 200, "OK");
    let (ok, _) = recv_until(&caller, "SIP/2.0 200");
    assert_eq!(header(&ok, "Call-ID"), "bydns");
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked.contains(&("_sip._udp.trunk.test".into(), 33)),
        "{asked:?}"
    );
    assert!(asked.contains(&("sbc1.trunk.test".into(), 1)), "{asked:?}");
    let m = d.metrics_text();
    assert!(
        m.contains(r#"maskd_sip_dns_lookups_total{outcome="ok"} 1"#),
        "{m}"
    );
}
