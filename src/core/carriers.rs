//! Which carrier owns which proxy numbers (SPEC §2.7), and so where traffic from a proxy
//! number leaves: the carrier's SMPP link for its messages, its SIP trunks (in order) for its
//! calls. A call's caller ID or a message's sender is only valid on the carrier that owns the
//! number. Pure data: the planes ask, and fall back to their prefix routes and default trunk
//! for numbers no carrier owns.

use std::net::SocketAddr;
use std::time::Duration;

use super::E164;

/// Digest credentials a trunk's challenges are answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Answer only challenges of this realm (`None`: any).
    pub realm: Option<String>,
}

/// One SIP trunk of a carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub addr: SocketAddr,
    /// Over a connection (TCP, or TLS with `tls`).
    pub tcp: bool,
    pub tls: bool,
    /// The hostname it was resolved from (the name a TLS trunk's certificate must carry).
    pub host: Option<String>,
    pub credentials: Option<Credentials>,
}

/// A trunk given by hostname (RFC 3263): SRV records of `_sip._udp` / `_sip._tcp` at `host`
/// when no port is given, else its A/AAAA records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkName {
    pub host: String,
    pub port: Option<u16>,
    pub tcp: bool,
    pub tls: bool,
    pub credentials: Option<Credentials>,
}

/// A trunk as configured: an address, or a hostname resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkSpec {
    Addr(Trunk),
    Name(TrunkName),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Carrier {
    pub name: String,
    /// The SMPP account or upstream its numbers' messages leave by.
    pub smpp: Option<String>,
    /// Tried in order: the first one up, then the next on 503, 408 or silence. A trunk
    /// given by hostname is here as the addresses it resolved to, in SRV order.
    pub trunks: Vec<Trunk>,
    /// The trunks as configured (empty: `trunks` as they are).
    pub specs: Vec<TrunkSpec>,
    /// How often each trunk is probed with OPTIONS.
    pub options_interval: Duration,
    /// REGISTER with each trunk, asking for this long (`None`: no registration).
    pub register: Option<Duration>,
    /// Outbound messages per second per number, when the carrier limits them.
    pub mps: Option<u32>,
}

/// Pool numbers tagged with a carrier over the API (a maskd extension of the PhoneNumber
/// resource), by number: the engine keeps it as numbers change, the planes read it.
#[derive(Debug, Default)]
pub struct CarrierTags(
    parking_lot::RwLock<std::collections::HashMap<u64, String, foldhash::fast::RandomState>>,
    std::sync::atomic::AtomicUsize,
);

impl CarrierTags {
    /// Tags `number` with `carrier`, or takes its tag off (`None`).
    pub fn set(&self, number: E164, carrier: Option<&str>) {
        let mut m = self.0.write();
        match carrier {
            Some(c) => {
                m.insert(number.as_u64(), c.to_string());
            }
            None => {
                m.remove(&number.as_u64());
            }
        }
        self.1.store(m.len(), std::sync::atomic::Ordering::Release);
    }

    /// No number is tagged (one atomic load: the planes' common case costs nothing more).
    pub fn is_empty(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Acquire) == 0
    }
}

/// Every carrier, and the numbers and prefixes each owns (longest match wins).
#[derive(Debug, Clone, Default)]
pub struct Carriers {
    list: Vec<Carrier>,
    /// `(digit count, prefix as a number)` → carrier index: a number matches a prefix when
    /// its leading digits, as a number, equal it (no text on the hot path).
    owned: std::collections::HashMap<(u32, u64), usize, foldhash::fast::RandomState>,
    /// The prefixes' digit counts, longest first: one probe of `owned` each.
    lengths: Vec<u32>,
}

impl PartialEq for Carriers {
    fn eq(&self, other: &Carriers) -> bool {
        self.list == other.list && self.owned == other.owned
    }
}

/// The number of decimal digits of `v` (at least 1).
fn digit_count(v: u64) -> u32 {
    v.checked_ilog10().map_or(1, |l| l + 1)
}

impl Carriers {
    /// `owned`: each carrier's numbers or prefixes (`+` and digits), by index into `list`.
    /// Prefixes that are not `+` and 1 to 15 digits are left out (config validation refuses
    /// them first).
    pub fn new(list: Vec<Carrier>, owned: Vec<(String, usize)>) -> Carriers {
        let owned: std::collections::HashMap<(u32, u64), usize, _> = owned
            .into_iter()
            .filter(|(_, i)| *i < list.len())
            .filter_map(|(p, i)| {
                let d = p.strip_prefix('+')?;
                if d.is_empty() || d.len() > 15 || !d.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(((d.len() as u32, d.parse().ok()?), i))
            })
            .collect();
        let mut lengths: Vec<u32> = owned.keys().map(|(len, _)| *len).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        Carriers {
            list,
            owned,
            lengths,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn list(&self) -> &[Carrier] {
        &self.list
    }

    /// The trunks given by hostname, each once.
    pub fn names(&self) -> Vec<TrunkName> {
        let mut out: Vec<TrunkName> = Vec::new();
        for c in &self.list {
            for s in &c.specs {
                if let TrunkSpec::Name(n) = s {
                    if !out.contains(n) {
                        out.push(n.clone());
                    }
                }
            }
        }
        out
    }

    /// These carriers with each hostname trunk as the addresses `resolved` gives it (none
    /// yet: left out), in its place among the others.
    pub fn with_resolved(&self, resolved: &dyn Fn(&TrunkName) -> Vec<SocketAddr>) -> Carriers {
        let mut next = self.clone();
        for c in &mut next.list {
            if c.specs.is_empty() {
                continue;
            }
            c.trunks = c
                .specs
                .iter()
                .flat_map(|s| match s {
                    TrunkSpec::Addr(t) => vec![t.clone()],
                    TrunkSpec::Name(n) => resolved(n)
                        .into_iter()
                        .map(|addr| Trunk {
                            addr,
                            tcp: n.tcp,
                            tls: n.tls,
                            host: Some(n.host.clone()),
                            credentials: n.credentials.clone(),
                        })
                        .collect(),
                })
                .collect();
        }
        next
    }

    /// Whether any trunk of carrier `i` has credentials.
    pub fn has_credentials(&self, i: usize) -> bool {
        self.list.get(i).is_some_and(|c| {
            c.trunks.iter().any(|t| t.credentials.is_some())
                || c.specs.iter().any(|s| match s {
                    TrunkSpec::Addr(t) => t.credentials.is_some(),
                    TrunkSpec::Name(n) => n.credentials.is_some(),
                })
        })
    }

    /// The carrier owning `number`: the one its pool number is tagged with over the API
    /// (`tags`, when that carrier is configured), else `owner`.
    pub fn owner_tagged(&self, number: E164, tags: &CarrierTags) -> Option<(usize, &Carrier)> {
        if !tags.is_empty() {
            let tagged = tags.0.read().get(&number.as_u64()).and_then(|name| {
                self.list
                    .iter()
                    .position(|c| c.name == *name)
                    .map(|i| (i, &self.list[i]))
            });
            if tagged.is_some() {
                return tagged;
            }
        }
        self.owner(number)
    }

    /// Whether a carrier of this name is configured.
    pub fn has(&self, name: &str) -> bool {
        self.list.iter().any(|c| c.name == name)
    }

    /// The carrier owning `number` (its longest matching number or prefix), with its index.
    pub fn owner(&self, number: E164) -> Option<(usize, &Carrier)> {
        if self.owned.is_empty() {
            return None;
        }
        let n = number.as_u64();
        let len = digit_count(n);
        self.lengths
            .iter()
            .filter(|plen| **plen <= len)
            .find_map(|plen| self.owned.get(&(*plen, n / 10u64.pow(len - plen))))
            .map(|i| (*i, &self.list[*i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carrier(name: &str) -> Carrier {
        Carrier {
            name: name.into(),
            smpp: Some(name.into()),
            trunks: Vec::new(),
            options_interval: Duration::from_secs(30),
            register: None,
            specs: Vec::new(),
            mps: None,
        }
    }

    #[test]
    fn a_hostname_trunk_stands_for_what_it_resolved_to_in_its_place() {
        let addr = |p: u16| SocketAddr::from(([192, 0, 2, 1], p));
        let plain = Trunk {
            addr: addr(5060),
            tcp: false,
            tls: false,
            host: None,
            credentials: None,
        };
        let name = TrunkName {
            host: "sbc.carrier.test".into(),
            port: None,
            tcp: false,
            tls: false,
            credentials: None,
        };
        let mut c = carrier("a");
        c.trunks = vec![plain.clone()];
        c.specs = vec![TrunkSpec::Name(name.clone()), TrunkSpec::Addr(plain)];
        let cs = Carriers::new(vec![c], vec![("+1".into(), 0)]);
        assert_eq!(cs.names(), std::slice::from_ref(&name));
        let r = cs.with_resolved(&|n| {
            assert_eq!(n, &name);
            vec![addr(5070), addr(5071)]
        });
        let ports: Vec<u16> = r.list()[0].trunks.iter().map(|t| t.addr.port()).collect();
        assert_eq!(ports, [5070, 5071, 5060]);
        assert_eq!(cs.with_resolved(&|_| Vec::new()).list()[0].trunks.len(), 1);
    }

    #[test]
    fn the_longest_owned_prefix_wins_and_unowned_numbers_have_no_carrier() {
        let c = Carriers::new(
            vec![carrier("a"), carrier("b")],
            vec![
                ("+1555".into(), 0),
                ("+15550001".into(), 1),
                ("+442071234567".into(), 1),
            ],
        );
        let owner = |n: &str| {
            c.owner(E164::parse(n).unwrap())
                .map(|(_, c)| c.name.clone())
        };
        assert_eq!(owner("+15559990000").as_deref(), Some("a"));
        assert_eq!(owner("+15550001234").as_deref(), Some("b"));
        assert_eq!(owner("+442071234567").as_deref(), Some("b"));
        assert_eq!(owner("+442071234568"), None);
        assert_eq!(owner("+14155550101"), None);
        // A tag over the API wins over the configured prefixes; an unknown carrier's tag is
        // ignored; a tag taken off gives the number back to the prefixes.
        let tags = CarrierTags::default();
        let tagged = |n: &str| {
            c.owner_tagged(E164::parse(n).unwrap(), &tags)
                .map(|(_, c)| c.name.clone())
        };
        assert_eq!(tagged("+15559990000").as_deref(), Some("a"));
        tags.set(E164::parse("+15559990000").unwrap(), Some("b"));
        tags.set(E164::parse("+14155550101").unwrap(), Some("gone"));
        assert_eq!(tagged("+15559990000").as_deref(), Some("b"));
        assert_eq!(tagged("+14155550101"), None);
        tags.set(E164::parse("+15559990000").unwrap(), None);
        assert_eq!(tagged("+15559990000").as_deref(), Some("a"));
    }
}
