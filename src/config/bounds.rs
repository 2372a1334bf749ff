//! The bounds of the TCP listeners (`api.max_connections`, `…_per_address`,
//! `api.header_timeout`, `api.idle_timeout`, `smpp.max_connections…`,
//! `sip.tcp_max_connections…`), checked and parsed.

use std::time::Duration;

use super::validate::Problems;
use super::Config;

/// Connections at once, and from one source address.
#[derive(Debug, Clone, Copy)]
pub struct ConnBounds {
    pub max: usize,
    pub per_address: usize,
}

/// The API's TLS: its files (read again on SIGHUP) and the settings read from them now.
#[derive(Clone)]
pub struct ApiTlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub acceptor: crate::tls::Acceptor,
}

impl std::fmt::Debug for ApiTlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiTlsFiles({})", self.cert.display())
    }
}

#[derive(Debug, Clone)]
pub struct Bounds {
    pub api: ConnBounds,
    pub api_tls: Option<ApiTlsFiles>,
    pub api_header_timeout: Duration,
    pub api_idle_timeout: Duration,
    pub smpp: ConnBounds,
    pub sip: ConnBounds,
}

/// `per_address` as set, or its default but never above `max`.
fn pair(
    p: &mut Problems,
    key: &str,
    max: u32,
    per_address: Option<u32>,
    default: u32,
) -> ConnBounds {
    if max == 0 {
        p.add(format!("{key}max_connections"), "must be at least 1");
    }
    let per_address = match per_address {
        Some(0) => {
            p.add(
                format!("{key}max_connections_per_address"),
                "must be at least 1",
            );
            1
        }
        Some(n) if n > max => {
            p.add(
                format!("{key}max_connections_per_address"),
                format!("must not be more than {key}max_connections ({max})"),
            );
            n
        }
        Some(n) => n,
        None => default.min(max),
    };
    ConnBounds {
        max: max as usize,
        per_address: per_address as usize,
    }
}

pub(super) fn check(c: &Config, p: &mut Problems) -> Bounds {
    let mut timeout = |key: &str, v: &str, default: u64| {
        let d = p.duration(key, v);
        if let Some(d) = d {
            if d.is_zero() || d > Duration::from_secs(3600) {
                p.add(key, "must be between 1ms and 1h");
            }
        }
        d.unwrap_or(Duration::from_secs(default))
    };
    let api_header_timeout = timeout("api.header_timeout", &c.api.header_timeout, 10);
    let api_idle_timeout = timeout("api.idle_timeout", &c.api.idle_timeout, 60);
    let api_tls = c.api.tls.as_ref().and_then(|t| {
        if !c.api.public_url.starts_with("https://") {
            p.add(
                "api.public_url",
                "must be an https:// URL when api.tls is set",
            );
        }
        let (cert, key) = (
            std::path::PathBuf::from(&t.cert),
            std::path::PathBuf::from(&t.key),
        );
        match crate::tls::server(&cert, &key, None) {
            Ok(config) => Some(ApiTlsFiles {
                cert,
                key,
                acceptor: tokio_rustls::TlsAcceptor::from(config),
            }),
            Err(e) => {
                p.add("api.tls", e);
                None
            }
        }
    });
    Bounds {
        api_tls,
        api: pair(
            p,
            "api.",
            c.api.max_connections,
            c.api.max_connections_per_address,
            1_000,
        ),
        api_header_timeout,
        api_idle_timeout,
        smpp: pair(
            p,
            "smpp.",
            c.smpp.max_connections,
            c.smpp.max_connections_per_address,
            100,
        ),
        sip: pair(
            p,
            "sip.tcp_",
            c.sip.tcp_max_connections,
            c.sip.tcp_max_connections_per_address,
            256,
        ),
    }
}
