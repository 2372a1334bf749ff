//! Recordings seeded through the engine on a daemon's store before it starts: two
//! completed recordings of `CALL_A` and one of `CALL_B` left in progress, as a crash leaves
//! it (the daemon's start-up repairs it). Shared by the Recording API's tests and its
//! Schemathesis run.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::ACCOUNT;
use maskd::core::engine::{Engine, EngineOptions, NewSession, RecordingSettings, ServicePatch};
use maskd::core::store::Store;
use maskd::media::RecordingOutcome;

pub const CALL_A: &str = "CA00000000000000000000000000000001";
pub const CALL_B: &str = "CA00000000000000000000000000000002";
pub const CALL_C: &str = "CA00000000000000000000000000000003";
const T0: i64 = 1_800_000_000;

fn wav(path: &Path, data: usize, header_size: u32) {
    let mut f = std::fs::File::create(path).unwrap();
    maskd::media::record::write_header(&mut f, header_size).unwrap();
    f.write_all(&vec![0x22; data]).unwrap();
}

/// Seeds the store of a daemon on `dir` and `dir/recordings`: two completed recordings of CALL_A and one
/// of CALL_B left in progress. Returns the recording dir's config lines.
pub fn seed(dir: &Path, base: &str) -> String {
    seed_with(dir, base, false)
}

/// `seed`, and with `absent` a fourth recording, of `CALL_C`, that ended absent (the codec
/// could not be decoded) with a part-written file left on disk.
pub fn seed_with(dir: &Path, base: &str, absent: bool) -> String {
    let rec_dir = dir.join("recordings");
    std::fs::create_dir_all(&rec_dir).unwrap();
    {
        let store: Arc<dyn Store> = super::open_store(dir);
        // As the daemon on it will be: node 1 on a shared store (its recordings carry it).
        let opts = EngineOptions {
            node: store.shared().then_some(1),
            ..EngineOptions::default()
        };
        let e = Engine::open(store, opts, T0 * 1000).unwrap();
        e.set_recording(RecordingSettings {
            dir: rec_dir.clone(),
            account_sid: ACCOUNT.into(),
            public_url: base.into(),
            clock: || (T0 + 100) * 1000,
        });
        let s = super::seed::service_with_session(
            &e,
            ServicePatch {
                unique_name: Some("rec".into()),
                record: Some(true),
                ..Default::default()
            },
            ["+14155550101", "+14155550102"],
            NewSession::default(),
            T0,
        );
        for (k, call) in [CALL_A, CALL_A, CALL_B].iter().enumerate() {
            let (rec, path, d) = e
                .start_recording_at(s.session, call, (T0 + 10 * k as i64) * 1000)
                .unwrap();
            d.wait_blocking().unwrap();
            if k < 2 {
                wav(&path, 32 * 2_000, 32 * 2_000);
                e.finish_recording(
                    rec.sid,
                    &RecordingOutcome::Completed { duration_ms: 2_000 },
                    (T0 + 20) * 1000,
                )
                .unwrap()
                .wait_blocking()
                .unwrap();
            } else {
                wav(&path, 32 * 3_000, 0); // a crash: header not finalised
            }
        }
        if absent {
            let (rec, path, d) = e
                .start_recording_at(s.session, CALL_C, (T0 + 40) * 1000)
                .unwrap();
            d.wait_blocking().unwrap();
            wav(&path, 32 * 100, 0);
            e.finish_recording(
                rec.sid,
                &RecordingOutcome::Absent {
                    reason: "codec G722 is not decoded (G.711 only)".into(),
                },
                (T0 + 41) * 1000,
            )
            .unwrap()
            .wait_blocking()
            .unwrap();
        }
    }
    format!("media:\n  recording:\n    dir: \"{}\"\n", rec_dir.display())
}
