//! `Config::validate`: every key checked, every problem collected with its key path before
//! any port is bound, and the values parsed into a `Validated` config.

use super::*;

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
    pub store: StoreTarget,
    pub services: Vec<ValidService>,
    pub carriers: std::sync::Arc<crate::core::carriers::Carriers>,
    /// The TCP listeners' bounds.
    pub bounds: super::bounds::Bounds,
}

/// Where the store is: `store.path` or `store.url`.
#[derive(Debug, Clone)]
pub enum StoreTarget {
    Sqlite(std::path::PathBuf),
    Postgres {
        url: String,
        node_id: u16,
        node_timeout: Duration,
    },
}

/// `store.url` is a PostgreSQL URL naming a host; the reason never echoes the password.
fn postgres_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".into());
    }
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) if c.get_hosts().is_empty() => Err("names no host".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("is not a PostgreSQL URL ({e})")),
    }
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
    /// `sip.tls`: a listener for SIP over TLS.
    pub tls: Option<super::tls::TlsListener>,
    /// Each carrier's TLS settings for its `tls` trunks, by carrier index.
    pub carrier_tls: Vec<Option<super::tls::TlsClient>>,
}

/// The SMPP plane's parsed settings.
#[derive(Debug, Clone)]
pub struct SmppTimers {
    pub listen: SocketAddr,
    /// `smpp.tls`: a listener for SMPP over TLS.
    pub tls: Option<super::tls::TlsListener>,
    /// Upstreams reached over TLS, by name.
    pub upstream_tls: std::collections::HashMap<String, super::tls::TlsClient>,
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

/// The networks of a CIDR list (a bare address is its own /32 or /128); entries that are
/// neither were reported by `Problems::cidrs`.
pub(super) fn cidr_list(list: &[String]) -> Vec<ipnet::IpNet> {
    list.iter()
        .filter_map(|c| {
            c.parse::<ipnet::IpNet>()
                .ok()
                .or_else(|| c.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
        })
        .collect()
}

pub(super) struct Problems(pub(super) Vec<(String, String)>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, msg: impl Into<String>) {
        self.0.push((key.into(), msg.into()));
    }
    pub(super) fn addr(&mut self, key: &str, v: &str) -> Option<SocketAddr> {
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
    pub(super) fn duration(&mut self, key: &str, v: &str) -> Option<Duration> {
        parse_duration(v).map_err(|m| self.add(key, m)).ok()
    }
    pub(super) fn cidrs(&mut self, key: &str, list: &[String]) {
        for (i, c) in list.iter().enumerate() {
            if c.parse::<ipnet::IpNet>().is_err() && c.parse::<std::net::IpAddr>().is_err() {
                self.add(
                    format!("{key}[{i}]"),
                    format!("\"{c}\" is not a CIDR (e.g. \"10.0.0.0/8\")"),
                );
            }
        }
    }
    pub(super) fn country(&mut self, key: &str, v: &Option<String>) {
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
    pub(super) fn one_of(&mut self, key: &str, v: &str, allowed: &[&str]) {
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
        if let Some(t) = &self.api.auth_token_secondary {
            if t.is_empty() {
                p.add(
                    "api.auth_token_secondary",
                    "must not be empty (leave it out instead)",
                );
            } else if *t == self.api.auth_token {
                p.add("api.auth_token_secondary", "is the same as api.auth_token");
            }
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
        let store = match (&self.store.path, &self.store.url) {
            (Some(_), Some(_)) => {
                p.add(
                    "store.url",
                    "set either store.path (SQLite) or store.url, not both",
                );
                None
            }
            (None, None) => {
                p.add("store.path", "required (or store.url for PostgreSQL)");
                None
            }
            (Some(path), None) if path.trim().is_empty() => {
                p.add("store.path", "must not be empty");
                None
            }
            (Some(path), None) => Some(StoreTarget::Sqlite(path.into())),
            (None, Some(_)) if !(1..=1023).contains(&self.store.node_id) => {
                p.add("store.node_id", "must be 1 to 1023");
                None
            }
            (None, Some(url)) => match postgres_url(url) {
                Ok(()) => {
                    let node_timeout = match &self.store.node_timeout {
                        None => Some(Duration::from_secs(60)),
                        Some(text) => p.duration("store.node_timeout", text).filter(|d| {
                            let ok = *d >= Duration::from_secs(1);
                            if !ok {
                                p.add("store.node_timeout", "must be at least 1s");
                            }
                            ok
                        }),
                    };
                    node_timeout.map(|node_timeout| StoreTarget::Postgres {
                        url: url.clone(),
                        node_id: self.store.node_id,
                        node_timeout,
                    })
                }
                Err(why) => {
                    p.add("store.url", &why);
                    None
                }
            },
        };
        let sip = &self.sip;
        p.addr("sip.listen", &sip.listen);
        p.addr("sip.trunk", &sip.trunk);
        if let Some(d) = &sip.dns_server {
            p.addr("sip.dns_server", d);
        }
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
        let mut upstream_tls = std::collections::HashMap::new();
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
            if let Some(t) = &u.tls {
                if let Some(c) = p.tls_peer(&format!("{k}.tls"), t, Some(&u.address)) {
                    upstream_tls.insert(u.name.clone(), c);
                }
            }
        }
        let smpp_tls = smpp.tls.as_ref().and_then(|t| p.tls_listen("smpp.tls", t));
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
        let bounds = super::bounds::check(&self, &mut p);
        let (carriers, carrier_tls) =
            super::carriers::validate(&self.carriers, &self.smpp, &self.sip, &mut p);
        let sip_tls = self
            .sip
            .tls
            .as_ref()
            .and_then(|t| p.tls_listen("sip.tls", t));
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
                trusted: cidr_list(&sip.trusted_cidrs),
                t1,
                t2,
                t4,
                // Validated above: a None added a problem and returned.
                ring_timeout: ring_timeout.unwrap_or_default(),
                tcp_idle_timeout: tcp_idle.unwrap_or_default(),
                tcp_max_connections: sip.tcp_max_connections as usize,
                tls: sip_tls,
                carrier_tls,
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
            Some(store),
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
            store,
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
            store,
            smpp: SmppTimers {
                listen: smpp_listen,
                tls: smpp_tls,
                upstream_tls,
                enquire_link_interval: smpp_enquire,
                inactivity_timeout: smpp_inactivity,
                response_timeout: smpp_response,
            },
            services,
            bounds,
            carriers: std::sync::Arc::new(carriers),
        })
    }
}
