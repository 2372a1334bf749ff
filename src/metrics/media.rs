//! The media plane's metrics (SPEC §2.4, §2.5): packets and bytes relayed by direction,
//! drops by reason, streams and ports in use, media timeouts, recordings by outcome. The
//! relay threads add to these in batches (once per poll round), not per packet.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub const MEDIA_PACKETS: &str = "maskd_media_packets_total";
pub const MEDIA_BYTES: &str = "maskd_media_bytes_total";
pub const MEDIA_DROPS: &str = "maskd_media_drops_total";
pub const MEDIA_STREAMS: &str = "maskd_media_streams";
pub const MEDIA_PORTS: &str = "maskd_media_ports";
pub const MEDIA_TIMEOUTS: &str = "maskd_media_timeouts_total";
pub const MEDIA_RTCP_SCRUBBED: &str = "maskd_media_rtcp_items_removed_total";
pub const RECORDINGS: &str = "maskd_recordings_total";
pub const RECORDINGS_ACTIVE: &str = "maskd_recordings_active";

/// The `reason` label values of `maskd_media_drops_total`.
pub const DROP_REASONS: [&str; 8] = [
    "no_destination",
    "wrong_source",
    "malformed",
    "held",
    "rtcp_invalid",
    "send_failed",
    "recording_queue_full",
    "idle_port",
];

pub struct MediaMetrics {
    pub packets: IntCounterVec,
    pub bytes: IntCounterVec,
    pub drops: IntCounterVec,
    pub streams: IntGauge,
    pub ports: IntGaugeVec,
    pub timeouts: IntCounter,
    pub rtcp_scrubbed: IntCounter,
    pub recordings: IntCounterVec,
    pub recordings_active: IntGauge,
}

impl MediaMetrics {
    pub fn build() -> Result<MediaMetrics, prometheus::Error> {
        Ok(MediaMetrics {
            packets: IntCounterVec::new(
                Opts::new(
                    MEDIA_PACKETS,
                    "Datagrams relayed, by direction (a_to_b, b_to_a) and kind (rtp, rtcp)",
                ),
                &["direction", "kind"],
            )?,
            bytes: IntCounterVec::new(
                Opts::new(MEDIA_BYTES, "Bytes relayed, by direction"),
                &["direction"],
            )?,
            drops: IntCounterVec::new(
                Opts::new(MEDIA_DROPS, "Datagrams not relayed, by reason"),
                &["reason"],
            )?,
            streams: IntGauge::new(MEDIA_STREAMS, "Media streams (m= lines) anchored now")?,
            ports: IntGaugeVec::new(
                Opts::new(
                    MEDIA_PORTS,
                    "Relay port pairs in media.port_range by state: capacity, in_use, open (sockets bound, in use or idle)",
                ),
                &["state"],
            )?,
            timeouts: IntCounter::new(
                MEDIA_TIMEOUTS,
                "Calls ended because no media came for media.timeout",
            )?,
            rtcp_scrubbed: IntCounter::new(
                MEDIA_RTCP_SCRUBBED,
                "RTCP SDES items and packets removed so no identity crosses",
            )?,
            recordings: IntCounterVec::new(
                Opts::new(
                    RECORDINGS,
                    "Recordings ended, by outcome (completed, absent, failed)",
                ),
                &["outcome"],
            )?,
            recordings_active: IntGauge::new(RECORDINGS_ACTIVE, "Calls being recorded now")?,
        })
    }

    pub fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.packets.clone()))?;
        r.register(Box::new(self.bytes.clone()))?;
        r.register(Box::new(self.drops.clone()))?;
        r.register(Box::new(self.streams.clone()))?;
        r.register(Box::new(self.ports.clone()))?;
        r.register(Box::new(self.timeouts.clone()))?;
        r.register(Box::new(self.rtcp_scrubbed.clone()))?;
        r.register(Box::new(self.recordings.clone()))?;
        r.register(Box::new(self.recordings_active.clone()))?;
        Ok(())
    }
}
