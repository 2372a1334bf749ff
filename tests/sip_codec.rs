//! The SIP parser against the RFC 4475 torture messages (fixtures/sip/rfc4475, byte-exact,
//! with verdicts.tsv: the RFC's verdict and expected answer for each). Accepted messages
//! must parse (and pass request validation unless the RFC expects a 4xx); rejected ones must
//! be refused with the RFC's status where it names one.

use maskd::sip::{parse, Transport};

#[test]
fn rfc4475_torture_messages() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sip/rfc4475");
    let verdicts = std::fs::read_to_string(dir.join("verdicts.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in verdicts.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, verdict, expected) = (f[0], f[2], f[3]);
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        n += 1;
        // The outcome maskd acts on: parse, then (for requests) the checks before routing.
        let outcome = match parse(&bytes, Transport::Datagram) {
            Ok(Some((m, _))) => match m.validate_request() {
                Ok(()) => Ok(()),
                Err(e) => Err(e),
            },
            Ok(None) => panic!("{name}: a datagram is never incomplete"),
            Err(e) => Err(e),
        };
        // "400 (optional …)" and "400 (registrar)" are not what a B2BUA must answer.
        let wants_400 = expected.starts_with("400")
            && !expected.contains("optional")
            && !expected.contains("registrar");
        match (verdict, &outcome) {
            ("accept", Ok(())) if !wants_400 => {}
            ("accept", Err(e)) if wants_400 && e.status == 400 => {}
            ("reject", Err(e)) => {
                if expected.starts_with("505") && e.status != 505 {
                    failures.push(format!("{name}: want 505, got {e}"));
                }
                if expected.starts_with("400") && !expected.contains("UDP") && e.status != 400 {
                    failures.push(format!("{name}: want 400, got {e}"));
                }
            }
            _ => failures.push(format!(
                "{name}: RFC says {verdict} ({expected}), maskd: {outcome:?}"
            )),
        }
    }
    assert_eq!(n, 50);
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Carrier-style INVITEs (an SBC with PAI and Record-Route, compact forms with bare digits, an
/// anonymous From with a tel: P-Asserted-Identity over TCP): each parses and passes the
/// request checks, and the numbers maskd routes on normalise to E.164.
#[test]
fn carrier_style_invites() {
    use maskd::core::E164;
    use maskd::sip::uri::{NameAddr, Uri};
    use maskd::sip::HeaderName;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sip/carrier");
    let expected = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    for line in expected.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let bytes = std::fs::read(dir.join(f[0])).unwrap();
        for t in [Transport::Datagram, Transport::Stream] {
            let (m, used) = parse(&bytes, t)
                .unwrap()
                .unwrap_or_else(|| panic!("{}: incomplete", f[0]));
            assert_eq!(used, bytes.len(), "{}", f[0]);
            m.validate_request()
                .unwrap_or_else(|e| panic!("{}: {e}", f[0]));
            let maskd::sip::message::StartLine::Request { uri, .. } = m.start else {
                panic!("request")
            };
            let proxy = E164::parse(
                Uri::parse(uri)
                    .unwrap()
                    .user
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(proxy.to_string(), f[1], "{}", f[0]);
            let from_user = NameAddr::parse(m.header(HeaderName::From).unwrap())
                .unwrap()
                .uri
                .user;
            let caller = from_user
                .and_then(|u| E164::parse(u).ok())
                .or_else(|| {
                    let pai = NameAddr::parse(m.header(HeaderName::PAssertedIdentity)?)?;
                    E164::parse(pai.uri.user?).ok()
                })
                .expect("a caller number");
            assert_eq!(caller.to_string(), f[2], "{}", f[0]);
        }
    }
}
