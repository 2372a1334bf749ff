//! The `media:` keys (SPEC §2.4, §2.5): whether maskd anchors RTP, where its relay listens
//! and what it advertises, its port range, the no-media timeout, and where recordings go.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `anchor` (maskd relays RTP and rewrites every SDP) or `passthrough` (SDP relayed
    /// untouched: for trunks that must see each other).
    pub mode: String,
    /// Address the relay's sockets bind to.
    pub listen_ip: String,
    /// Address written into `c=` (and `o=`) of every SDP maskd sends.
    pub advertised_ip: String,
    /// `first-last`: RTP ports (even) and RTCP ports (the odd one above) come from here.
    pub port_range: String,
    /// No RTP this long from either side of a call not on hold: the call ends.
    pub timeout: String,
    /// Relay threads; 0 picks the number of cores (at most 4).
    pub threads: u32,
    pub recording: RecordingConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Directory of the WAV files (created if missing).
    pub dir: String,
    /// Recordings older than this are deleted with their files.
    pub retention: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            mode: "anchor".into(),
            listen_ip: "127.0.0.1".into(),
            advertised_ip: "127.0.0.1".into(),
            port_range: "20000-29999".into(),
            timeout: "60s".into(),
            threads: 0,
            recording: RecordingConfig::default(),
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            dir: "./data/recordings".into(),
            retention: "30d".into(),
        }
    }
}

/// The media plane's parsed settings.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Anchor media (else pass SDP through untouched).
    pub anchor: bool,
    pub listen_ip: IpAddr,
    pub advertised_ip: IpAddr,
    /// First and last port of the range, both inclusive (first even).
    pub ports: (u16, u16),
    pub timeout: Duration,
    pub threads: usize,
    pub recording_dir: PathBuf,
    pub retention: Duration,
}

impl MediaConfig {
    /// Checks every `media.*` key; `None` when one of them added a problem.
    pub(super) fn validate(&self, p: &mut Problems) -> Option<MediaSettings> {
        p.one_of("media.mode", &self.mode, &["anchor", "passthrough"]);
        let listen_ip = ip(p, "media.listen_ip", &self.listen_ip);
        let advertised_ip = ip(p, "media.advertised_ip", &self.advertised_ip);
        if advertised_ip.is_some_and(|a| a.is_unspecified()) {
            p.add(
                "media.advertised_ip",
                "must be an address peers can send to, not 0.0.0.0 or ::",
            );
        }
        let ports = port_range(p, &self.port_range);
        let timeout = p.duration("media.timeout", &self.timeout);
        if timeout.is_some_and(|d| d < Duration::from_secs(1)) {
            p.add("media.timeout", "must be at least 1s");
        }
        if self.threads > 64 {
            p.add("media.threads", "must be at most 64 (0 picks the cores)");
        }
        if self.recording.dir.trim().is_empty() {
            p.add("media.recording.dir", "must not be empty");
        }
        let retention = p.duration("media.recording.retention", &self.recording.retention);
        if retention.is_some_and(|d| d < Duration::from_secs(60)) {
            p.add("media.recording.retention", "must be at least 1m");
        }
        let threads = if self.threads > 0 {
            self.threads as usize
        } else {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(4)
        };
        Some(MediaSettings {
            anchor: self.mode == "anchor",
            listen_ip: listen_ip?,
            advertised_ip: advertised_ip?,
            ports: ports?,
            timeout: timeout?,
            threads,
            recording_dir: PathBuf::from(&self.recording.dir),
            retention: retention?,
        })
    }
}

fn ip(p: &mut Problems, key: &str, v: &str) -> Option<IpAddr> {
    match v.parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.add(
                key,
                format!("\"{v}\" is not an IP address (e.g. \"127.0.0.1\")"),
            );
            None
        }
    }
}

/// `"20000-29999"`: at least one RTP/RTCP pair, starting on an even port.
fn port_range(p: &mut Problems, v: &str) -> Option<(u16, u16)> {
    let key = "media.port_range";
    let parsed = v
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
    match parsed {
        Some((a, b)) if a >= 1024 && b > a => {
            // An odd first port starts the pairs one higher.
            let first = a + (a & 1);
            if b < first + 3 {
                p.add(key, "must hold at least two even/odd port pairs");
                return None;
            }
            Some((first, b))
        }
        _ => {
            p.add(
                key,
                format!(
                    "\"{v}\" is not first-last with 1024 <= first < last (e.g. \"20000-29999\")"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(m: MediaConfig) -> Result<MediaSettings, Vec<(String, String)>> {
        let mut p = Problems(Vec::new());
        let v = m.validate(&mut p);
        if p.0.is_empty() {
            Ok(v.expect("no problem, so settings"))
        } else {
            Err(p.0)
        }
    }

    #[test]
    fn defaults_are_valid() {
        let s = check(MediaConfig::default()).unwrap();
        assert!(s.anchor);
        assert_eq!(s.ports, (20000, 29999));
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(s.retention, Duration::from_secs(30 * 86400));
    }

    #[test]
    fn each_bad_key_is_named() {
        let m = MediaConfig {
            mode: "relay".into(),
            listen_ip: "localhost".into(),
            advertised_ip: "0.0.0.0".into(),
            port_range: "30000-20000".into(),
            timeout: "0s".into(),
            recording: RecordingConfig {
                dir: "".into(),
                retention: "1s".into(),
            },
            ..MediaConfig::default()
        };
        let keys: Vec<String> = check(m).unwrap_err().into_iter().map(|(k, _)| k).collect();
        for k in [
            "media.mode",
            "media.listen_ip",
            "media.advertised_ip",
            "media.port_range",
            "media.timeout",
            "media.recording.dir",
            "media.recording.retention",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not in {keys:?}");
        }
    }

    #[test]
    fn odd_first_port_moves_up() {
        let m = MediaConfig {
            port_range: "20001-20010".into(),
            ..MediaConfig::default()
        };
        assert_eq!(check(m).unwrap().ports, (20002, 20010));
        let m = MediaConfig {
            port_range: "20000-20002".into(),
            ..MediaConfig::default()
        };
        assert!(check(m).is_err());
    }
}
