//! The fuzz targets' properties (src/fuzzing.rs, shared with fuzz/fuzz_targets/) replayed
//! over their seeds in every test run: the fixtures scripts/fuzz seeds them with, the corpora
//! a local fuzz run left in fuzz/corpus/<target>/ (if any), and the committed regression
//! inputs in fuzz/regressions/<target>/.

use std::path::{Path, PathBuf};

use maskd::fuzzing;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn hex_fixture(p: &Path) -> Vec<u8> {
    let text: String = std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::trim)
        .collect();
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Every input for `target`: `seeds` plus what fuzz/corpus and fuzz/regressions hold.
fn run(target: &str, seeds: Vec<Vec<u8>>, f: fn(&[u8])) -> usize {
    let mut inputs = seeds;
    for dir in ["fuzz/corpus", "fuzz/regressions"] {
        for p in files(&root().join(dir).join(target), None) {
            inputs.push(std::fs::read(p).unwrap());
        }
    }
    assert!(!inputs.is_empty(), "{target}: no inputs");
    for (i, data) in inputs.iter().enumerate() {
        let r = std::panic::catch_unwind(|| f(data));
        assert!(
            r.is_ok(),
            "{target}: input {i} ({} bytes) fails its property",
            data.len()
        );
    }
    inputs.len()
}

#[test]
fn sip_parse_and_sdp_seeds() {
    let sip: Vec<Vec<u8>> = files(&root().join("fixtures/sip"), Some("dat"))
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(run("sip_parse", sip.clone(), fuzzing::sip_parse) >= 50);
    // SDP seeds: the bodies of the fixture messages, plus hostile ones.
    let mut bodies: Vec<Vec<u8>> = sip
        .iter()
        .filter_map(|m| {
            let at = m.windows(4).position(|w| w == b"\r\n\r\n")?;
            Some(m[at + 4..].to_vec())
        })
        .collect();
    bodies.extend([
        Vec::new(),
        b"\r\n\r\n\r\n".to_vec(),
        vec![0xff; 300],
        b"v=0\r\nm=audio 0 RTP/AVP\r\nSIP/2.0 200 OK\r\n\r\n".to_vec(),
    ]);
    bodies.extend(
        files(&root().join("fixtures/media"), Some("sdp"))
            .into_iter()
            .map(|p| std::fs::read(p).unwrap()),
    );
    run("sdp", bodies, fuzzing::sdp);
    // B2BUA scripts: whole calls, plus every SIP fixture sent as the caller's INVITE.
    let mut scripts: Vec<Vec<u8>> = files(&root().join("fixtures/sip/b2bua"), Some("script"))
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(scripts.len() >= 2);
    scripts.extend(sip.iter().map(|m| [b"%A 0\n".as_slice(), m].concat()));
    run("b2bua", scripts, fuzzing::b2bua);
}

#[test]
fn dns_and_digest_seeds() {
    // Queries turned into answers (QR set) with each byte cut off in turn, and challenges.
    let mut answers: Vec<Vec<u8>> = Vec::new();
    for (name, t) in [
        ("_sip._udp.carrier.test", 33),
        ("sbc.carrier.test", 1),
        ("a.b", 28),
    ] {
        let mut q = maskd::dns::query(0x4242, name, t).unwrap();
        q[2] |= 0x80;
        answers.extend((0..=q.len()).map(|n| q[..n].to_vec()));
    }
    run("dns", answers, fuzzing::dns);
    let challenges: Vec<Vec<u8>> = [
        r#"Digest realm="carrier.example", nonce="n", qop="auth,auth-int", opaque="o""#,
        r#"Digest realm="x", nonce="y", algorithm=SHA-256-sess, stale=true"#,
        r#"digest REALM="a \"b\"", NONCE=abc"#,
        "Basic realm=\"x\"",
    ]
    .iter()
    .map(|c| c.as_bytes().to_vec())
    .collect();
    run("digest", challenges, fuzzing::digest);
}

#[test]
fn rtcp_seeds() {
    let mut seeds: Vec<Vec<u8>> = files(&root().join("fixtures/media"), Some("rtcp"))
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(seeds.len() >= 2);
    // Each seed cut short at every length: truncated compounds must be refused, not read past.
    let cuts: Vec<Vec<u8>> = seeds
        .iter()
        .flat_map(|s| (0..s.len()).map(move |n| s[..n].to_vec()))
        .collect();
    seeds.extend(cuts);
    run("rtcp", seeds, fuzzing::rtcp);
}

#[test]
fn smpp_seeds() {
    let pdus: Vec<Vec<u8>> = files(&root().join("fixtures/smpp"), Some("hex"))
        .iter()
        .map(|p| hex_fixture(p))
        .collect();
    let texts: Vec<Vec<u8>> = pdus
        .iter()
        .filter(|d| d.len() > 16)
        .map(|d| d[16..].to_vec())
        .collect();
    assert!(run("smpp_decode", pdus, fuzzing::smpp_decode) >= 20);
    run("smpp_text", texts, fuzzing::smpp_text);
}

#[test]
fn config_and_api_param_seeds() {
    let mut configs: Vec<Vec<u8>> = files(&root().join("fixtures/config"), Some("yaml"))
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    configs.push(std::fs::read(root().join("config.yaml")).unwrap());
    run("config_parse", configs, fuzzing::config_parse);
    let forms: Vec<Vec<u8>> = [
        "UniqueName=a&Ttl=3600&Mode=voice-only",
        "Participants=%7B%22Identifier%22%3A%22%2B14155551001%22%7D&Participants=%7B",
        "DateExpiry=2026-13-45T99%3A99%3A99Z&Ttl=-1&PageSize=0&Page=99999999999999999999",
        "CallbackUrl=javascript%3Aalert(1)&Status=%ff%fe&&&=&a=%",
        "%",
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    run("api_params", forms, fuzzing::api_params);
}
