//! Digest authentication as a client (RFC 3261 §22.4, RFC 2617, RFC 7616, RFC 8760): reads a
//! trunk's challenge (`WWW-Authenticate` on 401, `Proxy-Authenticate` on 407) and writes the
//! credentials that answer it. MD5 and SHA-256 (and their `-sess` forms), with `qop=auth`
//! when the challenge offers it. Pure: the caller supplies the client nonce.

use md5::Md5;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(v: &str) -> Option<Algorithm> {
        match v.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 | Algorithm::Sha256Sess => Sha256::digest(data.as_bytes()).to_vec(),
        };
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            hex.push_str(&format!("{b:02x}"));
        }
        hex
    }
}

/// A `Digest` challenge this client can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The challenge offers `qop=auth`.
    pub qop_auth: bool,
    /// The previous answer was right but its nonce had expired.
    pub stale: bool,
}

/// The `name=value` parameters of a challenge, values unquoted (`\` escapes kept literal).
fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let name = text[start..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut escaped = false;
            let mut k = i;
            while k < b.len() {
                match b[k] {
                    b'\\' if !escaped => escaped = true,
                    b'"' if !escaped => break,
                    _ => escaped = false,
                }
                k += 1;
            }
            value = text[i..k.min(b.len())]
                .replace("\\\"", "\"")
                .replace("\\\\", "\\");
            i = (k + 1).min(b.len());
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            value.push_str(text[s..i].trim());
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

/// Reads one challenge header value; `None` when it is not a `Digest` challenge this client
/// can answer (another scheme, an unknown algorithm, only `qop=auth-int`, no realm or nonce).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let ps = params(rest);
    let get = |n: &str| ps.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(&a)?,
    };
    let qop_auth = match get("qop") {
        None => false,
        Some(q) => {
            let auth = q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth"));
            if !auth {
                return None;
            }
            true
        }
    };
    Some(Challenge {
        realm: get("realm")?,
        nonce: get("nonce").filter(|n| !n.is_empty())?,
        opaque: get("opaque"),
        algorithm,
        qop_auth,
        stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

/// Quotes `v` for a header parameter.
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `response` value: RFC 7616 §3.4.1 (RFC 2617 without `qop`).
pub fn response(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let h = |s: &str| ch.algorithm.hash(s);
    let mut ha1 = h(&format!("{username}:{}:{password}", ch.realm));
    if matches!(ch.algorithm, Algorithm::Md5Sess | Algorithm::Sha256Sess) {
        ha1 = h(&format!("{ha1}:{}:{cnonce}", ch.nonce));
    }
    let ha2 = h(&format!("{method}:{uri}"));
    if ch.qop_auth {
        h(&format!("{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}", ch.nonce))
    } else {
        h(&format!("{ha1}:{}:{ha2}", ch.nonce))
    }
}

/// The `Authorization` (or `Proxy-Authorization`) header value answering `ch` for a
/// `method` request to `uri`.
pub fn authorization(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let r = response(ch, username, password, method, uri, cnonce, nc);
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{r}\", algorithm={}",
        quoted(username),
        quoted(&ch.realm),
        quoted(&ch.nonce),
        quoted(uri),
        ch.algorithm.name()
    );
    if ch.qop_auth {
        v.push_str(&format!(
            ", cnonce={}, qop=auth, nc={nc:08x}",
            quoted(cnonce)
        ));
    }
    if let Some(o) = &ch.opaque {
        v.push_str(&format!(", opaque={}", quoted(o)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5: MD5 with qop=auth.
    #[test]
    fn rfc_2617_example() {
        let ch = parse_challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert!(ch.qop_auth);
        let r = response(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
        let a = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert!(
            a.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{a}"
        );
        assert!(a.contains("nc=00000001"), "{a}");
        assert!(
            a.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#),
            "{a}"
        );
    }

    /// RFC 7616 §3.9.1: SHA-256 and MD5 answers to the same challenge.
    #[test]
    fn rfc_7616_example() {
        let text = |alg: &str| {
            format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            )
        };
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let sha = parse_challenge(&text("SHA-256")).unwrap();
        assert_eq!(sha.algorithm, Algorithm::Sha256);
        assert_eq!(
            response(
                &sha,
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                cnonce,
                1
            ),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let md5 = parse_challenge(&text("MD5")).unwrap();
        assert_eq!(
            response(
                &md5,
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                cnonce,
                1
            ),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
    }

    #[test]
    fn challenges_it_cannot_answer_are_refused_not_guessed() {
        for v in [
            r#"Basic realm="x""#,
            r#"Digest realm="x", nonce="n", algorithm=SHA-512-256"#,
            r#"Digest realm="x", nonce="n", qop="auth-int""#,
            r#"Digest nonce="n""#,
            r#"Digest realm="x""#,
            "Digest",
            "",
        ] {
            assert_eq!(parse_challenge(v), None, "{v}");
        }
        let ch = parse_challenge(r#"digest REALM="a \"b\"", NONCE=abc, stale=TRUE"#).unwrap();
        assert_eq!((ch.realm.as_str(), ch.nonce.as_str()), ("a \"b\"", "abc"));
        assert!(ch.stale && !ch.qop_auth);
        // Without qop: RFC 2069's response, no cnonce or nc.
        let a = authorization(&ch, "u", "p", "INVITE", "sip:x@y", "c", 1);
        assert!(!a.contains("cnonce") && !a.contains("nc="), "{a}");
        assert!(a.contains(r#"realm="a \"b\"""#), "{a}");
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    proptest! {
        /// Whatever a peer writes into a challenge header, reading it never panics, and an
        /// answer to what was read is always a quoted, well-formed header value.
        #[test]
        fn any_header_value_is_read_without_panicking(v in "\\PC{0,200}", d in "(Digest |digest )[ -~]{0,120}") {
            let _ = super::parse_challenge(&v);
            if let Some(ch) = super::parse_challenge(&d) {
                let a = super::authorization(&ch, "u", "p", "INVITE", "sip:b@h", "c", 1);
                prop_assert!(a.starts_with("Digest username=\"u\""));
                prop_assert!(!a.contains('\n') && !a.contains('\r'));
            }
        }
    }
}
