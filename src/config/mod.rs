//! `config.yaml`: serde structs that reject unknown keys, defaults, and `validate()`, which
//! collects every problem with its key path before any port is bound. Durations are strings
//! with units (`"500ms"`, `"30s"`, `"2h"`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::{sid::SidKind, Sid, E164};

mod media;
pub use media::{MediaConfig, MediaSettings, RecordingConfig};

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
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Requests per second each client address may make (token bucket); beyond it, 429.
    #[serde(default = "default_rate")]
    pub rate_limit_per_second: u32,
    /// How many requests a client may make at once above the rate.
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
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
    /// SQLite database file; its directory is created if missing.
    pub path: String,
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
    /// A SIP TCP connection silent this long is closed, unless a call still uses its peer.
    pub tcp_idle_timeout: String,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "127.0.0.1:5060".into(),
            advertised_host: "127.0.0.1".into(),
            trusted_cidrs: vec!["127.0.0.0/8".into()],
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
            tcp_idle_timeout: "120s".into(),
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
    vec!["127.0.0.0/8".into()]
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

/// A config that passed validation, with its values parsed.
#[derive(Debug, Clone)]
pub struct Validated {
    pub raw: Config,
    pub api_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub public_url: String,
    pub shutdown_grace: Duration,
    pub timer_tick: Duration,
    pub webhook_timeout: Duration,
    pub smpp: SmppTimers,
    pub sip: SipSettings,
    pub media: MediaSettings,
    pub services: Vec<ValidService>,
}

/// The SIP plane's parsed settings.
#[derive(Debug, Clone)]
pub struct SipSettings {
    pub listen: SocketAddr,
    pub trunk: SocketAddr,
    pub trusted: Vec<ipnet::IpNet>,
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    pub ring_timeout: Duration,
    pub tcp_idle_timeout: Duration,
    pub tcp_max_connections: usize,
}

/// The SMPP plane's parsed settings.
#[derive(Debug, Clone)]
pub struct SmppTimers {
    pub listen: SocketAddr,
    pub enquire_link_interval: Duration,
    pub inactivity_timeout: Duration,
    pub response_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ValidService {
    pub unique_name: String,
    pub default_ttl: u64,
    pub cooloff: Duration,
    pub numbers: Vec<E164>,
    pub record: bool,
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

struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, msg: impl Into<String>) {
        self.0.push((key.into(), msg.into()));
    }
    fn addr(&mut self, key: &str, v: &str) -> Option<SocketAddr> {
        match v.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.add(
                    key,
                    format!("\"{v}\" is not a host:port address (e.g. \"127.0.0.1:8080\")"),
                );
                None
            }
        }
    }
    fn duration(&mut self, key: &str, v: &str) -> Option<Duration> {
        parse_duration(v).map_err(|m| self.add(key, m)).ok()
    }
    fn cidrs(&mut self, key: &str, list: &[String]) {
        for (i, c) in list.iter().enumerate() {
            if c.parse::<ipnet::IpNet>().is_err() && c.parse::<std::net::IpAddr>().is_err() {
                self.add(
                    format!("{key}[{i}]"),
                    format!("\"{c}\" is not a CIDR (e.g. \"10.0.0.0/8\")"),
                );
            }
        }
    }
    fn country(&mut self, key: &str, v: &Option<String>) {
        if let Some(c) = v {
            if E164::calling_code_of(c).is_none() {
                self.add(
                    key,
                    format!(
                        "\"{c}\" is not an ISO 3166 alpha-2 country code with a calling code \
                         (upper case, e.g. \"US\", \"GB\", \"DE\")"
                    ),
                );
            }
        }
    }
    fn one_of(&mut self, key: &str, v: &str, allowed: &[&str]) {
        if !allowed.contains(&v) {
            self.add(
                key,
                format!("\"{v}\" must be one of {}", allowed.join(", ")),
            );
        }
    }
}

impl Config {
    /// Checks every value; returns all problems at once.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let mut p = Problems(Vec::new());
        let api_listen = p.addr("api.listen", &self.api.listen);
        let metrics_listen = p.addr("metrics.listen", &self.metrics.listen);
        if let (Some(a), Some(m)) = (api_listen, metrics_listen) {
            if a == m && a.port() != 0 {
                p.add("metrics.listen", "must differ from api.listen");
            }
        }
        let public_url = self.api.public_url.trim_end_matches('/').to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://"))
            || public_url.len() < 10
        {
            p.add(
                "api.public_url",
                format!(
                    "\"{}\" must be an http:// or https:// URL",
                    self.api.public_url
                ),
            );
        }
        if Sid::parse(SidKind::Account, &self.api.account_sid).is_none() {
            p.add("api.account_sid", "must be AC followed by 32 hex digits");
        }
        if self.api.auth_token.is_empty() {
            p.add("api.auth_token", "must not be empty");
        }
        if self.api.rate_limit_per_second == 0 {
            p.add("api.rate_limit_per_second", "must be at least 1");
        }
        if self.api.rate_limit_burst == 0 {
            p.add("api.rate_limit_burst", "must be at least 1");
        }
        if self.api.max_body_bytes < 1024 {
            p.add("api.max_body_bytes", "must be at least 1024");
        }
        if self.store.path.trim().is_empty() {
            p.add("store.path", "must not be empty");
        }
        let sip = &self.sip;
        p.addr("sip.listen", &sip.listen);
        p.addr("sip.trunk", &sip.trunk);
        if sip.advertised_host.trim().is_empty() {
            p.add("sip.advertised_host", "must not be empty");
        }
        p.cidrs("sip.trusted_cidrs", &sip.trusted_cidrs);
        p.one_of("sip.transport", &sip.transport, &["udp", "tcp"]);
        if sip.server_header.len() > 128
            || sip.server_header.chars().any(|c| !(' '..='~').contains(&c))
        {
            p.add(
                "sip.server_header",
                "must be printable ASCII, at most 128 characters",
            );
        }
        let t1 = p.duration("sip.t1", &sip.t1);
        let t2 = p.duration("sip.t2", &sip.t2);
        let t4 = p.duration("sip.t4", &sip.t4);
        let ring_timeout = p.duration("sip.ring_timeout", &sip.ring_timeout);
        let tcp_idle = p.duration("sip.tcp_idle_timeout", &sip.tcp_idle_timeout);
        if ring_timeout.is_some_and(|d| d < Duration::from_secs(1)) {
            p.add("sip.ring_timeout", "must be at least 1s");
        }
        if tcp_idle.is_some_and(|d| d < Duration::from_secs(1)) {
            p.add("sip.tcp_idle_timeout", "must be at least 1s");
        }
        if sip.tcp_max_connections == 0 {
            p.add("sip.tcp_max_connections", "must be at least 1");
        }
        if self.worker_threads > 1024 {
            p.add(
                "worker_threads",
                "must be at most 1024 (0 picks one fewer than the cores)",
            );
        }
        if self.smpp.max_queued_in_memory == 0 {
            p.add("smpp.max_queued_in_memory", "must be at least 1");
        }
        if self.webhooks.max_queued_in_memory == 0 {
            p.add("webhooks.max_queued_in_memory", "must be at least 1");
        }
        if sip.max_transactions == 0 {
            p.add("sip.max_transactions", "must be at least 1");
        }
        if sip.max_calls == 0 {
            p.add("sip.max_calls", "must be at least 1");
        }
        let smpp = &self.smpp;
        p.addr("smpp.listen", &smpp.listen);
        if smpp.system_id.is_empty() || smpp.system_id.len() > 15 {
            p.add("smpp.system_id", "must be 1 to 15 characters");
        }
        let mut names = HashSet::new();
        for (i, a) in smpp.accounts.iter().enumerate() {
            let k = format!("smpp.accounts[{i}]");
            if a.system_id.is_empty() || a.system_id.len() > 15 {
                p.add(format!("{k}.system_id"), "must be 1 to 15 characters");
            }
            if !names.insert(a.system_id.clone()) {
                p.add(
                    format!("{k}.system_id"),
                    format!("\"{}\" is used twice", a.system_id),
                );
            }
            if a.password.is_empty() || a.password.len() > 8 {
                p.add(
                    format!("{k}.password"),
                    "must be 1 to 8 characters (SMPP 3.4)",
                );
            }
            p.cidrs(&format!("{k}.allowed_cidrs"), &a.allowed_cidrs);
            if a.max_binds == 0 {
                p.add(format!("{k}.max_binds"), "must be at least 1");
            }
            if a.max_rate == 0 {
                p.add(format!("{k}.max_rate"), "must be at least 1");
            }
            p.country(&format!("{k}.default_country"), &a.default_country);
        }
        for (i, u) in smpp.upstreams.iter().enumerate() {
            let k = format!("smpp.upstreams[{i}]");
            if u.name.is_empty() || !names.insert(u.name.clone()) {
                p.add(
                    format!("{k}.name"),
                    format!(
                        "\"{}\" is empty or not unique among accounts and upstreams",
                        u.name
                    ),
                );
            }
            match u.address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => p.add(
                    format!("{k}.address"),
                    format!("\"{}\" is not host:port", u.address),
                ),
            }
            p.one_of(
                &format!("{k}.bind"),
                &u.bind,
                &["transmitter", "receiver", "transceiver"],
            );
            if u.window == 0 {
                p.add(format!("{k}.window"), "must be at least 1");
            }
            p.country(&format!("{k}.default_country"), &u.default_country);
        }
        for (i, r) in smpp.routes.iter().enumerate() {
            let k = format!("smpp.routes[{i}]");
            if !r.prefix.starts_with('+') || !r.prefix[1..].bytes().all(|c| c.is_ascii_digit()) {
                p.add(
                    format!("{k}.prefix"),
                    format!("\"{}\" must be + followed by digits", r.prefix),
                );
            }
            if !names.contains(&r.via) {
                p.add(
                    format!("{k}.via"),
                    format!("\"{}\" is not an account or upstream", r.via),
                );
            }
        }
        if smpp.window == 0 || smpp.window > 10_000 {
            p.add("smpp.window", "must be between 1 and 10000");
        }
        let smpp_enquire = p.duration("smpp.enquire_link_interval", &smpp.enquire_link_interval);
        let smpp_inactivity = p.duration("smpp.inactivity_timeout", &smpp.inactivity_timeout);
        let smpp_response = p.duration("smpp.response_timeout", &smpp.response_timeout);
        let webhook_timeout = p.duration("webhooks.timeout", &self.webhooks.timeout);
        p.one_of(
            "webhooks.intercept_on_error",
            &self.webhooks.intercept_on_error,
            &["allow", "block"],
        );
        let shutdown_grace = p.duration("shutdown_grace", &self.shutdown_grace);
        let timer_tick = p.duration("timer_tick", &self.timer_tick);
        if let Some(t) = timer_tick {
            if t.is_zero() || t > Duration::from_secs(1) {
                p.add(
                    "timer_tick",
                    "must be between 1ms and 1s (expiry lateness is bounded by it)",
                );
            }
        }
        let media = self.media.validate(&mut p);
        let mut services = Vec::new();
        let mut svc_names = HashSet::new();
        let mut all_numbers = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let k = format!("services[{i}]");
            if s.record && self.media.mode == "passthrough" {
                p.add(
                    format!("{k}.record"),
                    "needs media.mode: anchor (in passthrough no media reaches maskd to record)",
                );
            }
            if s.unique_name.is_empty() || s.unique_name.chars().count() > 191 {
                p.add(format!("{k}.unique_name"), "must be 1 to 191 characters");
            }
            if !svc_names.insert(s.unique_name.clone()) {
                p.add(
                    format!("{k}.unique_name"),
                    format!("\"{}\" is used twice", s.unique_name),
                );
            }
            let mut numbers = Vec::new();
            for (j, n) in s.numbers.iter().enumerate() {
                match E164::parse(n) {
                    Ok(e) if !all_numbers.insert(e) => p.add(
                        format!("{k}.numbers[{j}]"),
                        "number is listed twice (a number belongs to one service)",
                    ),
                    Ok(e) => numbers.push(e),
                    Err(e) => p.add(format!("{k}.numbers[{j}]"), format!("\"{n}\": {e}")),
                }
            }
            let cooloff = match &s.cooloff {
                Some(c) => p.duration(&format!("{k}.cooloff"), c).unwrap_or_default(),
                None => Duration::ZERO,
            };
            services.push(ValidService {
                unique_name: s.unique_name.clone(),
                default_ttl: s.default_ttl,
                cooloff,
                numbers,
                record: s.record,
            });
        }
        if !p.0.is_empty() {
            return Err(ConfigError::Invalid(p.0));
        }
        // Every Option below is Some: a None added a problem above.
        let smpp_listen = smpp.listen.parse::<SocketAddr>().ok();
        let sip_settings = match (
            sip.listen.parse::<SocketAddr>(),
            sip.trunk.parse::<SocketAddr>(),
            t1,
            t2,
            t4,
        ) {
            (Ok(listen), Ok(trunk), Some(t1), Some(t2), Some(t4)) => Some(SipSettings {
                listen,
                trunk,
                trusted: sip
                    .trusted_cidrs
                    .iter()
                    .filter_map(|c| {
                        c.parse::<ipnet::IpNet>()
                            .ok()
                            .or_else(|| c.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
                    })
                    .collect(),
                t1,
                t2,
                t4,
                // Validated above: a None added a problem and returned.
                ring_timeout: ring_timeout.unwrap_or_default(),
                tcp_idle_timeout: tcp_idle.unwrap_or_default(),
                tcp_max_connections: sip.tcp_max_connections as usize,
            }),
            _ => None,
        };
        let (
            Some(api_listen),
            Some(metrics_listen),
            Some(shutdown_grace),
            Some(timer_tick),
            Some(webhook_timeout),
            Some(smpp_listen),
            Some(smpp_enquire),
            Some(smpp_inactivity),
            Some(smpp_response),
            Some(sip_settings),
            Some(media),
        ) = (
            api_listen,
            metrics_listen,
            shutdown_grace,
            timer_tick,
            webhook_timeout,
            smpp_listen,
            smpp_enquire,
            smpp_inactivity,
            smpp_response,
            sip_settings,
            media,
        )
        else {
            return Err(ConfigError::Invalid(vec![(
                "(config)".into(),
                "invalid".into(),
            )]));
        };
        Ok(Validated {
            raw: self,
            api_listen,
            metrics_listen,
            public_url,
            shutdown_grace,
            timer_tick,
            webhook_timeout,
            sip: sip_settings,
            media,
            smpp: SmppTimers {
                listen: smpp_listen,
                enquire_link_interval: smpp_enquire,
                inactivity_timeout: smpp_inactivity,
                response_timeout: smpp_response,
            },
            services,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../config.yaml");

    #[test]
    fn shipped_config_is_valid() {
        let v = parse(SHIPPED).unwrap().validate().unwrap();
        assert_eq!(v.api_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(v.services[0].numbers.len(), 2);
    }

    #[test]
    fn recording_a_service_needs_anchored_media() {
        let mut c = parse(SHIPPED).unwrap();
        c.services[0].record = true;
        c.media.mode = "passthrough".into();
        match c.clone().validate() {
            Err(ConfigError::Invalid(problems)) => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert_eq!(problems[0].0, "services[0].record");
            }
            other => panic!("expected services[0].record refused, got {other:?}"),
        }
        c.media.mode = "anchor".into();
        assert!(c.validate().unwrap().services[0].record);
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let text = SHIPPED.replace("  auth_token:", "  auth_tokn: x\n  auth_token:");
        match parse(&text) {
            Err(ConfigError::Parse { key, message }) => {
                assert_eq!(key, "api.auth_tokn", "{message}");
                assert!(message.contains("unknown field"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        let text = format!("{SHIPPED}\nbogus: 1\n");
        match parse(&text) {
            Err(ConfigError::Parse { key, .. }) => assert_eq!(key, "bogus"),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn validation_reports_every_problem_with_its_key() {
        let text = SHIPPED
            .replace("\"127.0.0.1:8080\"", "\"nowhere\"")
            .replace("timeout: \"5s\"", "timeout: \"5 parsecs\"")
            .replace("\"+15550000002\"", "\"+1555\"");
        let err = parse(&text).unwrap().validate().unwrap_err();
        let lines = err.lines().join("\n");
        assert!(lines.contains("api.listen: \"nowhere\""), "{lines}");
        assert!(lines.contains("webhooks.timeout:"), "{lines}");
        assert!(lines.contains("services[0].numbers[1]:"), "{lines}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }
}
