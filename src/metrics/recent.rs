//! The last callback failures, kept for the operators' console (a count is in Prometheus;
//! this says which URL failed, how and when). Bounded; a URL is kept without its query,
//! fragment or credentials.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many failures are kept.
pub const KEEP: usize = 50;

/// One callback that got no 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackFailure {
    /// Unix seconds.
    pub at: i64,
    /// `status`, `intercept` or `out_of_session`.
    pub kind: &'static str,
    pub url: String,
    /// The HTTP status, `timeout` or `failed` (no answer).
    pub outcome: String,
}

static FAILURES: Mutex<VecDeque<CallbackFailure>> = Mutex::new(VecDeque::new());

/// Scheme, host, port and path of `url`.
fn bare(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..cut];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

pub fn callback_failed(at: i64, kind: &'static str, url: &str, outcome: String) {
    let mut f = FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    if f.len() == KEEP {
        f.pop_front();
    }
    f.push_back(CallbackFailure {
        at,
        kind,
        url: bare(url),
        outcome,
    });
}

/// Newest first.
pub fn callback_failures() -> Vec<CallbackFailure> {
    let f = FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    f.iter().rev().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_and_the_list_is_bounded() {
        assert_eq!(
            bare("https://user:pw@hooks.example:8443/a/b?token=s#x"),
            "https://hooks.example:8443/a/b"
        );
        for i in 0..KEEP + 5 {
            callback_failed(i as i64, "status", "http://h/x", "500".into());
        }
        let all = callback_failures();
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].at, (KEEP + 4) as i64, "newest first");
    }
}
