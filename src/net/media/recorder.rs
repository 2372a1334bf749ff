//! The recording thread: relay threads hand it copies of a recorded call's RTP (through a
//! bounded queue: when it is full, the packet is left out of the recording and counted,
//! and the relay never waits), and it decodes and writes each call's WAV file with
//! `media::record::Recorder`. When a call ends its file is finalised and the sink told how
//! the recording ended.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Millis;
use crate::media::record::{Channel, Payload, Recorder};
use crate::media::{RecordSpec, RecordingOutcome, RecordingSink};

/// Batches queued for the recorder at most (a relay thread sends one per poll round).
const QUEUE: usize = 8_192;
/// How often files advance through silence.
const TICK_MS: u64 = 200;

/// Copies of recorded RTP from one poll round of a relay thread: (call, channel, arrival,
/// start and length in `data`). One message per round, not per packet.
#[derive(Default)]
pub(super) struct Batch {
    items: Vec<(u64, Channel, u64, usize, usize)>,
    data: Vec<u8>,
}

impl Batch {
    pub fn push(&mut self, call: u64, ch: Channel, at: u64, rtp: &[u8]) {
        self.items.push((call, ch, at, self.data.len(), rtp.len()));
        self.data.extend_from_slice(rtp);
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

enum Msg {
    Start(u64, Box<RecordSpec>, u64),
    Packets(Batch),
    End(u64, u64),
    Tick(u64),
}

/// The relay threads' handle to the recording thread.
#[derive(Clone)]
pub(super) struct Recordings {
    tx: mpsc::SyncSender<Msg>,
}

impl Recordings {
    pub fn start(&self, call: u64, spec: RecordSpec, now: u64) {
        // Start and End wait for room: they are rare, and losing one would lose a file.
        let _ = self.tx.send(Msg::Start(call, Box::new(spec), now));
    }
    /// Hands over a round's packets; false when the queue is full (they are not recorded).
    pub fn packets(&self, batch: Batch) -> bool {
        self.tx.try_send(Msg::Packets(batch)).is_ok()
    }
    pub fn end(&self, call: u64, now: u64) {
        let _ = self.tx.send(Msg::End(call, now));
    }
    pub fn tick(&self, now: u64) {
        let _ = self.tx.try_send(Msg::Tick(now));
    }
}

struct Active {
    sid: String,
    recorder: Option<Recorder>,
    payloads: Vec<(u8, Payload)>,
    absent: Option<String>,
    failed: Option<String>,
}

/// Starts the recording thread; it ends (finishing every open file) once every handle is
/// gone.
pub(super) fn start(
    clock: Millis,
    sink: Arc<dyn RecordingSink>,
) -> std::io::Result<(Recordings, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let join = std::thread::Builder::new()
        .name("maskd-recorder".into())
        .spawn(move || run(rx, clock, sink))?;
    Ok((Recordings { tx }, join))
}

fn run(rx: mpsc::Receiver<Msg>, clock: Millis, sink: Arc<dyn RecordingSink>) {
    let mut active: HashMap<u64, Active, foldhash::fast::RandomState> = HashMap::default();
    let m = &crate::metrics::get().media;
    loop {
        // With no recording open nothing is due on a clock: it sleeps until a message comes.
        let msg = match active.is_empty() {
            true => match rx.recv() {
                Ok(m) => m,
                Err(mpsc::RecvError) => break,
            },
            false => match rx.recv_timeout(Duration::from_millis(TICK_MS)) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => Msg::Tick(clock.now()),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        match msg {
            Msg::Start(call, spec, now) => {
                let mut a = Active {
                    sid: spec.sid.clone(),
                    recorder: None,
                    payloads: spec.payloads.clone(),
                    absent: spec.absent.clone(),
                    failed: None,
                };
                if a.absent.is_none() {
                    if let Some(dir) = spec.path.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    match Recorder::create(&spec.path, now) {
                        Ok(r) => a.recorder = Some(r),
                        Err(e) => a.failed = Some(format!("cannot create the file: {e}")),
                    }
                }
                m.recordings_active.inc();
                active.insert(call, a);
            }
            Msg::Packets(batch) => {
                for &(call, ch, at, start, len) in &batch.items {
                    let Some(a) = active.get_mut(&call) else {
                        continue;
                    };
                    let payloads = &a.payloads;
                    let kind = |pt: u8| Payload::of(payloads, pt);
                    let data = batch.data.get(start..start + len).unwrap_or(&[]);
                    if let Some(r) = a.recorder.as_mut() {
                        if let Err(e) = r.packet(ch, at, data, kind) {
                            a.failed = Some(format!("write failed: {e}"));
                            a.recorder = None;
                        }
                    }
                }
            }
            Msg::Tick(now) => {
                for a in active.values_mut() {
                    if let Some(r) = a.recorder.as_mut() {
                        if let Err(e) = r.tick(now) {
                            a.failed = Some(format!("write failed: {e}"));
                            a.recorder = None;
                        }
                    }
                }
            }
            Msg::End(call, now) => {
                if let Some(a) = active.remove(&call) {
                    close(a, now, sink.as_ref());
                }
            }
        }
    }
    // The relay is gone (shutdown): finish every file still open, counted like the others.
    let now = clock.now();
    for (_, a) in active.drain() {
        close(a, now, sink.as_ref());
    }
}

/// Finishes a recording, counts how it ended and tells the sink.
fn close(a: Active, now: u64, sink: &dyn RecordingSink) {
    let m = &crate::metrics::get().media;
    m.recordings_active.dec();
    let sid = a.sid.clone();
    let outcome = finish(a, now);
    let label = match &outcome {
        RecordingOutcome::Completed { .. } => "completed",
        RecordingOutcome::Absent { .. } => "absent",
        RecordingOutcome::Failed { .. } => "failed",
    };
    m.recordings.with_label_values(&[label]).inc();
    sink.ended(&sid, outcome);
}

fn finish(a: Active, now: u64) -> RecordingOutcome {
    if let Some(reason) = a.absent {
        return RecordingOutcome::Absent { reason };
    }
    if let Some(reason) = a.failed {
        return RecordingOutcome::Failed { reason };
    }
    match a.recorder {
        Some(r) => match r.finish(now) {
            Ok(s) => RecordingOutcome::Completed {
                duration_ms: s.duration_ms,
            },
            Err(e) => RecordingOutcome::Failed {
                reason: format!("finalising failed: {e}"),
            },
        },
        None => RecordingOutcome::Failed {
            reason: "no file".into(),
        },
    }
}
