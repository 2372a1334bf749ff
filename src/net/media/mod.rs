//! The media relay's driver (SPEC §2.4): a few threads, each with its own epoll (mio)
//! instance, own the sockets of the calls given to them (a call's four sockets per stream
//! all live on one thread, so forwarding takes no lock). A readable socket is drained with
//! `recvmmsg` and what it forwards goes out with `sendmmsg`, batched per socket; nothing
//! runs per packet but the sans-IO decision in `media::stream` and, for RTCP, the SDES
//! scrub. The B2BUA reaches it through [`Relay`], its `media::Media` handle: ports are taken
//! there (synchronously, so the SDP can name them). A port's sockets are bound the first
//! time it is used and stay open on their thread after its call ends, idle, so a later
//! call reuses them without a system call (`media::ports`); nothing the B2BUA tells a
//! thread wakes it: each thread applies its messages before it reads any socket.

mod recorder;
mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Millis;
use crate::media::ports::{PortPool, Taken};
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
        /// `[side][rtcp]`; `None` for a port whose idle sockets the thread already has.
        sockets: [Option<[mio::net::UdpSocket; 2]>; 2],
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
    /// The thread sleeps until woken (it has no call): see `send`.
    parked: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Thread {
    /// A thread whose handle goes (the relay stopped, or its start failed after this thread
    /// began) is told to stop and woken: parked, it would not notice its channel closing.
    fn drop(&mut self) {
        let _ = self.tx.send(Control::Stop);
        let _ = self.waker.wake();
    }
}

/// State the B2BUA's calls and the relay threads share: the port pool, and which thread
/// each call's sockets live on.
pub(crate) struct Shared {
    state: Mutex<State>,
    clock: Millis,
}

struct State {
    pool: PortPool,
    calls: HashMap<u64, usize, foldhash::fast::RandomState>,
}

impl State {
    fn publish(&self) {
        let m = &crate::metrics::get().media;
        let in_use = self.pool.capacity() - self.pool.available();
        m.ports.with_label_values(&["in_use"]).set(in_use as i64);
        m.ports
            .with_label_values(&["open"])
            .set(self.pool.bound() as i64);
    }
}

impl Shared {
    /// A call's ports back to the pool, their sockets kept open on `thread`.
    fn give_back(&self, ports: &[StreamPorts], thread: usize) {
        let now = self.clock.now();
        let mut st = self.state.lock();
        for p in ports {
            st.pool.give(p.a, Some(thread), now);
            st.pool.give(p.b, Some(thread), now);
        }
        st.publish();
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
        m.ports.with_label_values(&["open"]).set(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pool,
                calls: HashMap::default(),
            }),
            clock,
        });
        let (recordings, recorder) = recorder::start(clock, sink)?;
        let mut threads = Vec::new();
        for i in 0..cfg.threads.max(1) {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), worker::WAKER)?);
            let (tx, rx) = mpsc::channel();
            let parked = Arc::new(AtomicBool::new(false));
            let w = worker::Worker::new(
                i,
                poll,
                rx,
                parked.clone(),
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
                parked,
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

    /// Queues a message for a relay thread. It does not wake a thread that relays calls:
    /// that thread applies its messages before it reads any socket (so a packet sent after
    /// an SDP crossed finds the stream updated), and at the latest every
    /// `worker::CONTROL_MS`; waking a relay thread per message cost more than the rest of a
    /// call's set-up. A thread with no call sleeps until told (it does no work on a clock):
    /// the first message after it parked wakes it.
    fn send(&self, thread: usize, c: Control) {
        let t = &self.threads[thread];
        // A closed channel means the thread is gone (shutdown): nothing left to tell it.
        let _ = t.tx.send(c);
        // After the message (see `worker::Worker::park`): either the thread's last look at
        // its queue finds it, or this finds the thread parked.
        if t.parked.swap(false, Ordering::SeqCst) {
            let _ = t.waker.wake();
        }
    }

    /// The thread of a call that has ports.
    fn thread_of(&self, call: u64) -> Option<usize> {
        self.shared.state.lock().calls.get(&call).copied()
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

    /// Takes one free port a call on `thread` can use (any thread if `None`), binding its
    /// sockets if no thread holds them yet. A port something else holds is set aside (it
    /// goes back to the end of the queue) and the next one tried.
    fn take(
        &self,
        st: &mut State,
        thread: Option<usize>,
    ) -> Result<(Taken, Option<[mio::net::UdpSocket; 2]>), MediaError> {
        let now = self.shared.clock.now();
        let mut may_bind = true;
        for _ in 0..st.pool.capacity() {
            let Some(t) = st.pool.take(thread, now, may_bind) else {
                break;
            };
            if t.bound_on.is_some() {
                return Ok((t, None));
            }
            match self.bind_pair(t.port) {
                Ok(s) => return Ok((t, Some(s))),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::warn!(port = t.port, "media port held by another program; skipped");
                    st.pool.give(t.port, None, now);
                }
                Err(e) => {
                    // Out of file descriptors (or worse): only idle sockets are left to use.
                    tracing::warn!(port = t.port, error = %e, "media port cannot be bound");
                    st.pool.give(t.port, None, now);
                    may_bind = false;
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
        let now = self.shared.clock.now();
        let mut st = self.shared.state.lock();
        let mut thread = st.calls.get(&call).copied();
        if thread.is_none() && st.pool.unbound() < 2 * n {
            // Not enough ports any thread can take: a new call goes where the most idle
            // ports are, so that all of its ports can live on one thread.
            thread = st.pool.most_idle().map(|(t, _)| t);
        }
        let mut taken: Vec<(Taken, Option<[mio::net::UdpSocket; 2]>)> = Vec::with_capacity(2 * n);
        for _ in 0..2 * n {
            match self.take(&mut st, thread) {
                Ok(t) => {
                    // A new call goes to the thread holding its first port's sockets (or, for
                    // an unbound port, one by its id); its other ports follow it there.
                    thread = thread
                        .or(t.0.bound_on)
                        .or(Some(call as usize % self.threads.len()));
                    taken.push(t);
                }
                Err(e) => {
                    for (t, socks) in taken {
                        // Sockets bound for this call close here; idle ones stay where they were.
                        let keep = if socks.is_some() { None } else { t.bound_on };
                        st.pool.give(t.port, keep, now);
                    }
                    st.publish();
                    return Err(e);
                }
            }
        }
        let thread = thread.unwrap_or(0);
        st.calls.insert(call, thread);
        st.publish();
        drop(st);
        let mut out = Vec::with_capacity(n);
        let mut it = taken.into_iter();
        while let (Some((a, sa)), Some((b, sb))) = (it.next(), it.next()) {
            let ports = StreamPorts {
                a: a.port,
                b: b.port,
            };
            out.push(ports);
            self.send(
                thread,
                Control::Add {
                    call,
                    ports,
                    sockets: [sa, sb],
                },
            );
        }
        Ok(out)
    }

    fn update(&self, call: u64, index: usize, side: Side, peer: PeerMedia) {
        if let Some(t) = self.thread_of(call) {
            self.send(
                t,
                Control::Update {
                    call,
                    index,
                    side,
                    peer,
                },
            );
        }
    }

    fn answered(&self, call: u64, record: Option<RecordSpec>) {
        if let Some(t) = self.thread_of(call) {
            self.send(t, Control::Answered { call, record });
        }
    }

    fn release(&self, call: u64) {
        if let Some(t) = self.shared.state.lock().calls.remove(&call) {
            self.send(t, Control::Release { call });
        }
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
