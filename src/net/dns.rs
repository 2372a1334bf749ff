//! RFC 3263 resolution of trunks given by hostname, over UDP to one DNS server
//! (`sip.dns_server`, else the first `nameserver` of /etc/resolv.conf): with a port, the
//! host's A and AAAA records; without, its `_sip._udp` (`_sip._tcp`, `_sips._tcp` for TLS)
//! SRV records in priority and weight order, each target's addresses from the answer's
//! additional records or asked for, and the host's A/AAAA records on port 5060 (5061 for
//! TLS) when it has none. Answers are
//! kept for their TTL (at least 10 s, at most an hour).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::core::carriers::TrunkName;
use crate::dns::{self, Record, TYPE_A, TYPE_AAAA, TYPE_SRV};

/// How long one query waits for its answer, and how many times it is sent.
const WAIT: Duration = Duration::from_secs(2);
const TRIES: usize = 2;

/// The DNS server in /etc/resolv.conf (the first `nameserver`), on port 53.
pub fn system_server() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let ip = l.trim().strip_prefix("nameserver")?.trim();
        Some(SocketAddr::new(ip.parse::<IpAddr>().ok()?, 53))
    })
}

/// One query's records (`Err`: no usable answer).
async fn ask(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<Record>, String> {
    let local: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().map_err(|_| "bad local address")?
    } else {
        "0.0.0.0:0".parse().map_err(|_| "bad local address")?
    };
    let sock = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    let mut id = [0u8; 2];
    getrandom::getrandom(&mut id).map_err(|e| e.to_string())?;
    let id = u16::from_be_bytes(id);
    let q = dns::query(id, name, qtype).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..TRIES {
        sock.send_to(&q, server).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e.to_string()),
                // Only the server's answer to this query counts.
                Ok(Ok((n, from))) if from == server => match dns::parse(&buf[..n], id) {
                    Ok(records) => return Ok(records),
                    Err(dns::DnsError::NotOurs) => continue,
                    Err(e) => return Err(e.to_string()),
                },
                Ok(Ok(_)) => continue,
            }
        }
    }
    Err(format!("no answer from {server} for {name}"))
}

/// `host`'s addresses (A, then AAAA), with the smallest TTL, from `known` records when they
/// have them, else asked for.
async fn addresses(
    server: SocketAddr,
    host: &str,
    known: &[Record],
) -> Result<(Vec<IpAddr>, u32), String> {
    // `any_name`: the records answer a query for `host` itself, so an address under another
    // name is the end of a CNAME chain; from another query's additional records, only
    // `host`'s own count.
    let pick = |records: &[Record], any_name: bool| -> (Vec<IpAddr>, u32) {
        let mut ips = Vec::new();
        let mut ttl = u32::MAX;
        for r in records {
            match r {
                Record::A { name, addr, ttl: t } if any_name || name == host => {
                    ips.push(IpAddr::V4(*addr));
                    ttl = ttl.min(*t);
                }
                Record::Aaaa { name, addr, ttl: t } if any_name || name == host => {
                    ips.push(IpAddr::V6(*addr));
                    ttl = ttl.min(*t);
                }
                _ => {}
            }
        }
        // Round-robin servers rotate the same set: one order, so nothing looks changed.
        ips.sort();
        ips.dedup();
        (ips, ttl)
    };
    let (ips, ttl) = pick(known, false);
    if !ips.is_empty() {
        return Ok((ips, ttl));
    }
    let (mut ips, mut ttl) = pick(&ask(server, host, TYPE_A).await?, true);
    if let Ok(more) = ask(server, host, TYPE_AAAA).await {
        let (v6, t6) = pick(&more, true);
        if !v6.is_empty() {
            ttl = ttl.min(t6);
        }
        ips.extend(v6);
    }
    Ok((ips, ttl))
}

/// The addresses a trunk given by hostname stands for, in the order to try them, and how
/// long they hold (s).
pub async fn resolve(server: SocketAddr, t: &TrunkName) -> Result<(Vec<SocketAddr>, u32), String> {
    if let Some(port) = t.port {
        let (ips, ttl) = addresses(server, &t.host, &[]).await?;
        return Ok((
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            ttl,
        ));
    }
    // RFC 3263 §4.2: TLS is `_sips._tcp`.
    let service = match (t.tcp, t.tls) {
        (_, true) => format!("_sips._tcp.{}", t.host),
        (true, false) => format!("_sip._tcp.{}", t.host),
        _ => format!("_sip._udp.{}", t.host),
    };
    let records = ask(server, &service, TYPE_SRV).await?;
    let targets = dns::srv_order(&records);
    if targets.is_empty() {
        let (ips, ttl) = addresses(server, &t.host, &[]).await?;
        return Ok((
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, if t.tls { 5061 } else { 5060 }))
                .collect(),
            ttl,
        ));
    }
    let mut out = Vec::new();
    let mut ttl = u32::MAX;
    for (target, port, srv_ttl) in targets {
        ttl = ttl.min(srv_ttl);
        // A target that does not resolve is skipped; the others stand.
        if let Ok((ips, t)) = addresses(server, &target, &records).await {
            ttl = ttl.min(t);
            out.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, port)));
        }
    }
    Ok((out, ttl))
}

/// How long answers are kept: their TTL, at least 10 s, at most an hour.
pub fn keep_for(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl.clamp(10, 3600)))
}
