//! Recorded calls: the Recording resource's life (created `in-progress` at answer, finished
//! by the media relay through `RecordingSink`, repaired at start after a crash, deleted by
//! retention or the API) and its status callback, queued durably in the same batch as the
//! change. The WAV files live in `RecordingSettings::dir` as `<sid>.wav`; the engine touches
//! them only to repair, measure and delete. The clock is the one the app hands in.

use std::path::PathBuf;

use super::*;
use crate::core::datetime;
use crate::core::store::RecordingQuery;
use crate::media::{RecordingOutcome, RecordingSink};

/// maskd's own `error_code`s for recordings that hold no audio (Twilio documents none for
/// these cases): the call's codec cannot be decoded, or the file could not be written or
/// read back.
pub const ERROR_ABSENT: u32 = 16_601;
pub const ERROR_FAILED: u32 = 16_602;

/// `RecordingSource` and `source`: Twilio's value for recordings a SIP trunk makes of every
/// call by configuration, dual-channel from the answer, which is what maskd does.
pub const SOURCE: &str = "Trunking";

/// What the engine needs to record: where files go, and the names the callback carries.
#[derive(Clone, Debug)]
pub struct RecordingSettings {
    /// `media.recording.dir`.
    pub dir: PathBuf,
    pub account_sid: String,
    /// `api.public_url`, without a trailing slash.
    pub public_url: String,
    /// Wall-clock Unix milliseconds (`crate::clock::now_ms`); the engine reads no clock.
    pub clock: fn() -> i64,
}

impl Engine {
    /// Connects recording: until this is called, `start_recording` records nothing.
    pub fn set_recording(&self, settings: RecordingSettings) {
        *self.recording.lock() = Some(settings);
    }

    fn recording_settings(&self) -> Option<RecordingSettings> {
        self.recording.lock().clone()
    }

    /// The WAV file of recording `sid`.
    pub fn recording_path(&self, sid: Sid) -> Option<PathBuf> {
        self.recording_settings()
            .map(|s| s.dir.join(format!("{sid}.wav")))
    }

    /// Is a call in `session` to be recorded: the session's `Record`, else its service's.
    pub fn is_recorded(&self, session: Sid) -> bool {
        let st = self.state.lock();
        let Some(ss) = st.sessions.get(&session) else {
            return false;
        };
        ss.session.record.unwrap_or_else(|| {
            st.services
                .get(&ss.session.service_sid)
                .is_some_and(|s| s.record)
        })
    }

    /// A call of `session` was answered: if the session is recorded, its Recording is
    /// created (`in-progress`) and `(sid, <dir>/<sid>.wav)` returned for the relay.
    pub fn start_recording(
        &self,
        session: Sid,
        call_sid: &str,
    ) -> Option<(String, std::path::PathBuf)> {
        let settings = self.recording_settings()?;
        self.start_recording_at(session, call_sid, (settings.clock)())
            .map(|(rec, path, _)| (rec.sid.to_string(), path))
    }

    /// `start_recording` at `now_ms`, also returning the row and its `Durable`.
    pub fn start_recording_at(
        &self,
        session: Sid,
        call_sid: &str,
        now_ms: i64,
    ) -> Option<(Recording, PathBuf, Durable)> {
        let settings = self.recording_settings()?;
        if !self.is_recorded(session) {
            return None;
        }
        let mut st = self.state.lock();
        let service_sid = st.sessions.get(&session)?.session.service_sid;
        let now = now_ms.div_euclid(1000);
        let rec = Recording {
            sid: Sid::generate(SidKind::Recording),
            seq: st.next_seq(),
            session_sid: session,
            service_sid,
            call_sid: call_sid.to_string(),
            status: RecordingStatus::InProgress,
            start_ms: now_ms,
            duration: None,
            error_code: None,
            reason: None,
            date_created: now,
            date_updated: now,
        };
        let path = settings.dir.join(format!("{}.wav", rec.sid));
        let d = self.submit(vec![WriteOp::PutRecording(rec.clone())]);
        drop(st);
        Some((rec, path, d))
    }

    /// A recording ended: its row is finished and its status callback queued (both durable
    /// together). `None`: no such in-progress recording.
    pub fn finish_recording(
        &self,
        sid: Sid,
        outcome: &RecordingOutcome,
        now_ms: i64,
    ) -> Option<Durable> {
        let settings = self.recording_settings()?;
        // The start is queued before the relay can report the end: reading it back after
        // everything queued is committed finds it.
        let _ = self.submit(vec![]).wait_blocking();
        let mut rec = self.store.recording(sid).ok()??;
        if rec.status != RecordingStatus::InProgress {
            return None;
        }
        match outcome {
            RecordingOutcome::Completed { duration_ms } => {
                rec.status = RecordingStatus::Completed;
                rec.duration = Some(duration_ms.saturating_add(500) / 1000);
            }
            RecordingOutcome::Absent { reason } => {
                rec.status = RecordingStatus::Absent;
                rec.duration = Some(0);
                rec.error_code = Some(ERROR_ABSENT);
                rec.reason = Some(reason.clone());
            }
            RecordingOutcome::Failed { reason } => {
                rec.status = RecordingStatus::Failed;
                rec.duration = Some(0);
                rec.error_code = Some(ERROR_FAILED);
                rec.reason = Some(reason.clone());
            }
        }
        rec.date_updated = now_ms.div_euclid(1000);
        let mut st = self.state.lock();
        let mut ops = vec![WriteOp::PutRecording(rec.clone())];
        let url = st
            .services
            .get(&rec.service_sid)
            .and_then(|s| s.callback_url.clone());
        let mut items = Vec::new();
        if let Some(url) = url {
            let item = CallbackItem {
                id: st.next_seq(),
                interaction: rec.sid,
                url: Some(url),
                params: Some(callback_params(&rec, &settings)),
                outbound: None,
                created: rec.date_updated,
            };
            ops.push(WriteOp::PutCallback(item.clone()));
            items.push(item);
        }
        let d = self.submit(ops);
        drop(st);
        self.hand_callbacks(items);
        Some(d)
    }

    /// At start: every recording still `in-progress` (maskd stopped mid-call) has its WAV
    /// header repaired and is finished as `completed` with the duration the file holds, or
    /// `failed` if the file is missing or unreadable. Returns how many were finished.
    pub fn repair_recordings(&self, now_ms: i64) -> Result<usize, StoreError> {
        let Some(settings) = self.recording_settings() else {
            return Ok(0);
        };
        let stale = self.store.recordings(&RecordingQuery {
            status: Some(RecordingStatus::InProgress),
            made_here: true,
            limit: usize::MAX >> 1,
            ..RecordingQuery::default()
        })?;
        let mut done = Vec::new();
        for rec in &stale {
            let path = settings.dir.join(format!("{}.wav", rec.sid));
            let outcome = match crate::media::record::repair(&path) {
                // 16-bit stereo at 8 kHz: 32 bytes a millisecond.
                Ok(r) => RecordingOutcome::Completed {
                    duration_ms: u64::from(r.data_bytes) / 32,
                },
                Err(e) => RecordingOutcome::Failed {
                    reason: format!("not repairable after restart: {e}"),
                },
            };
            tracing::info!(recording = %rec.sid, ?outcome, "recording finished at start");
            let label = match outcome {
                RecordingOutcome::Completed { .. } => "completed",
                RecordingOutcome::Absent { .. } => "absent",
                RecordingOutcome::Failed { .. } => "failed",
            };
            crate::metrics::get()
                .media
                .recordings
                .with_label_values(&[label])
                .inc();
            if let Some(d) = self.finish_recording(rec.sid, &outcome, now_ms) {
                done.push(d);
            }
        }
        for d in done {
            d.wait_blocking()?;
        }
        Ok(stale.len())
    }

    /// Deletes recordings (rows and files) that started more than `retention` before
    /// `now_ms`. Returns how many went.
    pub fn expire_recordings(
        &self,
        now_ms: i64,
        retention: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let cutoff =
            now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let mut n = 0;
        loop {
            let old = self.store.recordings(&RecordingQuery {
                started_before_ms: Some(cutoff),
                made_here: true,
                limit: 500,
                ..RecordingQuery::default()
            })?;
            if old.is_empty() {
                return Ok(n);
            }
            for rec in &old {
                if let Some(d) = self.delete_recording(rec.sid)? {
                    d.wait_blocking()?;
                }
                n += 1;
            }
        }
    }

    /// Deletes a recording's row, then its file. `None`: no such recording.
    pub fn delete_recording(&self, sid: Sid) -> Result<Option<Durable>, StoreError> {
        let _ = self.submit(vec![]).wait_blocking();
        if self.store.recording(sid)?.is_none() {
            return Ok(None);
        }
        let d = {
            let _st = self.state.lock();
            self.submit(vec![WriteOp::DeleteRecording(sid)])
        };
        if let Some(path) = self.recording_path(sid) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(recording = %sid, error = %e, "recording file not deleted")
                }
            }
        }
        Ok(Some(d))
    }
}

/// The wire status: `failed` is not in Twilio's enum; it is `absent` with its error code.
pub fn wire_status(s: RecordingStatus) -> &'static str {
    match s {
        RecordingStatus::Failed => RecordingStatus::Absent.as_str(),
        other => other.as_str(),
    }
}

/// Twilio's RecordingStatusCallback parameters.
fn callback_params(rec: &Recording, s: &RecordingSettings) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("AccountSid", s.account_sid.clone()),
        ("CallSid", rec.call_sid.clone()),
        ("RecordingSid", rec.sid.to_string()),
        (
            "RecordingUrl",
            format!(
                "{}/2010-04-01/Accounts/{}/Recordings/{}",
                s.public_url, s.account_sid, rec.sid
            ),
        ),
        ("RecordingStatus", wire_status(rec.status).to_string()),
        ("RecordingDuration", rec.duration.unwrap_or(0).to_string()),
        ("RecordingChannels", "2".to_string()),
        (
            "RecordingStartTime",
            datetime::format_rfc2822(rec.start_ms.div_euclid(1000)),
        ),
        ("RecordingSource", SOURCE.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(code) = rec.error_code {
        p.push(("ErrorCode".to_string(), code.to_string()));
    }
    p
}

impl RecordingSink for Engine {
    fn ended(&self, sid: &str, outcome: RecordingOutcome) {
        let Some(sid) = Sid::parse(SidKind::Recording, sid) else {
            return;
        };
        let Some(settings) = self.recording_settings() else {
            return;
        };
        if self
            .finish_recording(sid, &outcome, (settings.clock)())
            .is_none()
        {
            tracing::warn!(recording = %sid, "ended recording is unknown or already finished");
        }
    }
}
