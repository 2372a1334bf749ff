//! The DNS messages RFC 3263 needs to find a SIP trunk given by hostname (RFC 1035, RFC 2782,
//! RFC 3596): a query for SRV, A or AAAA records, and the records of an answer (answer and
//! additional sections, names compressed or not), each with its TTL. Pure: no sockets.
//! Hostile answers get an error, never a panic (every read is bounded, pointer chains too).

use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;

/// One record of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Srv {
        name: String,
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
        ttl: u32,
    },
    A {
        name: String,
        addr: Ipv4Addr,
        ttl: u32,
    },
    Aaaa {
        name: String,
        addr: Ipv6Addr,
        ttl: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("the answer is cut short or malformed")]
    Malformed,
    #[error("the answer is not to this query")]
    NotOurs,
    #[error("the server failed (rcode {0})")]
    Failed(u8),
    #[error("the name is not a hostname")]
    BadName,
    #[error("the answer was cut short (TC): too large for UDP")]
    Truncated,
}

/// A recursive query for `name`'s records of type `qtype`, with id `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    // RD set; one question; one additional record: EDNS0 (RFC 6891) offering 4,096 bytes.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::BadName);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(DnsError::BadName);
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    // OPT: root name, type 41, "class" = UDP payload size, TTL 0, no options.
    out.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, DnsError> {
        let v = *self.b.get(self.at).ok_or(DnsError::Malformed)?;
        self.at += 1;
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, DnsError> {
        Ok(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }
    fn u32(&mut self) -> Result<u32, DnsError> {
        Ok(u32::from(self.u16()?) << 16 | u32::from(self.u16()?))
    }
    fn take(&mut self, n: usize) -> Result<&[u8], DnsError> {
        let end = self.at.checked_add(n).ok_or(DnsError::Malformed)?;
        let s = self.b.get(self.at..end).ok_or(DnsError::Malformed)?;
        self.at = end;
        Ok(s)
    }

    /// A name at the cursor, following compression pointers (at most 32, each backwards).
    fn name(&mut self) -> Result<String, DnsError> {
        let mut out = String::new();
        let mut at = self.at;
        let mut jumped = false;
        for _ in 0..128 {
            let len = *self.b.get(at).ok_or(DnsError::Malformed)?;
            match len {
                0 => {
                    if !jumped {
                        self.at = at + 1;
                    }
                    return Ok(out);
                }
                l if l & 0xC0 == 0xC0 => {
                    let lo = *self.b.get(at + 1).ok_or(DnsError::Malformed)?;
                    let to = (usize::from(l & 0x3F) << 8) | usize::from(lo);
                    if to >= at {
                        // Only backwards: no loops.
                        return Err(DnsError::Malformed);
                    }
                    if !jumped {
                        self.at = at + 2;
                        jumped = true;
                    }
                    at = to;
                }
                l if l & 0xC0 == 0 => {
                    let label = self
                        .b
                        .get(at + 1..at + 1 + usize::from(l))
                        .ok_or(DnsError::Malformed)?;
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
                    if out.len() > 255 {
                        return Err(DnsError::Malformed);
                    }
                    at += 1 + usize::from(l);
                }
                _ => return Err(DnsError::Malformed),
            }
        }
        Err(DnsError::Malformed)
    }
}

/// The records of the answer `b` to query `id` (answer and additional sections; records of
/// other types skipped). A name that does not exist is no records.
pub fn parse(b: &[u8], id: u16) -> Result<Vec<Record>, DnsError> {
    let mut r = Reader { b, at: 0 };
    if r.u16()? != id {
        return Err(DnsError::NotOurs);
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::NotOurs);
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    let rcode = (flags & 0x000F) as u8;
    match rcode {
        0 => {}
        3 => return Ok(Vec::new()),
        c => return Err(DnsError::Failed(c)),
    }
    let (qd, an, ns, ar) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
    for _ in 0..qd {
        r.name()?;
        r.take(4)?;
    }
    let mut out = Vec::new();
    for k in 0..(u32::from(an) + u32::from(ns) + u32::from(ar)) {
        let name = r.name()?;
        let (rtype, _class, ttl, len) = (r.u16()?, r.u16()?, r.u32()?, r.u16()?);
        let start = r.at;
        let end = start + usize::from(len);
        if end > b.len() {
            return Err(DnsError::Malformed);
        }
        // Authority records (NS, SOA) say nothing RFC 3263 uses.
        let authority = k >= u32::from(an) && k < u32::from(an) + u32::from(ns);
        match rtype {
            _ if authority => {}
            TYPE_A if len == 4 => {
                let o = r.take(4)?;
                out.push(Record::A {
                    name,
                    addr: Ipv4Addr::new(o[0], o[1], o[2], o[3]),
                    ttl,
                });
            }
            TYPE_AAAA if len == 16 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(r.take(16)?);
                out.push(Record::Aaaa {
                    name,
                    addr: Ipv6Addr::from(o),
                    ttl,
                });
            }
            TYPE_SRV if len >= 7 => {
                let (priority, weight, port) = (r.u16()?, r.u16()?, r.u16()?);
                let target = r.name()?;
                out.push(Record::Srv {
                    name,
                    priority,
                    weight,
                    port,
                    target,
                    ttl,
                });
            }
            _ => {}
        }
        r.at = end;
    }
    Ok(out)
}

/// SRV targets in the order to try them (RFC 2782): lowest priority first, and within a
/// priority the heaviest first (a deterministic stand-in for the weighted random choice);
/// the "." target (no service) dropped.
pub fn srv_order(records: &[Record]) -> Vec<(String, u16, u32)> {
    let mut srv: Vec<(u16, std::cmp::Reverse<u16>, String, u16, u32)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Srv {
                priority,
                weight,
                port,
                target,
                ttl,
                ..
            } if !target.is_empty() => Some((
                *priority,
                std::cmp::Reverse(*weight),
                target.clone(),
                *port,
                *ttl,
            )),
            _ => None,
        })
        .collect();
    srv.sort();
    srv.into_iter()
        .map(|(_, _, t, p, ttl)| (t, p, ttl))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `q` with the records (name, type, TTL, rdata) given, names written in
    /// full except where the test compresses them itself.
    pub(crate) fn answer(q: &[u8], records: &[(Vec<u8>, u16, u32, Vec<u8>)]) -> Vec<u8> {
        // The question without the query's OPT record.
        let mut out = q[..q.len() - 11].to_vec();
        out[10..12].copy_from_slice(&[0, 0]);
        out[2] = 0x81;
        out[3] = 0x80;
        out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (name, t, ttl, rdata) in records {
            out.extend_from_slice(name);
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    }

    fn wire(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in name.split('.') {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    #[test]
    fn srv_and_addresses_are_read_with_compressed_names() {
        let q = query(0x1234, "_sip._udp.carrier.test", TYPE_SRV).unwrap();
        // Answer names point back at the question's name (offset 12).
        let mut srv1 = vec![0, 10, 0, 60, 0x13, 0xc4];
        srv1.extend(wire("sbc1.carrier.test"));
        let mut srv2 = vec![0, 20, 0, 100, 0x13, 0xc5];
        srv2.extend(wire("sbc2.carrier.test"));
        let a = answer(
            &q,
            &[
                (vec![0xc0, 12], TYPE_SRV, 300, srv2),
                (vec![0xc0, 12], TYPE_SRV, 60, srv1),
                (wire("sbc1.carrier.test"), TYPE_A, 30, vec![192, 0, 2, 10]),
                (
                    wire("sbc2.carrier.test"),
                    TYPE_AAAA,
                    30,
                    "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                ),
            ],
        );
        let recs = parse(&a, 0x1234).unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(
            srv_order(&recs),
            [
                ("sbc1.carrier.test".to_string(), 5060, 60),
                ("sbc2.carrier.test".to_string(), 5061, 300)
            ]
        );
        assert!(recs.contains(&Record::A {
            name: "sbc1.carrier.test".into(),
            addr: Ipv4Addr::new(192, 0, 2, 10),
            ttl: 30
        }));
        assert!(matches!(&recs[3], Record::Aaaa { addr, .. } if addr.to_string() == "2001:db8::2"));
    }

    #[test]
    fn answers_that_are_not_ours_or_broken_are_refused() {
        let q = query(7, "carrier.test", TYPE_A).unwrap();
        assert_eq!(
            parse(&q, 7),
            Err(DnsError::NotOurs),
            "a query, not an answer"
        );
        let a = answer(&q, &[(wire("carrier.test"), TYPE_A, 5, vec![10, 0, 0, 1])]);
        assert_eq!(parse(&a, 8), Err(DnsError::NotOurs));
        for cut in 0..a.len() {
            assert!(parse(&a[..cut], 7).is_err(), "cut at {cut}");
        }
        // A pointer to itself.
        let mut looped = answer(&q, &[]);
        looped[7] = 1;
        let at = looped.len() as u8;
        looped.extend_from_slice(&[0xc0, at, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
        assert_eq!(parse(&looped, 7), Err(DnsError::Malformed));
        // Truncated: an error, not an empty answer.
        let mut tc = answer(&q, &[]);
        tc[2] |= 0x02;
        assert_eq!(parse(&tc, 7), Err(DnsError::Truncated));
        // NXDOMAIN: no records.
        let mut nx = answer(&q, &[]);
        nx[3] = 0x83;
        assert_eq!(parse(&nx, 7), Ok(Vec::new()));
        assert_eq!(query(1, "a..b", TYPE_A), Err(DnsError::BadName));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_without_panicking(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse(&b, u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]));
        }
    }
}
