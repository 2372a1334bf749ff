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
