//! The media relay's driver (SPEC §2.4): a few threads, each with its own epoll (mio)
//! instance, own the sockets of the calls given to them (a call's four sockets per stream
//! all live on one thread, so forwarding takes no lock). A readable socket is drained with
//! `recvmmsg` and what it forwards goes out with `sendmmsg`, batched per socket; nothing
//! runs per packet but the sans-IO decision in `media::stream` and, for RTCP, the SDES
//! scrub. The B2BUA reaches it through [`Relay`], its `media::Media` handle: ports are taken
//! and bound there (synchronously, so the SDP can name them) and the sockets handed to
//! their thread.

mod recorder;
mod worker;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Millis;
use crate::media::ports::PortPool;
use crate::media::{Media, MediaError, PeerMedia, RecordSpec, RecordingSink, Side, StreamPorts};

/// What the relay needs to run.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub listen_ip: IpAddr,
    pub ports: (u16, u16),
    pub timeout: Duration,
    pub threads: usize,
}

/// A message to a relay thread.
enum Control {
    /// One more stream of `call` (its index is the number it already has).
    Add {
        call: u64,
        ports: StreamPorts,
        /// `[side][rtcp]`.
        sockets: [[mio::net::UdpSocket; 2]; 2],
    },
    Update {
        call: u64,
        index: usize,
        side: Side,
        peer: PeerMedia,
    },
    Answered {
        call: u64,
        record: Option<RecordSpec>,
    },
    Release {
        call: u64,
    },
    Stop,
}

struct Thread {
    tx: mpsc::Sender<Control>,
    waker: Arc<mio::Waker>,
    join: Option<std::thread::JoinHandle<()>>,
}

/// State the B2BUA's calls and the relay threads share: the port pool.
pub(crate) struct Shared {
    pool: Mutex<PortPool>,
}

impl Shared {
    fn give_back(&self, ports: &[StreamPorts]) {
        let mut pool = self.pool.lock();
        for p in ports {
            pool.give(p.a);
            pool.give(p.b);
        }
        let in_use = pool.capacity() - pool.available();
        crate::metrics::get()
            .media
            .ports
            .with_label_values(&["in_use"])
            .set(in_use as i64);
    }
}

/// The media relay: a handle the B2BUA calls, and its threads.
pub struct Relay {
    cfg: RelayConfig,
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    recorder: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Starts the relay threads. `timeouts` receives the id of every call that had no media
    /// for `timeout` (the B2BUA hangs it up); `sink` hears how each recording ended.
    pub fn start(
        cfg: RelayConfig,
        clock: Millis,
        timeouts: tokio::sync::mpsc::UnboundedSender<u64>,
        sink: Arc<dyn RecordingSink>,
    ) -> std::io::Result<Relay> {
        let pool = PortPool::new(cfg.ports.0, cfg.ports.1);
        let m = &crate::metrics::get().media;
        m.ports
            .with_label_values(&["capacity"])
            .set(pool.capacity() as i64);
        m.ports.with_label_values(&["in_use"]).set(0);
        let shared = Arc::new(Shared {
            pool: Mutex::new(pool),
        });
        let (recordings, recorder) = recorder::start(clock, sink)?;
        let mut threads = Vec::new();
        for i in 0..cfg.threads.max(1) {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), worker::WAKER)?);
            let (tx, rx) = mpsc::channel();
            let w = worker::Worker::new(
                poll,
                rx,
                shared.clone(),
                clock,
                cfg.timeout.as_millis() as u64,
                timeouts.clone(),
                recordings.clone(),
            );
            let join = std::thread::Builder::new()
                .name(format!("maskd-media-{i}"))
                .spawn(move || w.run())?;
            threads.push(Thread {
                tx,
                waker,
                join: Some(join),
            });
        }
        Ok(Relay {
            cfg,
            shared,
            threads,
            recorder: Some(recorder),
        })
    }

    fn thread(&self, call: u64) -> &Thread {
        &self.threads[(call % self.threads.len() as u64) as usize]
    }

    /// Queues a message for the call's thread. Only what media waits for wakes it at once
    /// (where a side receives, a recording's start, stop); the rest (new sockets, whose
    /// packets wait in their buffers; released calls) is picked up within `worker::CONTROL_MS`.
    /// Waking a relay thread per message cost more than the rest of a call's set-up.
    fn send(&self, call: u64, c: Control) {
        let urgent = matches!(
            c,
            Control::Update { .. }
                | Control::Answered {
                    record: Some(_),
                    ..
                }
                | Control::Stop
        );
        let t = self.thread(call);
        // A closed channel means the thread is gone (shutdown): nothing left to tell it.
        if t.tx.send(c).is_ok() && urgent {
            let _ = t.waker.wake();
        }
    }

    /// Binds the RTP and RTCP sockets of one relay port.
    fn bind_pair(&self, port: u16) -> std::io::Result<[mio::net::UdpSocket; 2]> {
        let bind = |p: u16| -> std::io::Result<mio::net::UdpSocket> {
            let s = UdpSocket::bind(SocketAddr::new(self.cfg.listen_ip, p))?;
            s.set_nonblocking(true)?;
            Ok(mio::net::UdpSocket::from_std(s))
        };
        Ok([bind(port)?, bind(port + 1)?])
    }

    /// Takes one free port whose pair binds; a port something else holds is set aside
    /// (it goes back to the end of the queue) and the next one tried.
    fn take_bound(&self) -> Result<(u16, [mio::net::UdpSocket; 2]), MediaError> {
        let mut pool = self.shared.pool.lock();
        for _ in 0..pool.capacity() {
            let Some(p) = pool.take() else { break };
            match self.bind_pair(p) {
                Ok(s) => return Ok((p, s)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::warn!(port = p, "media port held by another program; skipped");
                    pool.give(p);
                }
                Err(e) => {
                    tracing::error!(port = p, error = %e, "media port cannot be bound");
                    pool.give(p);
                    break;
                }
            }
        }
        Err(MediaError::Exhausted)
    }

    /// Stops the relay threads (every call's sockets close).
    pub fn stop(&mut self) {
        for t in &self.threads {
            let _ = t.tx.send(Control::Stop);
            let _ = t.waker.wake();
        }
        for t in &mut self.threads {
            if let Some(j) = t.join.take() {
                let _ = j.join();
            }
        }
        // The threads held the last handles to the recorder: it finishes its files and ends.
        if let Some(j) = self.recorder.take() {
            let _ = j.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Media for Relay {
    fn allocate(&self, call: u64, n: usize) -> Result<Vec<StreamPorts>, MediaError> {
        let mut out = Vec::with_capacity(n);
        let mut socks = Vec::with_capacity(n);
        for _ in 0..n {
            let taken = self
                .take_bound()
                .and_then(|(a, sa)| match self.take_bound() {
                    Ok((b, sb)) => Ok((a, sa, b, sb)),
                    Err(e) => {
                        drop(sa);
                        self.shared.pool.lock().give(a);
                        Err(e)
                    }
                });
            match taken {
                Ok((a, sa, b, sb)) => {
                    out.push(StreamPorts { a, b });
                    socks.push([sa, sb]);
                }
                Err(e) => {
                    drop(socks);
                    self.shared.give_back(&out);
                    return Err(e);
                }
            }
        }
        {
            let pool = self.shared.pool.lock();
            crate::metrics::get()
                .media
                .ports
                .with_label_values(&["in_use"])
                .set((pool.capacity() - pool.available()) as i64);
        }
        for (ports, sockets) in out.iter().zip(socks) {
            self.send(
                call,
                Control::Add {
                    call,
                    ports: *ports,
                    sockets,
                },
            );
        }
        Ok(out)
    }

    fn update(&self, call: u64, index: usize, side: Side, peer: PeerMedia) {
        self.send(
            call,
            Control::Update {
                call,
                index,
                side,
                peer,
            },
        );
    }

    fn answered(&self, call: u64, record: Option<RecordSpec>) {
        self.send(call, Control::Answered { call, record });
    }

    fn release(&self, call: u64) {
        self.send(call, Control::Release { call });
    }
}

/// Raises this process's open-file limit to its hard limit: each anchored stream holds four
/// sockets, so a thousand calls need more than the usual soft limit of 1,024.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, "could not raise the open-file limit");
            }
        }
    }
}
