//! The voice plane's UDP driver: one task owns the socket and the sans-IO B2BUA, feeding it
//! datagrams and the time and sending what it returns. The core is reached through the
//! narrow `b2bua::Core` handle.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::core::engine::Engine;
use crate::core::routing::Target;
use crate::core::store::WriteOp;
use crate::core::{Sid, E164};
use crate::sip::b2bua::{B2bua, Core, Datagram, Settings};

struct EngineCore(Arc<Engine>);

impl Core for EngineCore {
    fn target(&self, proxy: E164, sender: E164) -> Option<Target> {
        self.0.routes().target(proxy, sender)
    }
    fn record(&self, ops: Vec<WriteOp>, touch: Option<(Sid, i64)>) {
        // Not awaited: a call's log is written by the group commit in order; the answer on
        // the wire does not wait for it.
        drop(self.0.record(ops, touch));
    }
    fn next_seq(&self) -> u64 {
        self.0.next_seq()
    }
}

/// Runs the B2BUA on `sock` until `stop` changes.
pub async fn run(
    sock: UdpSocket,
    settings: Settings,
    engine: Arc<Engine>,
    mut stop: watch::Receiver<bool>,
) {
    let core = EngineCore(engine);
    let mut b2bua = B2bua::new(settings);
    let mut buf = vec![0u8; 65_535];
    let mut out: Vec<Datagram> = Vec::new();
    let m = crate::metrics::get();
    let start = std::time::Instant::now();
    let base = crate::app::now_ms().max(0) as u64;
    let now = || base + start.elapsed().as_millis() as u64;
    // Timers are driven by a fixed 10 ms tick (RFC 3261 timers are ≥ 500 ms apart): asking
    // the B2BUA for its next deadline after every datagram cost a scan of every
    // transaction per datagram.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                m.sip_messages.with_label_values(&["in", crate::metrics::sip_kind(&buf[..n])]).inc();
                b2bua.handle(src, &buf[..n], now(), &core, &mut out);
            }
            _ = tick.tick() => {
                b2bua.on_timer(now(), &core, &mut out);
            }
            _ = stop.changed() => return,
        }
        for d in out.drain(..) {
            m.sip_messages
                .with_label_values(&["out", crate::metrics::sip_kind(&d.data)])
                .inc();
            let _ = sock.send_to(&d.data, d.to).await;
        }
        m.sip_calls_active.set(b2bua.active_calls() as i64);
        m.sip_transactions.set(b2bua.transactions() as i64);
        m.sip_retransmissions.reset();
        m.sip_retransmissions.inc_by(b2bua.counters.retransmissions);
        m.sip_refused.reset();
        m.sip_refused.inc_by(b2bua.counters.refused_4xx);
        m.sip_calls_started.reset();
        m.sip_calls_started.inc_by(b2bua.counters.calls_started);
    }
}
