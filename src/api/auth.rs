//! Who a request is: HTTP basic auth against the account's auth token, its secondary token
//! (rotation), compared in constant time, or an API key (`SK…:secret`: argon2id checked
//! once, then a keyed MAC, `crate::secret::VerifiedKeys`); and the audit log of every
//! write, naming the credential that made it (never a secret, never a whole phone number).

use axum::http::{header, HeaderMap, Method, StatusCode};
use base64::Engine as _;

use super::ApiState;
use crate::core::E164;
use crate::secret::constant_time_eq;

/// The credential a request was authorized with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    AuthToken,
    SecondaryAuthToken,
    Key(crate::core::Sid),
}

impl std::fmt::Display for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::AuthToken => f.write_str("auth token"),
            Credential::SecondaryAuthToken => f.write_str("secondary auth token"),
            Credential::Key(sid) => write!(f, "key {sid}"),
        }
    }
}

/// The basic auth user and password of `headers`, if any.
fn basic(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    Some(match decoded.iter().position(|&c| c == b':') {
        Some(i) => (decoded[..i].to_vec(), decoded[i + 1..].to_vec()),
        None => (decoded, Vec::new()),
    })
}

/// Argon2 checks of key secrets running at once (each takes tens of milliseconds of CPU).
pub const KEY_CHECKS: usize = 2;
/// How long a request waits for one before it is refused.
const KEY_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The credential `headers` carry, if it is one this account accepts.
pub async fn credential(
    headers: &HeaderMap,
    state: &ApiState,
    from: std::net::IpAddr,
) -> Option<Credential> {
    let (user, pass) = basic(headers)?;
    if user.starts_with(b"SK") {
        let sid =
            crate::core::Sid::parse(crate::core::SidKind::Key, std::str::from_utf8(&user).ok()?)?;
        return key(state, sid, pass, from)
            .await
            .then_some(Credential::Key(sid));
    }
    // Every comparison always runs, so timing does not tell which part was wrong.
    let user_ok = constant_time_eq(&user, state.account_sid.as_bytes());
    let primary = constant_time_eq(&pass, state.auth_token.as_bytes());
    let secondary = state
        .auth_token_secondary
        .as_ref()
        .is_some_and(|t| constant_time_eq(&pass, t.as_bytes()));
    match (user_ok, primary, secondary) {
        (true, true, _) => Some(Credential::AuthToken),
        (true, false, true) => Some(Credential::SecondaryAuthToken),
        _ => None,
    }
}

/// The scheme, host and port of `url` (`http://127.0.0.1:8080`).
fn origin_of(url: &str) -> &str {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').map_or(url.len(), |i| scheme.len() + 3 + i);
            &url[..end]
        }
        None => url,
    }
}

/// Whether a change comes from a page of another site. A browser that has logged in to the
/// console sends its credentials with any request to this origin, a form of another site's
/// included; browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`), API
/// clients (Twilio's SDKs, curl) send neither. Reads are not refused: another site cannot
/// read the answers.
pub fn cross_site(headers: &HeaderMap, public_url: &str) -> bool {
    let text = |h| {
        headers
            .get(h)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return true;
        }
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else {
        return false;
    };
    let host = text(header::HOST.as_str()).unwrap_or("");
    let own = [
        origin_of(public_url).to_string(),
        format!("http://{host}"),
        format!("https://{host}"),
    ];
    !own.iter().any(|o| o.eq_ignore_ascii_case(origin))
}

/// Whether `secret` is key `sid`'s, the key existing now (a key deleted on any node fails
/// as soon as this node has heard of it).
async fn key(
    state: &ApiState,
    sid: crate::core::Sid,
    secret: Vec<u8>,
    from: std::net::IpAddr,
) -> bool {
    use crate::secret::Known;
    if !state.engine.has_key(sid) {
        return false;
    }
    match state
        .keys
        .known(sid, from, &secret, std::time::Instant::now())
    {
        Known::Right => return true,
        Known::Paused => return false,
        Known::Unknown => {}
    }
    // A turn at argon2, waited for a little at most (a flood of wrong secrets queues here).
    let turn = tokio::time::timeout(KEY_CHECK_WAIT, state.key_checks.acquire()).await;
    let Ok(Ok(_turn)) = turn else {
        return false;
    };
    // Counted before it runs, and refused if this source got paused while it waited.
    if !state.keys.attempt(sid, from, std::time::Instant::now()) {
        return false;
    }
    let Some(hash) = state.engine.key_hash(sid) else {
        return false;
    };
    let s = secret.clone();
    let right = tokio::task::spawn_blocking(move || {
        std::str::from_utf8(&s).is_ok_and(|s| crate::secret::verify_key_secret(s, &hash))
    })
    .await
    .unwrap_or(false);
    state.keys.checked(sid, from, &secret, right);
    right
}

/// `path` with every segment that reads as a phone number masked to its last four digits.
pub fn masked_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let plain = seg.replace("%2B", "+").replace("%2b", "+");
            let digits = plain.trim_start_matches('+');
            let numeric = digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit());
            if !numeric {
                return seg.to_string();
            }
            match E164::parse(&plain) {
                Ok(n) => n.masked().to_string(),
                Err(_) => "*".repeat(digits.len().min(4)),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Logs a write (anything but GET and HEAD) once it is answered.
pub fn audit(credential: &Credential, method: &Method, path: &str, status: StatusCode) {
    if matches!(*method, Method::GET | Method::HEAD) {
        return;
    }
    tracing::info!(
        target: "maskd::audit",
        credential = %credential,
        method = %method,
        path = %masked_path(path),
        status = status.as_u16(),
        "api write (audit)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_from_other_sites_are_told_apart() {
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        let own = "http://127.0.0.1:8080";
        assert!(
            !cross_site(&h(&[]), own),
            "an API client sends neither header"
        );
        assert!(!cross_site(
            &h(&[("origin", own), ("host", "127.0.0.1:8080")]),
            own
        ));
        assert!(!cross_site(&h(&[("sec-fetch-site", "same-origin")]), own));
        assert!(cross_site(&h(&[("origin", "https://evil.example")]), own));
        assert!(cross_site(&h(&[("origin", "null")]), own));
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")]), own));
        assert!(cross_site(&h(&[("sec-fetch-site", "same-site")]), own));
        assert_eq!(
            origin_of("https://api.example:8443/base"),
            "https://api.example:8443"
        );
    }

    #[test]
    fn phone_numbers_in_paths_are_masked() {
        assert_eq!(
            masked_path("/v1/Services/KS1/PhoneNumbers/%2B14155550101"),
            "/v1/Services/KS1/PhoneNumbers/+*******0101"
        );
        assert_eq!(
            masked_path("/v1/Services/shop/Sessions/order-1"),
            "/v1/Services/shop/Sessions/order-1"
        );
        let bare = masked_path("/x/4155550101");
        assert!(!bare.contains("415555") && bare.ends_with("0101"), "{bare}");
    }
}
