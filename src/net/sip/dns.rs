//! Trunks given by hostname: resolved before calls are taken, then again as their answers
//! expire; the B2BUA gets the carriers with the new addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::sip::b2bua::Settings;

/// What each trunk given by hostname resolved to.
pub(super) type Resolved = Vec<(crate::core::carriers::TrunkName, Vec<SocketAddr>)>;

/// What `resolved` has for `n` (nothing yet: none).
pub(super) fn addresses_of(
    resolved: &Resolved,
    n: &crate::core::carriers::TrunkName,
) -> Vec<SocketAddr> {
    resolved
        .iter()
        .find(|(name, _)| name == n)
        .map(|(_, a)| a.clone())
        .unwrap_or_default()
}

/// Resolves every trunk given by hostname (`None`: there are none, or no DNS server); a
/// name that fails keeps what `before` had for it. Also how long until the next round.
pub(super) async fn resolve_trunks(
    settings: &Settings,
    before: &Resolved,
) -> Option<(Resolved, Duration)> {
    let names = settings.carriers.names();
    if names.is_empty() {
        return None;
    }
    let Some(server) = settings.dns_server.or_else(crate::net::dns::system_server) else {
        tracing::error!("trunks are given by hostname but there is no DNS server (sip.dns_server, /etc/resolv.conf)");
        return None;
    };
    let m = &crate::metrics::get().sip_dns_lookups;
    let mut out = Vec::new();
    let mut keep = Duration::from_secs(3600);
    for n in names {
        match crate::net::dns::resolve(server, &n).await {
            Ok((addrs, ttl)) if !addrs.is_empty() => {
                m.with_label_values(&["ok"]).inc();
                for a in addrs
                    .iter()
                    .filter(|a| !settings.trusted.iter().any(|t| t.contains(&a.ip())))
                {
                    tracing::warn!(host = %n.host, addr = %a, "a trunk address outside sip.trusted_cidrs: its answers will be dropped");
                }
                keep = keep.min(crate::net::dns::keep_for(ttl));
                out.push((n, addrs));
            }
            other => {
                m.with_label_values(&["failed"]).inc();
                let why = match other {
                    Err(e) => e,
                    Ok(_) => "no address".to_string(),
                };
                tracing::warn!(host = %n.host, error = %why, "trunk hostname not resolved; keeping what it had");
                keep = keep.min(Duration::from_secs(30));
                let had = addresses_of(before, &n);
                out.push((n, had));
            }
        }
    }
    Some((out, keep))
}

/// Resolves the trunks given by hostname again as their answers expire, and hands the
/// carriers with the new addresses to the B2BUA.
pub(super) async fn re_resolve(
    base: Arc<crate::core::carriers::Carriers>,
    settings: Settings,
    mut resolved: Resolved,
    mut keep: Duration,
    tx: mpsc::UnboundedSender<Arc<crate::core::carriers::Carriers>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(keep) => {}
            _ = stop.changed() => return,
        }
        // No DNS server (yet): looked for again in 30 s.
        let Some((next, k)) = resolve_trunks(&settings, &resolved).await else {
            keep = Duration::from_secs(30);
            continue;
        };
        resolved = next;
        keep = k;
        let carriers = base.with_resolved(&|n| addresses_of(&resolved, n));
        if tx.send(Arc::new(carriers)).is_err() {
            return;
        }
    }
}
