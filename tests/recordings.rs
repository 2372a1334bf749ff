//! Recordings in the engine against the real SQLite store: a recorded call's row from
//! answer to end with its queued RecordingStatusCallback, the start-up repair of what a
//! crash left in progress, and retention (rows and files).

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use maskd::core::engine::{Engine, EngineOptions, NewSession, RecordingSettings, ServicePatch};
use maskd::core::model::RecordingStatus;
use maskd::core::store::Store;
use maskd::core::Sid;
use maskd::media::{RecordingOutcome, RecordingSink};
use maskd::store::SqliteStore;

const T0: i64 = 1_800_000_000; // seconds
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

fn clock() -> i64 {
    (T0 + 60) * 1000
}

fn open(dir: &Path) -> (Arc<Engine>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.join("m.db"), Box::new(|e| panic!("store failed: {e}"))).unwrap(),
    );
    let e = Arc::new(Engine::open(store.clone(), EngineOptions::default(), T0 * 1000).unwrap());
    std::fs::create_dir_all(dir.join("rec")).unwrap();
    e.set_recording(RecordingSettings {
        dir: dir.join("rec"),
        account_sid: ACCOUNT.into(),
        public_url: "http://maskd.test".into(),
        clock,
    });
    (e, store)
}

/// A service (recorded or not) with two numbers and a session; `record` overrides.
fn session(e: &Engine, service_record: bool, record: Option<bool>) -> Sid {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    let n: Vec<String> = (0..2)
        .map(|_| {
            let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("+1415555{k:04}")
        })
        .collect();
    common::seed::service_with_session(
        e,
        ServicePatch {
            unique_name: Some(format!("s{}", Sid::generate(maskd::core::SidKind::Service))),
            callback_url: Some("http://hooks.test/cb".into()),
            record: Some(service_record),
            ..Default::default()
        },
        [&n[0], &n[1]],
        NewSession {
            record,
            ..Default::default()
        },
        T0,
    )
    .session
}

const CALL: &str = "CA0123456789abcdef0123456789abcdef";

#[test]
fn only_recorded_sessions_record_and_the_session_overrides_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = open(dir.path());
    let plain = session(&e, false, None);
    assert!(e.start_recording(plain, CALL).is_none());
    let opted_in = session(&e, false, Some(true));
    assert!(e.start_recording(opted_in, CALL).is_some());
    let opted_out = session(&e, true, Some(false));
    assert!(e.start_recording(opted_out, CALL).is_none());
    let by_service = session(&e, true, None);
    let (sid, path) = e.start_recording(by_service, CALL).unwrap();
    assert!(sid.starts_with("RE") && sid.len() == 34, "{sid}");
    assert_eq!(path, dir.path().join("rec").join(format!("{sid}.wav")));
}

#[test]
fn a_finished_recording_is_durable_with_its_signed_callback_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (e, store) = open(dir.path());
    let s = session(&e, true, None);
    let (sid, _) = e.start_recording(s, CALL).unwrap();
    let sid = Sid::parse(maskd::core::SidKind::Recording, &sid).unwrap();
    futures_block(e.record(vec![], None)).unwrap();
    let rec = store.recording(sid).unwrap().expect("row at start");
    assert_eq!(rec.status, RecordingStatus::InProgress);
    assert_eq!(rec.call_sid, CALL);

    e.ended(
        &sid.to_string(),
        RecordingOutcome::Completed { duration_ms: 2_500 },
    );
    let _ = futures_block(e.record(vec![], None));
    let rec = store.recording(sid).unwrap().unwrap();
    assert_eq!(rec.status, RecordingStatus::Completed);
    assert_eq!(rec.duration, Some(3), "2.5 s rounds to 3");

    let cbs = store.callbacks_after(0, 100).unwrap();
    let cb = cbs
        .iter()
        .find(|c| c.interaction == sid)
        .expect("callback queued");
    assert_eq!(cb.url.as_deref(), Some("http://hooks.test/cb"));
    let p: std::collections::HashMap<_, _> = cb.params.clone().unwrap().into_iter().collect();
    assert_eq!(p["AccountSid"], ACCOUNT);
    assert_eq!(p["CallSid"], CALL);
    assert_eq!(p["RecordingSid"], sid.to_string());
    assert_eq!(
        p["RecordingUrl"],
        format!("http://maskd.test/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}")
    );
    assert_eq!(p["RecordingStatus"], "completed");
    assert_eq!(p["RecordingDuration"], "3");
    assert_eq!(p["RecordingChannels"], "2");
    assert_eq!(p["RecordingStartTime"], "Fri, 15 Jan 2027 08:01:00 +0000");
    assert_eq!(p["RecordingSource"], "Trunking");

    // A second end is ignored; an absent one carries its error code.
    e.ended(
        &sid.to_string(),
        RecordingOutcome::Completed { duration_ms: 9 },
    );
    assert_eq!(store.recording(sid).unwrap().unwrap().duration, Some(3));
    let (other, _) = e.start_recording(s, CALL).unwrap();
    e.ended(
        &other,
        RecordingOutcome::Absent {
            reason: "codec G.729".into(),
        },
    );
    let _ = futures_block(e.record(vec![], None));
    let other = Sid::parse(maskd::core::SidKind::Recording, &other).unwrap();
    let rec = store.recording(other).unwrap().unwrap();
    assert_eq!(rec.status, RecordingStatus::Absent);
    assert_eq!(rec.reason.as_deref(), Some("codec G.729"));
    assert!(rec.error_code.is_some());
}

fn futures_block(d: maskd::core::store::Durable) -> Result<(), maskd::core::store::StoreError> {
    d.wait_blocking()
}

/// A WAV as a crash leaves it: the placeholder header (sizes 0) and `data` bytes of audio.
fn crashed_wav(path: &Path, data: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    maskd::media::record::write_header(&mut f, 0).unwrap();
    f.write_all(&vec![0x11; data]).unwrap();
}

#[test]
fn start_up_repairs_recordings_left_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, lost) = {
        let (e, _) = open(dir.path());
        let s = session(&e, true, None);
        let (a, pa) = e.start_recording(s, CALL).unwrap();
        let (b, _) = e.start_recording(s, CALL).unwrap();
        crashed_wav(&pa, 32 * 1_600); // 1.6 s
        let _ = futures_block(e.record(vec![], None));
        (a, b)
    };
    // Restart: a new engine on the same store finds both in progress.
    let (e, store) = open(dir.path());
    assert_eq!(e.repair_recordings(clock()).unwrap(), 2);
    let kept = Sid::parse(maskd::core::SidKind::Recording, &kept).unwrap();
    let lost = Sid::parse(maskd::core::SidKind::Recording, &lost).unwrap();
    let r = store.recording(kept).unwrap().unwrap();
    assert_eq!(r.status, RecordingStatus::Completed);
    assert_eq!(r.duration, Some(2), "1.6 s rounds to 2");
    let bytes = std::fs::read(dir.path().join("rec").join(format!("{kept}.wav"))).unwrap();
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(
        u32::from_le_bytes(bytes[40..44].try_into().unwrap()),
        32 * 1_600
    );
    assert_eq!(
        store.recording(lost).unwrap().unwrap().status,
        RecordingStatus::Failed
    );
    let cbs = store.callbacks_after(0, 100).unwrap();
    assert!(cbs.iter().any(|c| c.interaction == kept));
    assert!(cbs.iter().any(|c| c.interaction == lost));
    assert_eq!(e.repair_recordings(clock()).unwrap(), 0, "nothing left");
}

#[test]
fn retention_deletes_old_recordings_rows_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let (e, store) = open(dir.path());
    let s = session(&e, true, None);
    let (old, _, d) = e.start_recording_at(s, CALL, T0 * 1000).unwrap();
    d.wait_blocking().unwrap();
    let old_path = e.recording_path(old.sid).unwrap();
    crashed_wav(&old_path, 64);
    let (new, _, d) = e
        .start_recording_at(s, CALL, (T0 + 3 * 86_400) * 1000)
        .unwrap();
    d.wait_blocking().unwrap();
    let n = e
        .expire_recordings((T0 + 3 * 86_400 + 10) * 1000, Duration::from_secs(86_400))
        .unwrap();
    assert_eq!(n, 1);
    assert!(store.recording(old.sid).unwrap().is_none());
    assert!(!old_path.exists());
    assert!(store.recording(new.sid).unwrap().is_some());
}
