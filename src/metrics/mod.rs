//! Every metric maskd exports, registered once in one registry, with bounded labels only:
//! never a phone number, a SID or a URL. Names carry the `maskd_` prefix, base units and
//! `_total` for counters. `render` produces the Prometheus text exposition.

use std::sync::OnceLock;

pub mod media;
pub mod recent;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub const API_REQUESTS: &str = "maskd_api_requests_total";
pub const API_REQUEST_DURATION: &str = "maskd_api_request_duration_seconds";
pub const SESSIONS: &str = "maskd_sessions";
pub const SESSIONS_CREATED: &str = "maskd_sessions_created_total";
pub const SESSIONS_CLOSED: &str = "maskd_sessions_closed_total";
pub const ROUTING_TABLE_SIZE: &str = "maskd_routing_table_entries";
pub const WHEEL_SIZE: &str = "maskd_timer_wheel_entries";
pub const WHEEL_LATENESS: &str = "maskd_timer_wheel_lateness_seconds";
pub const POOL_SIZE: &str = "maskd_pool_numbers";
pub const POOL_IN_USE: &str = "maskd_pool_numbers_in_use";
pub const ALLOCATIONS_FAILED: &str = "maskd_allocations_failed_total";
pub const STORE_BATCH_DURATION: &str = "maskd_store_batch_duration_seconds";
pub const STORE_BATCH_OPS: &str = "maskd_store_batch_ops";
pub const SIP_MESSAGES: &str = "maskd_sip_messages_total";
pub const SIP_SETUP: &str = "maskd_sip_call_setup_seconds";
pub const SIP_CALLS_ACTIVE: &str = "maskd_sip_calls_active";
pub const SIP_TRANSACTIONS: &str = "maskd_sip_transactions_active";
pub const SIP_RETRANSMISSIONS: &str = "maskd_sip_retransmissions_total";
pub const SIP_REFUSED: &str = "maskd_sip_requests_refused_total";
pub const SIP_CALLS_STARTED: &str = "maskd_sip_calls_started_total";
pub const SIP_TCP_CONNECTIONS: &str = "maskd_sip_tcp_connections";
pub const SIP_TCP_REFUSED: &str = "maskd_sip_tcp_connections_refused_total";
pub const CONNECTIONS_REFUSED: &str = "maskd_connections_refused_total";
pub const CONNECTIONS_OPEN: &str = "maskd_connections_open";
pub const API_CONNECTIONS_CLOSED: &str = "maskd_api_connections_closed_total";
pub const TLS_FAILED: &str = "maskd_tls_handshakes_failed_total";
pub const SIP_UNTRUSTED_RESPONSES: &str = "maskd_sip_untrusted_responses_total";
pub const SMPP_PDUS: &str = "maskd_smpp_pdus_total";
pub const SMPP_BINDS: &str = "maskd_smpp_binds_active";
pub const SMPP_QUEUE_DEPTH: &str = "maskd_smpp_queue_depth";
pub const SMPP_QUEUE_IN_MEMORY: &str = "maskd_smpp_queue_in_memory";
pub const CALLBACKS: &str = "maskd_callbacks_total";
pub const CALLBACK_QUEUE_DEPTH: &str = "maskd_callback_queue_depth";
pub const CALLBACK_DURATION: &str = "maskd_callback_duration_seconds";
pub const SMPP_OUT_OF_SESSION: &str = "maskd_smpp_out_of_session_total";
pub const SMPP_HANDED_OFF: &str = "maskd_smpp_handed_off_total";
pub const SMPP_STORE_THROTTLED: &str = "maskd_smpp_store_throttled_total";
pub const STORE_AVAILABLE: &str = "maskd_store_available";
pub const STORE_PENDING: &str = "maskd_store_pending_writes";
pub const STORE_DROPPED: &str = "maskd_store_writes_dropped_total";
pub const SMPP_CLAIMED: &str = "maskd_smpp_claimed_total";
pub const CALLBACKS_CLAIMED: &str = "maskd_callbacks_claimed_total";
pub const SIP_TRUNK_FAILOVERS: &str = "maskd_sip_trunk_failovers_total";
pub const SIP_AUTH: &str = "maskd_sip_auth_challenges_total";
pub const SIP_TRUNK_UP: &str = "maskd_sip_trunk_up";
pub const SIP_REGISTER: &str = "maskd_sip_register_total";
pub const SIP_DNS_LOOKUPS: &str = "maskd_sip_dns_lookups_total";
pub const SIP_REGISTERED: &str = "maskd_sip_registered";
pub const SMPP_THROTTLED_BACKLOG: &str = "maskd_smpp_throttled_backlog";
pub const CALLBACKS_HELD_BACK: &str = "maskd_callbacks_held_back_total";
pub const SMPP_OPT_OUT: &str = "maskd_smpp_opt_out_total";
pub const SMPP_RECEIPTS: &str = "maskd_smpp_receipts_total";
pub const SMPP_INVALID_ADDRESS: &str = "maskd_smpp_invalid_address_total";
pub const SMPP_FORWARD_LATENCY: &str = "maskd_smpp_forward_latency_seconds";
pub const HEAP_LIVE: &str = "maskd_heap_live_bytes";
pub const SMPP_ACCEPT_LATENCY: &str = "maskd_smpp_accept_latency_seconds";

pub struct Metrics {
    pub registry: Registry,
    pub api_requests: IntCounterVec,
    pub api_duration: HistogramVec,
    pub sessions: IntGaugeVec,
    pub sessions_created: prometheus::IntCounter,
    pub sessions_closed: IntCounterVec,
    pub routing_table: IntGauge,
    pub wheel_size: IntGauge,
    pub wheel_lateness: Histogram,
    pub pool_size: IntGaugeVec,
    pub pool_in_use: IntGaugeVec,
    pub allocations_failed: IntCounterVec,
    pub store_batch: Histogram,
    pub store_batch_ops: Histogram,
    pub sip_messages: IntCounterVec,
    pub sip_setup: Histogram,
    pub sip_calls_active: IntGauge,
    pub sip_transactions: IntGauge,
    pub sip_retransmissions: prometheus::IntCounter,
    pub sip_refused: prometheus::IntCounter,
    pub sip_calls_started: prometheus::IntCounter,
    pub sip_tcp_connections: IntGauge,
    pub sip_tcp_refused: IntCounterVec,
    pub connections_refused: IntCounterVec,
    pub connections_open: IntGaugeVec,
    pub api_connections_closed: IntCounterVec,
    pub tls_failed: IntCounterVec,
    pub sip_untrusted_responses: prometheus::IntCounter,
    pub smpp_pdus: IntCounterVec,
    pub smpp_binds: IntGaugeVec,
    pub smpp_queue_depth: IntGauge,
    pub smpp_queue_in_memory: IntGauge,
    pub callbacks: IntCounterVec,
    pub callback_queue_depth: IntGauge,
    pub callback_duration: HistogramVec,
    pub smpp_out_of_session: prometheus::IntCounter,
    pub smpp_handed_off: prometheus::IntCounter,
    pub smpp_store_throttled: prometheus::IntCounter,
    pub store_available: IntGauge,
    pub store_pending: IntGauge,
    pub store_dropped: prometheus::IntCounter,
    pub smpp_claimed: prometheus::IntCounter,
    pub callbacks_claimed: prometheus::IntCounter,
    pub sip_trunk_failovers: IntCounterVec,
    pub sip_auth: IntCounterVec,
    pub sip_trunk_up: IntGaugeVec,
    pub sip_register: IntCounterVec,
    pub sip_dns_lookups: IntCounterVec,
    pub sip_registered: IntGaugeVec,
    pub smpp_throttled_backlog: IntGaugeVec,
    pub callbacks_held_back: prometheus::IntCounter,
    pub smpp_opt_out: prometheus::IntCounter,
    pub smpp_receipts: IntCounterVec,
    pub smpp_invalid_address: IntCounterVec,
    pub smpp_forward_latency: Histogram,
    pub smpp_accept_latency: Histogram,
    pub media: media::MediaMetrics,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let m = Metrics {
        api_requests: IntCounterVec::new(
            Opts::new(
                API_REQUESTS,
                "REST API requests by route template, method and status class",
            ),
            &["route", "method", "status"],
        )?,
        api_duration: HistogramVec::new(
            HistogramOpts::new(
                API_REQUEST_DURATION,
                "REST API request latency by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["route"],
        )?,
        sessions: IntGaugeVec::new(Opts::new(SESSIONS, "Sessions by status"), &["status"])?,
        sessions_created: prometheus::IntCounter::new(SESSIONS_CREATED, "Sessions created")?,
        sessions_closed: IntCounterVec::new(
            Opts::new(
                SESSIONS_CLOSED,
                "Sessions closed by reason (api, ttl, expiry)",
            ),
            &["reason"],
        )?,
        routing_table: IntGauge::new(ROUTING_TABLE_SIZE, "Route keys in the routing table")?,
        wheel_size: IntGauge::new(WHEEL_SIZE, "Sessions armed in the timer wheel")?,
        wheel_lateness: Histogram::with_opts(
            HistogramOpts::new(
                WHEEL_LATENESS,
                "How long after its deadline a session was closed",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]),
        )?,
        pool_size: IntGaugeVec::new(
            Opts::new(POOL_SIZE, "Numbers in each service pool"),
            &["service"],
        )?,
        pool_in_use: IntGaugeVec::new(
            Opts::new(
                POOL_IN_USE,
                "Pool numbers used by at least one active participant",
            ),
            &["service"],
        )?,
        allocations_failed: IntCounterVec::new(
            Opts::new(
                ALLOCATIONS_FAILED,
                "Proxy number allocations refused, by Twilio error code",
            ),
            &["code"],
        )?,
        store_batch: Histogram::with_opts(
            HistogramOpts::new(
                STORE_BATCH_DURATION,
                "Time to commit one store batch durably",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
        )?,
        store_batch_ops: Histogram::with_opts(
            HistogramOpts::new(STORE_BATCH_OPS, "Write operations per store batch")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?,
        sip_messages: IntCounterVec::new(
            Opts::new(
                SIP_MESSAGES,
                "SIP requests by method and responses by status class, in and out",
            ),
            &["direction", "kind"],
        )?,
        sip_setup: Histogram::with_opts(
            HistogramOpts::new(
                SIP_SETUP,
                "From an INVITE on leg A to the first 180 or 200 relayed back",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
            ]),
        )?,
        sip_calls_active: IntGauge::new(SIP_CALLS_ACTIVE, "Calls being set up or in progress")?,
        sip_transactions: IntGauge::new(SIP_TRANSACTIONS, "SIP transactions alive")?,
        sip_retransmissions: prometheus::IntCounter::new(
            SIP_RETRANSMISSIONS,
            "SIP retransmissions sent and absorbed",
        )?,
        sip_refused: prometheus::IntCounter::new(
            SIP_REFUSED,
            "SIP requests answered 4xx/5xx by maskd itself",
        )?,
        sip_calls_started: prometheus::IntCounter::new(
            SIP_CALLS_STARTED,
            "Calls for which a leg B was placed",
        )?,
        sip_tcp_connections: IntGauge::new(
            SIP_TCP_CONNECTIONS,
            "SIP TCP connections open or being opened",
        )?,
        sip_tcp_refused: IntCounterVec::new(
            Opts::new(
                SIP_TCP_REFUSED,
                "SIP TCP connections closed at accept, by reason (untrusted, limit, per_address)",
            ),
            &["reason"],
        )?,
        connections_refused: IntCounterVec::new(
            Opts::new(
                CONNECTIONS_REFUSED,
                "TCP connections closed at accept by a listener's bounds, by listener (api, smpp, sip) and reason (limit, per_address)",
            ),
            &["listener", "reason"],
        )?,
        connections_open: IntGaugeVec::new(
            Opts::new(
                CONNECTIONS_OPEN,
                "TCP connections a listener holds now, by listener (api, smpp, sip)",
            ),
            &["listener"],
        )?,
        api_connections_closed: IntCounterVec::new(
            Opts::new(
                API_CONNECTIONS_CLOSED,
                "API connections closed by maskd, by reason (header_timeout, idle_timeout, stalled)",
            ),
            &["reason"],
        )?,
        tls_failed: IntCounterVec::new(
            Opts::new(
                TLS_FAILED,
                "TLS handshakes that failed or timed out, by plane (api, smpp, sip) and side (accept, connect)",
            ),
            &["plane", "side"],
        )?,
        sip_untrusted_responses: prometheus::IntCounter::new(
            SIP_UNTRUSTED_RESPONSES,
            "SIP responses from sources outside trusted_cidrs, dropped",
        )?,
        smpp_pdus: IntCounterVec::new(
            Opts::new(
                SMPP_PDUS,
                "SMPP PDUs by direction, command and command_status",
            ),
            &["direction", "command", "status"],
        )?,
        smpp_binds: IntGaugeVec::new(
            Opts::new(SMPP_BINDS, "Bound SMPP sessions by configured peer"),
            &["peer"],
        )?,
        smpp_queue_depth: IntGauge::new(
            SMPP_QUEUE_DEPTH,
            "Messages accepted and not yet forwarded",
        )?,
        smpp_queue_in_memory: IntGauge::new(
            SMPP_QUEUE_IN_MEMORY,
            "Messages of the outbound queue held in memory (the rest wait in the store)",
        )?,
        callbacks: IntCounterVec::new(
            Opts::new(
                CALLBACKS,
                "Callback attempts by kind (status, intercept, out_of_session) and outcome",
            ),
            &["kind", "outcome"],
        )?,
        callback_queue_depth: IntGauge::new(
            CALLBACK_QUEUE_DEPTH,
            "Status callbacks queued and not yet delivered",
        )?,
        callback_duration: HistogramVec::new(
            HistogramOpts::new(CALLBACK_DURATION, "Callback request latency by kind").buckets(
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["kind"],
        )?,
        smpp_out_of_session: prometheus::IntCounter::new(
            SMPP_OUT_OF_SESSION,
            "Messages with no active session",
        )?,
        smpp_store_throttled: prometheus::IntCounter::new(
            SMPP_STORE_THROTTLED,
            "Messages answered ESME_RTHROTTLED because the store could not be reached",
        )?,
        store_pending: IntGauge::new(
            STORE_PENDING,
            "Write batches submitted to the store and not yet committed",
        )?,
        store_dropped: prometheus::IntCounter::new(
            STORE_DROPPED,
            "Unawaited write batches (call logs and the like) dropped: the store was unreachable and the queue full",
        )?,
        store_available: IntGauge::new(
            STORE_AVAILABLE,
            "1 while the store takes writes, 0 while it cannot be reached",
        )?,
        smpp_handed_off: prometheus::IntCounter::new(
            SMPP_HANDED_OFF,
            "Queued messages let go for another node (no link to their next hop here)",
        )?,
        smpp_claimed: prometheus::IntCounter::new(
            SMPP_CLAIMED,
            "Queued messages claimed from the shared queue (let go by another node, or held by a node gone)",
        )?,
        sip_trunk_failovers: IntCounterVec::new(
            Opts::new(
                SIP_TRUNK_FAILOVERS,
                "Leg B INVITEs sent on to a carrier's next trunk (503, 408 or silence)",
            ),
            &["carrier"],
        )?,
        smpp_throttled_backlog: IntGaugeVec::new(
            Opts::new(
                SMPP_THROTTLED_BACKLOG,
                "Outbound messages waiting for their sender number's message rate (carriers[].mps), by the number's service",
            ),
            &["service"],
        )?,
        sip_dns_lookups: IntCounterVec::new(
            Opts::new(
                SIP_DNS_LOOKUPS,
                "Resolutions of trunks given by hostname (RFC 3263), by outcome: ok, failed",
            ),
            &["outcome"],
        )?,
        sip_register: IntCounterVec::new(
            Opts::new(
                SIP_REGISTER,
                "REGISTERs with carriers' trunks by outcome: registered, failed, timeout, refused (credentials), unanswerable",
            ),
            &["carrier", "outcome"],
        )?,
        sip_registered: IntGaugeVec::new(
            Opts::new(
                SIP_REGISTERED,
                "Whether maskd is registered with a carrier's trunk (1) or not (0)",
            ),
            &["carrier", "trunk"],
        )?,
        sip_trunk_up: IntGaugeVec::new(
            Opts::new(
                SIP_TRUNK_UP,
                "Whether a carrier's trunk answers its OPTIONS probes (1) or not (0)",
            ),
            &["carrier", "trunk"],
        )?,
        sip_auth: IntCounterVec::new(
            Opts::new(
                SIP_AUTH,
                "Digest challenges from carriers' trunks: answered, refused (credentials wrong), unanswerable",
            ),
            &["carrier", "outcome"],
        )?,
        callbacks_claimed: prometheus::IntCounter::new(
            CALLBACKS_CLAIMED,
            "Status callbacks claimed from a node gone silent, to send from here",
        )?,
        callbacks_held_back: prometheus::IntCounter::new(
            CALLBACKS_HELD_BACK,
            "Times a status callback waited for an earlier one of its interaction on another node",
        )?,
        smpp_opt_out: prometheus::IntCounter::new(
            SMPP_OPT_OUT,
            "Opt-out keyword messages not forwarded",
        )?,
        smpp_receipts: IntCounterVec::new(
            Opts::new(
                SMPP_RECEIPTS,
                "Delivery receipts received, by outcome (matched, unknown, unreadable)",
            ),
            &["outcome"],
        )?,
        smpp_invalid_address: IntCounterVec::new(
            Opts::new(
                SMPP_INVALID_ADDRESS,
                "Messages refused because an address cannot be read as a phone number with \
                 its TON/NPI, by field (source_addr, destination_addr)",
            ),
            &["field"],
        )?,
        smpp_forward_latency: Histogram::with_opts(
            HistogramOpts::new(
                SMPP_FORWARD_LATENCY,
                "From a message's acceptance to its acknowledgement downstream",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
            ]),
        )?,
        smpp_accept_latency: Histogram::with_opts(
            HistogramOpts::new(
                SMPP_ACCEPT_LATENCY,
                "From a message's arrival to maskd's durable answer",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
        )?,
        media: media::MediaMetrics::build()?,
        registry,
    };
    m.registry.register(Box::new(m.api_requests.clone()))?;
    m.registry.register(Box::new(m.api_duration.clone()))?;
    m.registry.register(Box::new(m.sessions.clone()))?;
    m.registry.register(Box::new(m.sessions_created.clone()))?;
    m.registry.register(Box::new(m.sessions_closed.clone()))?;
    m.registry.register(Box::new(m.routing_table.clone()))?;
    m.registry.register(Box::new(m.wheel_size.clone()))?;
    m.registry.register(Box::new(m.wheel_lateness.clone()))?;
    m.registry.register(Box::new(m.pool_size.clone()))?;
    m.registry.register(Box::new(m.pool_in_use.clone()))?;
    m.registry
        .register(Box::new(m.allocations_failed.clone()))?;
    m.registry.register(Box::new(m.store_batch.clone()))?;
    m.registry.register(Box::new(m.store_batch_ops.clone()))?;
    m.registry.register(Box::new(m.sip_messages.clone()))?;
    m.registry.register(Box::new(m.sip_setup.clone()))?;
    m.registry.register(Box::new(m.sip_calls_active.clone()))?;
    m.registry.register(Box::new(m.sip_transactions.clone()))?;
    m.registry
        .register(Box::new(m.sip_retransmissions.clone()))?;
    m.registry.register(Box::new(m.sip_refused.clone()))?;
    m.registry.register(Box::new(m.sip_calls_started.clone()))?;
    m.registry
        .register(Box::new(m.sip_tcp_connections.clone()))?;
    m.registry.register(Box::new(m.sip_tcp_refused.clone()))?;
    m.registry
        .register(Box::new(m.connections_refused.clone()))?;
    m.registry.register(Box::new(m.connections_open.clone()))?;
    m.registry
        .register(Box::new(m.api_connections_closed.clone()))?;
    m.registry.register(Box::new(m.tls_failed.clone()))?;
    m.registry
        .register(Box::new(m.sip_untrusted_responses.clone()))?;
    m.registry.register(Box::new(m.smpp_pdus.clone()))?;
    m.registry.register(Box::new(m.smpp_binds.clone()))?;
    m.registry.register(Box::new(m.smpp_queue_depth.clone()))?;
    m.registry
        .register(Box::new(m.smpp_queue_in_memory.clone()))?;
    m.registry.register(Box::new(m.callbacks.clone()))?;
    m.registry
        .register(Box::new(m.callback_queue_depth.clone()))?;
    m.registry.register(Box::new(m.callback_duration.clone()))?;
    m.registry
        .register(Box::new(m.smpp_out_of_session.clone()))?;
    m.registry.register(Box::new(m.smpp_handed_off.clone()))?;
    m.registry
        .register(Box::new(m.smpp_store_throttled.clone()))?;
    m.registry.register(Box::new(m.store_available.clone()))?;
    m.registry.register(Box::new(m.store_pending.clone()))?;
    m.registry.register(Box::new(m.store_dropped.clone()))?;
    m.registry.register(Box::new(m.smpp_claimed.clone()))?;
    m.registry.register(Box::new(m.callbacks_claimed.clone()))?;
    m.registry
        .register(Box::new(m.sip_trunk_failovers.clone()))?;
    m.registry.register(Box::new(m.sip_auth.clone()))?;
    m.registry.register(Box::new(m.sip_trunk_up.clone()))?;
    m.registry.register(Box::new(m.sip_register.clone()))?;
    m.registry.register(Box::new(m.sip_dns_lookups.clone()))?;
    m.registry.register(Box::new(m.sip_registered.clone()))?;
    m.registry
        .register(Box::new(m.smpp_throttled_backlog.clone()))?;
    m.registry
        .register(Box::new(m.callbacks_held_back.clone()))?;
    m.registry.register(Box::new(m.smpp_opt_out.clone()))?;
    m.registry.register(Box::new(m.smpp_receipts.clone()))?;
    m.registry
        .register(Box::new(m.smpp_invalid_address.clone()))?;
    m.registry
        .register(Box::new(m.smpp_forward_latency.clone()))?;
    m.registry
        .register(Box::new(m.smpp_accept_latency.clone()))?;
    m.media.register(&m.registry)?;
    Ok(m)
}

/// The process-wide metrics. Registration of these fixed, distinct names cannot fail, so a
/// failure here is a programming error caught by the first test that touches metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| build().expect("metric names are distinct and valid"))
}

/// A bounded label for a SIP datagram: its method, or its response class.
/// The `kind` label values of `maskd_sip_messages_total`: response classes, then methods.
const SIP_KINDS: [&str; 16] = [
    "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS",
    "UPDATE", "INFO", "PRACK", "REGISTER", "other",
];

fn sip_kind_index(data: &[u8]) -> usize {
    const OTHER: usize = SIP_KINDS.len() - 1;
    if let Some(rest) = data.strip_prefix(b"SIP/2.0 ") {
        return match rest.first() {
            Some(c @ b'1'..=b'6') => (c - b'1') as usize,
            _ => OTHER,
        };
    }
    (6..OTHER)
        .find(|&i| {
            let m = SIP_KINDS[i].as_bytes();
            data.starts_with(m) && data.get(m.len()) == Some(&b' ')
        })
        .unwrap_or(OTHER)
}

/// Counts one SIP message in (`inbound`) or out. The counters are resolved once: a label
/// lookup per datagram showed in the voice plane's profile.
pub fn sip_message(inbound: bool, data: &[u8]) {
    static C: OnceLock<Vec<prometheus::IntCounter>> = OnceLock::new();
    let c = C.get_or_init(|| {
        let m = get();
        ["in", "out"]
            .iter()
            .flat_map(|d| SIP_KINDS.iter().map(move |k| (d, k)))
            .map(|(d, k)| m.sip_messages.with_label_values(&[d, k]))
            .collect()
    });
    let base = if inbound { 0 } else { SIP_KINDS.len() };
    c[base + sip_kind_index(data)].inc();
}

pub fn sessions_created() {
    get().sessions_created.inc();
}

pub fn session_closed(reason: &'static str) {
    get().sessions_closed.with_label_values(&[reason]).inc();
}

pub fn wheel_lateness(seconds: f64) {
    get().wheel_lateness.observe(seconds.max(0.0));
}

pub fn allocation_failed(code: u32) {
    let label = match code {
        80203 => "80203",
        80205 => "80205",
        80206 => "80206",
        80207 => "80207",
        80208 => "80208",
        80604 => "80604",
        80605 => "80605",
        _ => "other",
    };
    get().allocations_failed.with_label_values(&[label]).inc();
}

pub fn store_batch(seconds: f64, ops: usize) {
    let m = get();
    m.store_batch.observe(seconds);
    m.store_batch_ops.observe(ops as f64);
}

/// The text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec only fails on invalid metric families, which `build` rules out.
    let _ = TextEncoder::new().encode(&get().registry.gather(), &mut buf);
    let mut text = String::from_utf8(buf).unwrap_or_default();
    if let Some(live) = crate::heap::live_bytes() {
        text.push_str(&format!(
            "# HELP {HEAP_LIVE} Heap bytes allocated and not freed (debug builds only)\n\
             # TYPE {HEAP_LIVE} gauge\n{HEAP_LIVE} {live}\n"
        ));
    }
    text
}
