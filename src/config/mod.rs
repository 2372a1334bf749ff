//! `config.yaml`: serde structs that reject unknown keys, and their defaults; `validate()`
//! (in `validate.rs`, the `media:` section's in `media.rs`) collects every problem with its
//! key path before any port is bound. Durations are strings with units (`"500ms"`, `"30s"`,
//! `"2h"`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::{sid::SidKind, Sid, E164};

pub mod bounds;
mod carriers;
mod media;
pub mod tls;
mod validate;
pub use carriers::{CarrierConfig, CarrierSipConfig, TrunkConfig};
pub use media::{MediaConfig, MediaSettings, RecordingConfig};
use validate::Problems;
pub use validate::{SipSettings, SmppTimers, StoreTarget, ValidService, Validated};

/// Why a config cannot be used. `run` and `check-config` exit 64 on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {message}")]
    Parse { key: String, message: String },
    #[error("{}", .0.iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<(String, String)>),
}

impl ConfigError {
    /// One line per problem, each starting with its key path.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(list) => list.iter().map(|(k, m)| format!("{k}: {m}")).collect(),
            other => vec![other.to_string()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// REST API listener, public base URL and credentials.
    pub api: ApiConfig,
    /// Prometheus `/metrics`, `/healthz` and `/readyz` listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Embedded store location.
    pub store: StoreConfig,
    /// Voice plane (SIP B2BUA).
    #[serde(default)]
    pub sip: SipConfig,
    /// Text plane (SMPP).
    #[serde(default)]
    pub smpp: SmppConfig,
    /// Outgoing callbacks.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// Media plane: RTP anchoring and recording.
    #[serde(default)]
    pub media: MediaConfig,
    /// Carriers: the proxy numbers each owns, and its SMPP link and SIP trunks.
    #[serde(default)]
    pub carriers: Vec<CarrierConfig>,
    /// Services created or updated at start, idempotently.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// How long SIGTERM waits for in-flight work before exiting.
    #[serde(default = "default_grace")]
    pub shutdown_grace: String,
    /// Resolution of the session timer wheel.
    #[serde(default = "default_tick")]
    pub timer_tick: String,
    /// Threads running the async work (SIP, SMPP, API); 0 picks one fewer than the cores
    /// (at least one), leaving a core to the store's writer thread and the network stack.
    #[serde(default)]
    pub worker_threads: u32,
}

impl Config {
    /// The async runtime's worker threads: `worker_threads`, or one fewer than the cores.
    pub fn workers(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads as usize;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        cores.saturating_sub(1).max(1)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `host:port` of the REST API.
    pub listen: String,
    /// Base of every `url` and `links` field, as clients reach the API.
    pub public_url: String,
    /// HTTP basic auth user (`AC` + 32 hex digits).
    pub account_sid: String,
    /// HTTP basic auth password; also signs callbacks.
    pub auth_token: String,
    /// A second password accepted beside `auth_token`, so the token can be rotated without
    /// downtime (callbacks stay signed with `auth_token`).
    #[serde(default)]
    pub auth_token_secondary: Option<String>,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Requests per second each client address may make (token bucket); beyond it, 429.
    #[serde(default = "default_rate")]
    pub rate_limit_per_second: u32,
    /// How many requests a client may make at once above the rate.
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
    /// Connections the API holds at once; more are closed at accept.
    #[serde(default = "default_api_connections")]
    pub max_connections: u32,
    /// Connections one source address may hold at once (default 1,000, or
    /// `max_connections` if lower).
    #[serde(default)]
    pub max_connections_per_address: Option<u32>,
    /// A request's header must arrive whole this long after its first byte, and a new
    /// connection must begin its first request within it (slowloris).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: String,
    /// A keep-alive connection with no request this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    /// HTTPS on `listen` (then `public_url` is https); the files are read again on SIGHUP.
    #[serde(default)]
    pub tls: Option<ApiTls>,
}

/// The API's certificate chain and key (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTls {
    pub cert: String,
    pub key: String,
}

fn default_api_connections() -> u32 {
    10_000
}

fn default_header_timeout() -> String {
    "10s".into()
}

fn default_idle_timeout() -> String {
    "60s".into()
}

fn default_rate() -> u32 {
    1000
}

fn default_burst() -> u32 {
    2000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of `/metrics`, `/healthz`, `/readyz`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9100".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite database file (one node); its directory is created if missing.
    #[serde(default)]
    pub path: Option<String>,
    /// PostgreSQL URL (`postgres://…`), shared by several nodes; instead of `path`.
    #[serde(default)]
    pub url: Option<String>,
    /// With `url`: this node's number, 1 to 1023, different on every node.
    #[serde(default = "default_node_id")]
    pub node_id: u16,
    /// With `url`: a node not seen this long is gone, and the others deliver its queued
    /// messages.
    #[serde(default)]
    pub node_timeout: Option<String>,
}

fn default_node_id() -> u16 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// `host:port` for UDP and TCP.
    pub listen: String,
    /// Host put in Via/Contact/From of outbound legs.
    pub advertised_host: String,
    /// Sources allowed to send INVITEs.
    pub trusted_cidrs: Vec<String>,
    /// The DNS server trunks given by hostname are resolved with (`ip:port`); default: the
    /// first `nameserver` of /etc/resolv.conf.
    pub dns_server: Option<String>,
    /// Next hop for outbound legs.
    pub trunk: String,
    /// `udp` or `tcp`, towards the trunk.
    pub transport: String,
    /// RFC 3261 T1, T2, T4.
    pub t1: String,
    pub t2: String,
    pub t4: String,
    /// Keep calls up when their session closes.
    pub keep_calls_on_close: bool,
    /// Set P-Asserted-Identity to the proxy number on leg B.
    pub assert_identity: bool,
    /// Concurrent calls before 503.
    pub max_calls: u32,
    /// Live SIP transactions before new requests get 503 (UDP non-INVITE transactions
    /// live 32 s: ~30,000 at 1,000 calls/s).
    pub max_transactions: u32,
    /// The `Server` header of maskd's own SIP answers; "" sends none (nothing for a
    /// scanner to fingerprint).
    pub server_header: String,
    /// How long leg B may ring (after a provisional answer) before maskd gives up: CANCEL
    /// to leg B, 408 to the caller, the call logged no-answer.
    pub ring_timeout: String,
    /// SIP TCP connections open at once (accepted and opened by maskd); more are closed
    /// at accept.
    pub tcp_max_connections: u32,
    /// SIP TCP connections one source address may hold at once (accepted; default 256, or
    /// `tcp_max_connections` if lower).
    pub tcp_max_connections_per_address: Option<u32>,
    /// A SIP TCP connection silent this long is closed, unless a call still uses its peer.
    pub tcp_idle_timeout: String,
    /// A listener for SIP over TLS (its own port; `sips` and `transport=tls`).
    pub tls: Option<tls::TlsListen>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "127.0.0.1:5060".into(),
            advertised_host: "127.0.0.1".into(),
            trusted_cidrs: vec!["127.0.0.0/8".into(), "::1/128".into()],
            dns_server: None,
            trunk: "127.0.0.1:5070".into(),
            transport: "udp".into(),
            t1: "500ms".into(),
            t2: "4s".into(),
            t4: "5s".into(),
            keep_calls_on_close: false,
            assert_identity: false,
            max_calls: 10_000,
            max_transactions: 200_000,
            server_header: "maskd".into(),
            ring_timeout: "120s".into(),
            tcp_max_connections: 1024,
            tcp_max_connections_per_address: None,
            tcp_idle_timeout: "120s".into(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    /// `host:port` carriers bind to.
    pub listen: String,
    /// maskd's own system_id in bind responses.
    pub system_id: String,
    /// Peers allowed to bind.
    pub accounts: Vec<SmppAccount>,
    /// SMSCs maskd binds to.
    pub upstreams: Vec<SmppUpstream>,
    /// Where outbound messages go; longest prefix wins.
    pub routes: Vec<SmppRoute>,
    /// Answer ESME_RINVDSTADR instead of ESME_ROK for out-of-session messages.
    pub reject_out_of_session: bool,
    /// Outstanding requests per bind, each way.
    pub window: u32,
    /// Send enquire_link after this long without traffic from the peer.
    pub enquire_link_interval: String,
    /// Close a bind after this long without any PDU from the peer.
    pub inactivity_timeout: String,
    /// How long to wait for the answer to a PDU maskd sent.
    pub response_timeout: String,
    /// Outbound messages held in memory at most; the rest wait in the store.
    pub max_queued_in_memory: u32,
    /// A second listener, for SMPP over TLS.
    pub tls: Option<tls::TlsListen>,
    /// Connections (plain and TLS) held at once; more are closed at accept.
    pub max_connections: u32,
    /// Connections one source address may hold at once (default 100, or `max_connections`
    /// if lower).
    pub max_connections_per_address: Option<u32>,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            listen: "127.0.0.1:2775".into(),
            system_id: "maskd".into(),
            accounts: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
            reject_out_of_session: false,
            window: 64,
            enquire_link_interval: "30s".into(),
            inactivity_timeout: "120s".into(),
            response_timeout: "30s".into(),
            max_queued_in_memory: 100_000,
            tls: None,
            max_connections: 1_000,
            max_connections_per_address: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppAccount {
    pub system_id: String,
    pub password: String,
    #[serde(default = "loopback_cidrs")]
    pub allowed_cidrs: Vec<String>,
    #[serde(default = "default_max_binds")]
    pub max_binds: u32,
    /// PDUs per second before ESME_RTHROTTLED.
    #[serde(default = "default_max_rate")]
    pub max_rate: u32,
    /// ISO 3166 alpha-2 country (e.g. `US`) whose national format this peer's addresses
    /// with TON 2, or TON 0 without a leading `+`, are in.
    #[serde(default)]
    pub default_country: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppUpstream {
    pub name: String,
    pub address: String,
    pub system_id: String,
    pub password: String,
    #[serde(default = "default_bind")]
    pub bind: String,
    #[serde(default = "default_window")]
    pub window: u32,
    /// ISO 3166 alpha-2 country (e.g. `US`) whose national format this upstream's
    /// addresses with TON 2, or TON 0 without a leading `+`, are in.
    #[serde(default)]
    pub default_country: Option<String>,
    /// Connect over TLS, verifying the upstream with these settings.
    #[serde(default)]
    pub tls: Option<tls::TlsPeer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppRoute {
    pub prefix: String,
    pub via: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    pub timeout: String,
    /// `allow` or `block` when the intercept callback fails.
    pub intercept_on_error: String,
    /// Status callbacks the sender holds in memory at most; the rest wait in the store.
    pub max_queued_in_memory: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            timeout: "5s".into(),
            intercept_on_error: "allow".into(),
            max_queued_in_memory: 100_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub unique_name: String,
    #[serde(default)]
    pub default_ttl: u64,
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Keep a route key from a different counterpart this long after close.
    #[serde(default)]
    pub cooloff: Option<String>,
    /// Record answered calls of this service's sessions (SPEC §2.5).
    #[serde(default)]
    pub record: bool,
}

fn default_grace() -> String {
    "10s".into()
}
fn default_tick() -> String {
    "100ms".into()
}
fn default_max_body() -> usize {
    64 * 1024
}
fn loopback_cidrs() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}
fn default_max_binds() -> u32 {
    8
}
fn default_max_rate() -> u32 {
    1000
}
fn default_bind() -> String {
    "transceiver".into()
}
fn default_window() -> u32 {
    64
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "\"{text}\" is not a duration (use e.g. \"500ms\", \"30s\", \"2h\")"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("\"{text}\" is too large"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        "" => return Err(format!("\"{text}\" has no unit (use ms, s, m, h or d)")),
        _ => {
            return Err(format!(
                "\"{text}\" has an unknown unit \"{unit}\" (use ms, s, m, h or d)"
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// Reads and parses `path` (no validation).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

/// Parses YAML text into a `Config`, naming the key path of the first problem.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let mut inner = e.into_inner().to_string();
        // The YAML error may start with its own (partial) path; the key path says it.
        if let Some((head, rest)) = inner.split_once(": ") {
            if !head.contains(' ') && key.starts_with(head) {
                inner = rest.to_string();
            }
        }
        ConfigError::Parse {
            key: if key == "." || key.is_empty() {
                "(top level)".into()
            } else {
                key
            },
            message: inner,
        }
    })
}

/// Loads and validates.
pub fn load_valid(path: &Path) -> Result<Validated, ConfigError> {
    load(path)?.validate()
}

#[cfg(test)]
mod tests;
