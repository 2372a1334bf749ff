//! Interop with Kannel (Debian package `kannel`: bearerbox and smsbox), a real SMS gateway,
//! binding to maskd's SMPP listener as carrier A's ESME (an `smsc = smpp` group, transceiver).
//! Texts are sent through smsbox's sendsms HTTP interface on loopback with a DLR asked for
//! (`dlr-mask`); what maskd forwards to Kannel reaches this test through smsbox's `get-url`
//! (tests/common/hook.rs). The other side, carrier B, is the project's own SMPP peer
//! (tests/common/smpp.rs), which answers deliver_sm as the standard says (empty
//! message_id). Without Kannel installed this test fails; scripts/test installs it.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hook::Hook;
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};
use maskd::smpp::{receipt, text};

const A: &str = "+14155551001";
const B: &str = "+14155552002";

/// Where Debian installs the boxes (/usr/sbin, not on every user's PATH), else PATH.
fn kannel_binary(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "{name} not found on PATH or in /usr/sbin: install Kannel (Debian package `kannel`; \
             scripts/test installs it)"
        )
    })
}

/// bearerbox and smsbox, started on loopback ports with a config of their own; killed on
/// drop.
struct Kannel {
    boxes: Vec<Child>,
    dir: PathBuf,
    sendsms: SocketAddr,
}

impl Drop for Kannel {
    fn drop(&mut self) {
        for c in &mut self.boxes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Kannel {
    /// Starts both boxes; smsbox calls `hook`'s `/mo` for each message Kannel receives.
    fn start(dir: &Path, maskd_smpp: SocketAddr, hook: &Hook) -> Kannel {
        let (admin, smsbox, sendsms) = (free_port(), free_port(), free_port());
        let d = dir.display();
        let mo = hook.url("/mo?from=%p&to=%P&coding=%c&mclass=%m&udh=%u&charset=%C&text=%b");
        let config = format!(
            r#"group = core
admin-port = {admin}
admin-password = "kannel-test"
admin-deny-ip = "*.*.*.*"
admin-allow-ip = "127.0.0.1"
smsbox-port = {smsbox}
box-deny-ip = "*.*.*.*"
box-allow-ip = "127.0.0.1"
log-file = "{d}/bearerbox.log"
log-level = 0
access-log = "{d}/access.log"
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = maskd
host = 127.0.0.1
port = {maskd_port}
transceiver-mode = true
smsc-username = "carrier-a"
smsc-password = "secret-a"
system-type = ""
interface-version = 34
enquire-link-interval = 30
reconnect-delay = 1
log-file = "{d}/smsc.log"
log-level = 0

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
log-file = "{d}/smsbox.log"
log-level = 0
access-log = "{d}/smsbox-access.log"

group = sendsms-user
username = "tester"
password = "foobar"
user-allow-ip = "127.0.0.1"
concatenation = true
max-messages = 5

group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "{mo}"
"#,
            maskd_port = maskd_smpp.port(),
        );
        let conf = dir.join("kannel.conf");
        std::fs::write(&conf, config).unwrap();
        let spawn = |name: &str| {
            Command::new(kannel_binary(name))
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
        };
        let mut k = Kannel {
            boxes: vec![spawn("bearerbox")],
            dir: dir.to_path_buf(),
            sendsms: ([127, 0, 0, 1], sendsms).into(),
        };
        k.wait_port(smsbox, "bearerbox's smsbox port");
        k.boxes.push(spawn("smsbox"));
        k.wait_port(sendsms, "smsbox's sendsms port");
        k
    }

    /// The tail of each log, for failure messages.
    fn logs(&self) -> String {
        ["bearerbox.log", "smsc.log", "smsbox.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("--- {f}\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_port(&mut self, port: u16, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            for c in &mut self.boxes {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "a Kannel box exited ({st}) before {what} opened\n{}",
                        self.logs()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what} never opened\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One sendsms request; panics unless Kannel accepted it.
    fn sendsms(&self, params: &[(&str, &str)]) {
        let mut all = vec![("username", "tester"), ("password", "foobar")];
        all.extend_from_slice(params);
        let path = format!("/cgi-bin/sendsms?{}", encode(&all));
        let r = http(self.sendsms, "GET", &path, None, None);
        assert!(
            r.status == 202 || r.status == 200,
            "sendsms {params:?}: {} {}\n{}",
            r.status,
            r.body,
            self.logs()
        );
    }
}

fn config() -> String {
    two_carriers("")
        + r#"services:
  - unique_name: "sms"
    numbers: ["+14155550101", "+14155550102"]
"#
}

/// Extra sendsms parameters.
type Params<'a> = &'a [(&'a str, &'a str)];

/// The parameter `name` of one recorded query.
fn param<'a>(q: &'a [(String, String)], name: &str) -> &'a str {
    q.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// B's messages that are not receipts, as (data_coding, text without UDH).
fn texts(b: &Peer) -> Vec<(u8, String)> {
    b.messages
        .iter()
        .filter(|m| !m.is_receipt())
        .map(|m| {
            let octets = m.payload();
            let body = if m.esm_class & 0x40 != 0 {
                text::split_udh(octets).expect("a UDH").1
            } else {
                octets
            };
            (m.data_coding, text::decode(m.data_coding, body))
        })
        .collect()
}

/// Kannel is carrier A's ESME (A = +14155551001 sends through smsbox's sendsms); carrier B
/// (+14155552002) is the project's SMPP peer. Checks: each side sees only proxy numbers;
/// GSM, UCS-2, flash (0xF0) and UCS-2 class 1 (0x19) texts arrive as sent and are logged
/// decoded; a message Kannel splits into parts reaches B in order and is logged once; STOP
/// sent as a flash message (0xF1, 0x19) is not forwarded; Kannel gets its final DLR
/// (delivered) for each message whose next hop is B's bound account; B's texts reach Kannel
/// (UCS-2, flash), and B's receipt for a message to Kannel says DELIVRD, which Kannel's empty
/// deliver_sm_resp made final.
#[test]
fn kannel_as_a_carrier_exchanges_masked_texts_with_dlrs() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config());
    let (pa, pb) = two_party_session(&d, "sms", "chat", A, B);
    let kdir = tempfile::tempdir().unwrap();
    let kannel = Kannel::start(kdir.path(), d.smpp, &hook);
    let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    // Kannel binds to maskd (bounded wait on maskd's own gauge).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d
        .metrics_text()
        .contains(r#"maskd_smpp_binds_active{peer="carrier-a"} 1"#)
    {
        assert!(
            Instant::now() < deadline,
            "Kannel never bound\n{}",
            kannel.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A → B through Kannel, each with a DLR asked for (dlr-mask 31: every kind).
    let dlr = |tag: &str| hook.url(&format!("/dlr?tag={tag}&type=%d&id=%F"));
    let long: String = (0..30).map(|i| format!("part{i:02} ")).collect();
    let sends: [(&str, &str, Params); 5] = [
        ("gsm", "Hello from Kannel", &[]),
        (
            "ucs2",
            "Привет из Kannel",
            &[("coding", "2"), ("charset", "UTF-8")],
        ),
        ("flash", "flash in GSM", &[("mclass", "0")]),
        (
            "flash-ucs2",
            "вспышка UCS-2",
            &[("coding", "2"), ("charset", "UTF-8"), ("mclass", "1")],
        ),
        ("long", &long, &[]),
    ];
    for (tag, body, extra) in sends {
        let url = dlr(tag);
        let mut params = vec![
            ("from", A),
            ("to", pa.as_str()),
            ("text", body),
            ("dlr-mask", "31"),
            ("dlr-url", url.as_str()),
        ];
        params.extend_from_slice(extra);
        kannel.sendsms(&params);
    }
    assert!(
        b.wait_messages(6, Duration::from_secs(20)),
        "B got {} of 6 (the long text is two parts)\n{}",
        b.messages.len(),
        kannel.logs()
    );
    // STOP as a flash message, GSM (0xF1) and UCS-2 (0x19): acknowledged, not forwarded.
    kannel.sendsms(&[("from", A), ("to", &pa), ("text", "STOP"), ("mclass", "1")]);
    kannel.sendsms(&[
        ("from", A),
        ("to", &pa),
        ("text", "Stop"),
        ("coding", "2"),
        ("charset", "UTF-8"),
        ("mclass", "1"),
    ]);
    kannel.sendsms(&[("from", A), ("to", &pa), ("text", "last")]);
    assert!(
        b.wait_messages(7, Duration::from_secs(20)),
        "{}",
        kannel.logs()
    );
    let got = texts(&b);
    let want: Vec<(u8, String)> = vec![
        (0x00, "Hello from Kannel".into()),
        (0x08, "Привет из Kannel".into()),
        (0xF0, "flash in GSM".into()),
        (0x19, "вспышка UCS-2".into()),
        (0x00, long[..153].to_string()),
        (0x00, long[153..].to_string()),
        (0x00, "last".into()),
    ];
    assert_eq!(got, want, "in order, the STOPs not forwarded");
    for m in &b.messages {
        assert_eq!(
            (m.source.addr.as_str(), m.dest.addr.as_str()),
            (&pb[1..], &B[1..]),
            "B sees A's texts from B's proxy number"
        );
        assert!(
            !format!("{m:?}").contains(&A[2..]),
            "A's real number reached B: {m:?}"
        );
    }
    let parts: Vec<u8> = b
        .messages
        .iter()
        .filter(|m| m.esm_class & 0x40 != 0)
        .map(|m| m.short_message[5])
        .collect();
    assert_eq!(parts, [1, 2], "the parts in the order Kannel sent them");

    // Kannel's DLRs: final (type 1, delivered) for each message B's bind took.
    let delivered = |q: &[Vec<(String, String)>], tag: &str| {
        q.iter()
            .any(|r| param(r, "tag") == tag && param(r, "type") == "1")
    };
    let tags = ["gsm", "ucs2", "flash", "flash-ucs2", "long"];
    let dlrs = hook.wait_queries("/dlr", Duration::from_secs(20), |q| {
        tags.iter().all(|t| delivered(q, t))
    });
    for t in tags {
        assert!(
            delivered(&dlrs, t),
            "no DELIVRD DLR for {t}: {dlrs:?}\n{}",
            kannel.logs()
        );
    }
    for r in &dlrs {
        assert!(
            param(r, "id").starts_with("SM"),
            "maskd's message id: {r:?}"
        );
    }

    // B → A: UCS-2 with a receipt asked for, and a UCS-2 class 1 (flash) text.
    let mut m = sm(&B[1..], &pb[1..], &text::encode_ucs2("Ответ из B"));
    m.data_coding = 0x08;
    m.registered_delivery = 1;
    let r = b.request(Body::SubmitSm(m));
    assert_eq!(r.status, status::ESME_ROK);
    let b_id = match r.body {
        Body::SubmitSmResp { message_id } => message_id,
        other => panic!("{other:?}"),
    };
    let mut m = sm(&B[1..], &pb[1..], &text::encode_ucs2("flash from B"));
    m.data_coding = 0x19;
    assert_eq!(b.request(Body::SubmitSm(m)).status, status::ESME_ROK);
    let mo = hook.wait_queries("/mo", Duration::from_secs(20), |q| q.len() >= 2);
    assert_eq!(mo.len(), 2, "{mo:?}\n{}", kannel.logs());
    let bytes = hook.query_bytes("/mo", "text");
    // Kannel's smsbox posts them from several threads: in either order.
    let mut seen: Vec<(String, String, String, String)> = mo
        .iter()
        .zip(&bytes)
        .map(|(q, t)| {
            assert_eq!(param(q, "coding"), "2", "UCS-2 for Kannel: {q:?}");
            (
                param(q, "from").to_string(),
                param(q, "to").to_string(),
                param(q, "mclass").to_string(),
                text::decode_ucs2(t),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (pa.clone(), A.to_string(), "-1".into(), "Ответ из B".into()),
            (pa.clone(), A.to_string(), "1".into(), "flash from B".into()),
        ],
        "Kannel sees B's texts from A's proxy number, decoded, the flash one as class 1"
    );
    for q in &mo {
        assert!(
            !format!("{q:?}").contains(&B[2..]),
            "B's real number reached Kannel"
        );
    }
    // Kannel's deliver_sm_resp (ESME_ROK, no message_id) was final: B's receipt says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let receipt = loop {
        if let Some(r) = b
            .messages
            .iter()
            .filter(|m| m.is_receipt())
            .find_map(receipt::parse)
        {
            break r;
        }
        assert!(Instant::now() < deadline, "no receipt at B");
        b.wait_messages(b.messages.len() + 1, Duration::from_millis(500));
    };
    assert_eq!(
        (receipt.message_id.as_str(), receipt.stat.as_str()),
        (b_id.as_str(), "DELIVRD")
    );

    // maskd's log: every text decoded, the long one once, no STOP, each delivered (the
    // last leg's record follows Kannel's answer by a moment: bounded wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    let items = loop {
        let list = d.get("/v1/Services/sms/Sessions/chat/Interactions").json();
        let items = list["interactions"].as_array().unwrap().clone();
        let done = items
            .iter()
            .all(|i| i["outbound_resource_status"] == "delivered");
        if (done && items.len() >= 8) || Instant::now() >= deadline {
            break items;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut bodies: Vec<String> = items
        .iter()
        .map(|i| {
            serde_json::from_str::<serde_json::Value>(i["data"].as_str().unwrap()).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    bodies.sort();
    let mut want_bodies = vec![
        "Hello from Kannel".to_string(),
        "Привет из Kannel".into(),
        "flash in GSM".into(),
        "вспышка UCS-2".into(),
        long.clone(),
        "last".into(),
        "Ответ из B".into(),
        "flash from B".into(),
    ];
    want_bodies.sort();
    assert_eq!(bodies, want_bodies);
    for i in &items {
        assert_eq!(i["outbound_resource_status"], "delivered", "{i}");
    }
    let m = d.metrics_text();
    assert!(m.contains("maskd_smpp_opt_out_total 2"), "{m}");
}
