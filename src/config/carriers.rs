//! The `carriers:` keys (SPEC §2.7): the proxy numbers each carrier owns, the SMPP link its
//! numbers' messages leave by, its SIP trunks (tried in order) with their digest
//! credentials, how often they are probed, and its per-number message rate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{Problems, SipConfig, SmppConfig};
use crate::core::carriers::{Carrier, Carriers, Credentials, Trunk, TrunkName, TrunkSpec};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    pub name: String,
    /// Numbers or prefixes (`+` and digits) this carrier owns; longest match wins.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Outbound messages per second, per number.
    #[serde(default)]
    pub mps: Option<u32>,
    /// The SMPP account or upstream its numbers' messages leave by.
    #[serde(default)]
    pub smpp: Option<String>,
    #[serde(default)]
    pub sip: Option<CarrierSipConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierSipConfig {
    /// How often each trunk is probed with OPTIONS.
    #[serde(default = "default_options_interval")]
    pub options_interval: String,
    /// Tried in order: failover on 503, 408 or silence.
    pub trunks: Vec<TrunkConfig>,
    /// REGISTER with each trunk (for carriers that deliver inbound calls only to a
    /// registered contact), asking for this long; refreshed at half of what is granted.
    #[serde(default)]
    pub register: Option<String>,
    /// How its `tls` trunks are verified (and the client certificate shown to them); the
    /// built-in web roots, each trunk's host as the name, when unset.
    #[serde(default)]
    pub tls: Option<super::tls::TlsPeer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// `ip:port`, or a hostname (RFC 3263: SRV records when no port is given, else A/AAAA).
    pub address: String,
    /// `udp`, `tcp` or `tls`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Digest credentials, used when the trunk challenges.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Answer only challenges of this realm.
    #[serde(default)]
    pub realm: Option<String>,
}

fn default_options_interval() -> String {
    "30s".into()
}

fn default_transport() -> String {
    "udp".into()
}

/// `+` and 1 to 15 digits.
fn is_number_or_prefix(v: &str) -> bool {
    v.strip_prefix('+')
        .is_some_and(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks `carriers`, adding every problem to `p`; the carriers as the planes use them,
/// with each one's TLS settings (by index; `None` when it has no `tls` trunk).
pub(super) fn validate(
    list: &[CarrierConfig],
    smpp: &SmppConfig,
    sip_cfg: &SipConfig,
    p: &mut Problems,
) -> (Carriers, Vec<Option<super::tls::TlsClient>>) {
    let mut tls_of = Vec::new();
    let trusted = super::validate::cidr_list(&sip_cfg.trusted_cidrs);
    let links: Vec<&str> = smpp
        .accounts
        .iter()
        .map(|a| a.system_id.as_str())
        .chain(smpp.upstreams.iter().map(|u| u.name.as_str()))
        .collect();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut owners: HashMap<&str, usize> = HashMap::new();
    let mut carriers = Vec::new();
    let mut owned = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let key = format!("carriers[{i}]");
        if c.name.trim().is_empty() {
            p.add(format!("{key}.name"), "must not be empty");
        } else if let Some(j) = names.insert(&c.name, i) {
            p.add(
                format!("{key}.name"),
                format!("\"{}\" is carriers[{j}]'s name too", c.name),
            );
        }
        for (k, n) in c.numbers.iter().enumerate() {
            let nkey = format!("{key}.numbers[{k}]");
            if !is_number_or_prefix(n) {
                p.add(nkey, format!("\"{n}\" is not + and 1 to 15 digits"));
            } else if let Some(j) = owners.insert(n, i) {
                p.add(
                    nkey,
                    format!(
                        "\"{n}\" is owned by carriers[{j}] too: a number or prefix has one owner"
                    ),
                );
            } else {
                owned.push((n.clone(), i));
            }
        }
        if c.mps.is_some_and(|m| !(1..=1000).contains(&m)) {
            p.add(format!("{key}.mps"), "must be 1 to 1000");
        }
        if let Some(link) = &c.smpp {
            if !links.contains(&link.as_str()) {
                p.add(
                    format!("{key}.smpp"),
                    format!("\"{link}\" is no smpp.accounts system_id or smpp.upstreams name"),
                );
            }
        }
        let mut trunks = Vec::new();
        let mut options_interval = Duration::from_secs(30);
        let mut register = None;
        let mut specs = Vec::new();
        let mut tls = None;
        if let Some(sip) = &c.sip {
            if sip.trunks.iter().any(|t| t.transport == "tls") {
                let settings = sip.tls.clone().unwrap_or_default();
                tls = p.tls_peer(&format!("{key}.sip.tls"), &settings, None);
                if sip_cfg.tls.is_none() {
                    // maskd's Via and Contact towards the trunk name its TLS listener: the
                    // carrier's answers on new connections and its in-dialog requests go there.
                    let k = sip
                        .trunks
                        .iter()
                        .position(|t| t.transport == "tls")
                        .unwrap_or(0);
                    p.add(
                        format!("{key}.sip.trunks[{k}].transport"),
                        "tls needs sip.tls (maskd's TLS listener, which the carrier's requests come back to)",
                    );
                }
            }
            if let Some(d) = p.duration(
                &format!("{key}.sip.options_interval"),
                &sip.options_interval,
            ) {
                if d < Duration::from_secs(1) {
                    p.add(format!("{key}.sip.options_interval"), "must be at least 1s");
                }
                options_interval = d;
            }
            if let Some(text) = &sip.register {
                let rkey = format!("{key}.sip.register");
                match p.duration(&rkey, text) {
                    Some(d) if d < Duration::from_secs(60) => p.add(rkey, "must be at least 60s"),
                    Some(d) => register = Some(d),
                    None => {}
                }
                for (k, t) in sip.trunks.iter().enumerate() {
                    if t.username.is_none() {
                        p.add(
                            format!("{key}.sip.trunks[{k}].username"),
                            "sip.register needs each trunk's username (the registered user)",
                        );
                    }
                }
            }
            if sip.trunks.is_empty() {
                p.add(format!("{key}.sip.trunks"), "needs at least one trunk");
            }
            for (k, t) in sip.trunks.iter().enumerate() {
                let tkey = format!("{key}.sip.trunks[{k}]");
                match trunk(t, &tkey, p) {
                    Some(TrunkSpec::Addr(trunk)) => {
                        if !trusted.iter().any(|n| n.contains(&trunk.addr.ip())) {
                            p.add(
                                format!("{tkey}.address"),
                                format!(
                                    "{} is outside sip.trusted_cidrs: maskd would drop its answers",
                                    trunk.addr.ip()
                                ),
                            );
                        }
                        trunks.push(trunk.clone());
                        specs.push(TrunkSpec::Addr(trunk));
                    }
                    Some(named) => specs.push(named),
                    None => {}
                }
            }
        }
        carriers.push(Carrier {
            name: c.name.clone(),
            smpp: c.smpp.clone(),
            trunks,
            // Only when a trunk is given by hostname: `trunks` is then rebuilt as it resolves.
            specs: if specs.iter().any(|s| matches!(s, TrunkSpec::Name(_))) {
                specs
            } else {
                Vec::new()
            },
            options_interval,
            register,
            mps: c.mps,
        });
        tls_of.push(tls);
    }
    (Carriers::new(carriers, owned), tls_of)
}

/// `host` or `host:port` with `host` a hostname (RFC 1123 labels).
fn host_and_port(v: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
        None => (v, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let host = host.trim_end_matches('.');
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(label_ok)
        && host.bytes().any(|b| b.is_ascii_alphabetic());
    ok.then(|| (host.to_ascii_lowercase(), port))
}

fn trunk(t: &TrunkConfig, key: &str, p: &mut Problems) -> Option<TrunkSpec> {
    enum Where {
        Addr(SocketAddr),
        Name(String, Option<u16>),
    }
    let at = match (t.address.parse::<SocketAddr>(), host_and_port(&t.address)) {
        (Ok(a), _) => Some(Where::Addr(a)),
        (Err(_), Some((h, port))) => Some(Where::Name(h, port)),
        (Err(_), None) => {
            p.add(
                format!("{key}.address"),
                format!(
                    "\"{}\" is not an ip:port address or a hostname with an optional port (e.g. \"192.0.2.10:5060\", \"sbc.carrier.example\")",
                    t.address
                ),
            );
            None
        }
    };
    p.one_of(
        &format!("{key}.transport"),
        &t.transport,
        &["udp", "tcp", "tls"],
    );
    let credentials = match (&t.username, &t.password) {
        (Some(u), Some(pw)) if !u.is_empty() => Some(Credentials {
            username: u.clone(),
            password: pw.clone(),
            realm: t.realm.clone(),
        }),
        (None, None) => None,
        _ => {
            p.add(
                format!("{key}.username"),
                "username and password go together (a non-empty username)",
            );
            None
        }
    };
    let tls = t.transport == "tls";
    let tcp = t.transport == "tcp" || tls;
    Some(match at? {
        Where::Addr(addr) => TrunkSpec::Addr(Trunk {
            addr,
            tcp,
            tls,
            host: None,
            credentials,
        }),
        Where::Name(host, port) => TrunkSpec::Name(TrunkName {
            host,
            port,
            tcp,
            tls,
            credentials,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::host_and_port;

    #[test]
    fn trunk_hostnames_with_or_without_a_port() {
        assert_eq!(
            host_and_port("SBC.Carrier.example"),
            Some(("sbc.carrier.example".into(), None))
        );
        assert_eq!(
            host_and_port("sbc.carrier.example:5080"),
            Some(("sbc.carrier.example".into(), Some(5080)))
        );
        for bad in [
            "",
            "trunk example!",
            "sbc..example",
            "-sbc.example",
            "sbc.example:0",
            "sbc.example:x",
            "10.0.0.1.2",
        ] {
            assert_eq!(host_and_port(bad), None, "{bad}");
        }
    }
}
