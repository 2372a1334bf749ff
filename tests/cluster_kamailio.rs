//! Calls in front of several nodes: the real Kamailio (Debian `kamailio`) with the shipped
//! dispatcher configuration (deploy/kamailio/kamailio.cfg) spreads new calls over two maskd
//! nodes on one PostgreSQL; one node killed, the next calls reach the other within 5 s.
//! SIPp is the caller's carrier (through Kamailio) and the trunk. Without `kamailio` or
//! `sipp` this test fails (scripts/test installs both).

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{pg, Daemon};

fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` on PATH, or in /usr/sbin where Debian puts Kamailio.
fn command(name: &str) -> Command {
    let sbin = format!("/usr/sbin/{name}");
    let name = if Path::new(&sbin).exists() {
        sbin.as_str()
    } else {
        name
    };
    let ok = Command::new(name)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        ok.is_ok(),
        "{name} is not installed: run scripts/test (it installs it from Debian)"
    );
    Command::new(name)
}

/// Stops the child when dropped: SIGTERM first (Kamailio's main process then stops the
/// workers it forked; SIGKILL would leave them running), SIGKILL after 3 s.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(dir: &Path, url: &str, node: u16, trunk: u16) -> Daemon {
    let services = format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{trunk}\"\nservices:\n  - unique_name: \"voice\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n"
    );
    let edit = |cfg: &str| {
        let start = cfg.find("store:").unwrap();
        let end = start + cfg[start..].find("\ntimer_tick").unwrap();
        format!(
            "{}store:\n  url: \"{url}\"\n  node_id: {node}{}",
            &cfg[..start],
            &cfg[end..]
        )
    };
    Daemon::start_edited(dir, &services, edit)
}

/// One call through Kamailio at `proxy`: true if it completed (200, ACK, BYE, 200).
fn call(dir: &Path, proxy: u16, dialled: &str, n: u32) -> bool {
    let scenario = format!(
        "{}/tests/sipp/uac_via_proxy.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut c = command("sipp")
        .args([
            "-sf",
            &scenario,
            "-s",
            dialled,
            &format!("127.0.0.1:{proxy}"),
        ])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &udp_port().to_string(),
            "-m",
            "1",
            "-nostdin",
        ])
        .args([
            "-t",
            "u1",
            "-timeout",
            "15s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
        ])
        .arg(dir.join(format!("call{n}.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st.success();
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn calls_started(d: &Daemon) -> i64 {
    d.metrics_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("maskd_sip_calls_started_total")?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[test]
fn the_dispatcher_spreads_calls_and_moves_them_off_a_killed_node_within_5_s() {
    let url = pg::fresh_database("kamailio");
    let work = tempfile::tempdir().unwrap();
    let trunk = udp_port();
    let _uas = Running(
        command("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &trunk.to_string()])
            .args(["-m", "40", "-nostdin", "-t", "u1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut n1 = node(d1.path(), &url, 1, trunk);
    let n2 = node(d2.path(), &url, 2, trunk);
    let (pa, _) = common::two_party_session(&n1, "voice", "call", "+14155551001", "+14155552002");
    // Node 2 follows the session before calls may land there.
    let t = Instant::now();
    while n2.get("/v1/Services/voice/Sessions/call").status != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "node 2 never had the session"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let list = work.path().join("dispatcher.list");
    std::fs::write(&list, format!("1 sip:{}\n1 sip:{}\n", n1.sip, n2.sip)).unwrap();
    let proxy = udp_port();
    let cfg = format!(
        "{}/deploy/kamailio/kamailio.cfg",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut kamailio = Running(
        command("kamailio")
            .args(["-f", &cfg, "-DD", "-E", "-Y"])
            .arg(work.path())
            .args(["-A", &format!("LISTEN=udp:127.0.0.1:{proxy}")])
            .args(["-A", &format!("DISPATCHER_LIST=\"{}\"", list.display())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    if let Some(st) = kamailio.0.try_wait().unwrap() {
        let mut err = String::new();
        use std::io::Read;
        kamailio
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("kamailio exited ({st}): {err}");
    }

    // Round robin: four calls, both nodes take some.
    for k in 0..4 {
        assert!(
            call(work.path(), proxy, &pa, k),
            "call {k} through the dispatcher"
        );
    }
    let (c1, c2) = (calls_started(&n1), calls_started(&n2));
    assert_eq!(c1 + c2, 4);
    assert!(c1 > 0 && c2 > 0, "both nodes took calls: {c1} and {c2}");

    // Node 1 dies: every new call reaches node 2 within 5 s (one sent to node 1 before the
    // probes find it dead fails over after INVITE_TIMEOUT, 2 s).
    n1.kill9();
    let killed = Instant::now();
    for k in 10..14 {
        let t = Instant::now();
        assert!(call(work.path(), proxy, &pa, k), "call {k} after the kill");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "call {k} took {:?}",
            t.elapsed()
        );
    }
    // Once the probes have marked node 1 down, calls go straight to node 2.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(killed.elapsed()));
    for k in 14..17 {
        let t = Instant::now();
        assert!(call(work.path(), proxy, &pa, k), "call {k}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "call {k} took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(
        calls_started(&n2),
        c2 + 7,
        "node 2 took every call after the kill"
    );
}
