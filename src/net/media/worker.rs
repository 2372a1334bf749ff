//! One relay thread: an epoll (mio) loop over the sockets of the calls given to it. A
//! readable socket is drained with `recvmmsg`, each datagram is routed by its stream
//! (`media::stream`), RTCP is scrubbed, and what goes out is sent with `sendmmsg`, batched
//! per outgoing socket. Every half second it flushes its counters to the metrics and looks
//! for calls with no media for `media.timeout`.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

use super::recorder::{Batch, Recordings};
use super::{Control, Shared};
use crate::clock::Millis;
use crate::media::stream::{Drop as Dropped, Stream};
use crate::media::{record::Channel, rtcp, Side, StreamPorts};

pub(super) const WAKER: mio::Token = mio::Token(usize::MAX);
/// Datagrams read or written per system call at most.
const BATCH: usize = 16;
/// Larger than any RTP packet on an Ethernet path.
const BUF: usize = 2048;
/// How often counters are flushed and media timeouts checked.
const HOUSEKEEPING_MS: u64 = 500;
/// The longest a control message waits when no packet arrives (none wakes a thread that
/// relays calls; one with no call is woken, `Worker::park`).
pub(super) const CONTROL_MS: u64 = 20;

struct Sock {
    sock: mio::net::UdpSocket,
    port: u16,
    rtcp: bool,
    /// The call, stream index and side it carries; `None` while idle between calls.
    owner: Option<(u64, usize, Side)>,
}

struct StreamEntry {
    stream: Stream,
    /// Socket tokens, `[side][rtcp]`.
    tokens: [[usize; 2]; 2],
    /// The CNAME written into RTCP that came from each side (random, per stream and side).
    cname: [Vec<u8>; 2],
}

struct CallEntry {
    streams: Vec<StreamEntry>,
    ports: Vec<StreamPorts>,
    answered: bool,
    last_media: u64,
    held: bool,
    timed_out: bool,
    recorded: bool,
}

impl CallEntry {
    fn on_hold(&self) -> bool {
        self.streams.iter().any(|s| s.stream.on_hold())
    }
}

/// Counters kept locally and added to the metrics in one go.
#[derive(Default)]
struct Stats {
    packets: [[u64; 2]; 2],
    bytes: [u64; 2],
    drops: [u64; 8],
    rtcp_removed: u64,
}

/// Buffers of the batched system calls (made on the thread: the headers hold pointers).
struct Io {
    bufs: Box<[[u8; BUF]; BATCH]>,
    meta: [(Option<SocketAddr>, usize); BATCH],
    rx: MultiHeaders<SockaddrStorage>,
    tx: MultiHeaders<SockaddrStorage>,
    /// What goes out this round: bytes, and per datagram (token, to, start, len).
    out: Vec<u8>,
    sends: Vec<(usize, SocketAddr, usize, usize)>,
}

pub(super) struct Worker {
    /// This thread's index (the port pool remembers which thread holds a port's sockets).
    me: usize,
    poll: mio::Poll,
    rx: mpsc::Receiver<Control>,
    /// Set while the thread sleeps with no call, until a message's sender clears it and
    /// wakes the thread.
    parked: Arc<AtomicBool>,
    shared: Arc<Shared>,
    clock: Millis,
    timeout_ms: u64,
    timeouts: tokio::sync::mpsc::UnboundedSender<u64>,
    recordings: Recordings,
    /// By token.
    socks: Vec<Sock>,
    /// The idle sockets' tokens (RTP, RTCP) by port.
    idle: HashMap<u16, [usize; 2], foldhash::fast::RandomState>,
    calls: HashMap<u64, CallEntry, foldhash::fast::RandomState>,
    stats: Stats,
    /// Copies of recorded RTP not yet handed to the recorder, and when it last got some.
    recorded: Batch,
    recorded_at: u64,
}

fn std_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

fn random_cname() -> Vec<u8> {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    let mut s = Vec::with_capacity(16);
    for x in b {
        s.extend_from_slice(format!("{x:02x}").as_bytes());
    }
    s
}

/// Reads up to `BATCH` datagrams; their sources and lengths go to `io.meta`.
fn recv_batch(fd: i32, io: &mut Io) -> nix::Result<usize> {
    let mut iovs: [[IoSliceMut; 1]; BATCH] = io.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
    let res = recvmmsg(
        fd,
        &mut io.rx,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    let mut n = 0;
    for (slot, m) in io.meta.iter_mut().zip(res) {
        *slot = (m.address.as_ref().and_then(std_addr), m.bytes);
        n += 1;
    }
    Ok(n)
}

/// Sends `items` (to, start, len in `data`) from `fd`; returns how many went.
fn send_batch(
    fd: i32,
    hdrs: &mut MultiHeaders<SockaddrStorage>,
    data: &[u8],
    items: &[(SocketAddr, usize, usize)],
) -> usize {
    let k = items.len().min(BATCH);
    let mut iov: [[IoSlice; 1]; BATCH] = std::array::from_fn(|_| [IoSlice::new(&[])]);
    let mut addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    for (i, (to, start, len)) in items.iter().take(k).enumerate() {
        iov[i] = [IoSlice::new(data.get(*start..start + len).unwrap_or(&[]))];
        addrs[i] = Some(SockaddrStorage::from(*to));
    }
    let none: [ControlMessage; 0] = [];
    match sendmmsg(
        fd,
        hdrs,
        iov[..k].iter(),
        &addrs[..k],
        none,
        MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(r) => r.count(),
        Err(_) => 0,
    }
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        me: usize,
        poll: mio::Poll,
        rx: mpsc::Receiver<Control>,
        parked: Arc<AtomicBool>,
        shared: Arc<Shared>,
        clock: Millis,
        timeout_ms: u64,
        timeouts: tokio::sync::mpsc::UnboundedSender<u64>,
        recordings: Recordings,
    ) -> Worker {
        Worker {
            me,
            poll,
            rx,
            parked,
            shared,
            clock,
            timeout_ms,
            timeouts,
            recordings,
            socks: Vec::new(),
            idle: HashMap::default(),
            calls: HashMap::default(),
            stats: Stats::default(),
            recorded: Batch::default(),
            recorded_at: 0,
        }
    }

    pub(super) fn run(mut self) {
        let mut io = Io {
            bufs: Box::new([[0u8; BUF]; BATCH]),
            meta: [(None, 0); BATCH],
            rx: MultiHeaders::preallocate(BATCH, None),
            tx: MultiHeaders::preallocate(BATCH, None),
            out: Vec::with_capacity(BATCH * BUF),
            sends: Vec::with_capacity(BATCH),
        };
        let mut events = mio::Events::with_capacity(256);
        let mut next_housekeeping = self.clock.now() + HOUSEKEEPING_MS;
        loop {
            let wait = match self.calls.is_empty() {
                true => match self.park() {
                    Some(parked) => parked,
                    None => {
                        self.shutdown();
                        return;
                    }
                },
                false => Some(Duration::from_millis(CONTROL_MS)),
            };
            if let Err(e) = self.poll.poll(&mut events, wait) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media relay poll failed");
                    return;
                }
            }
            // Messages first: a packet that arrived after its stream was added or its peer
            // announced finds them applied.
            if !self.control() {
                self.shutdown();
                return;
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                self.readable(ev.token().0, &mut io);
            }
            // Recorded RTP goes to the recorder every 20 ms (or 1,024 packets), not every
            // round: each hand-over wakes its thread.
            let now = self.clock.now();
            if self.recorded.len() >= 1024
                || (now >= self.recorded_at + 20 && !self.recorded.is_empty())
            {
                self.flush_recorded(now);
            }
            let now = self.clock.now();
            if now >= next_housekeeping {
                next_housekeeping = now + HOUSEKEEPING_MS;
                self.housekeeping(now);
            }
        }
    }

    /// With no call nothing is due on a clock: what was counted and recorded is handed over,
    /// and the thread sleeps until a message's sender wakes it (`Relay::send`) or a packet
    /// comes. The flag is set first and the queue looked at once more after it, so a message
    /// queued meanwhile is either found here or its sender finds the flag (both are
    /// read-modify-writes on it: whichever comes second sees the first). The poll's wait:
    /// none (until woken), or `CONTROL_MS` when a message brought a call; `None` on Stop.
    fn park(&mut self) -> Option<Option<Duration>> {
        if !self.recorded.is_empty() {
            self.flush_recorded(self.clock.now());
        }
        self.flush_stats();
        self.parked.swap(true, Ordering::SeqCst);
        if !self.control() {
            return None;
        }
        if self.calls.is_empty() {
            return Some(None);
        }
        self.parked.store(false, Ordering::SeqCst);
        Some(Some(Duration::from_millis(CONTROL_MS)))
    }

    /// Applies queued control messages; false on Stop.
    fn control(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Control::Stop) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return true,
                Ok(c) => self.apply(c),
            }
        }
    }

    fn apply(&mut self, c: Control) {
        let now = self.clock.now();
        match c {
            Control::Add {
                call,
                ports,
                sockets,
            } => {
                let entry = self.calls.entry(call).or_insert_with(|| CallEntry {
                    streams: Vec::new(),
                    ports: Vec::new(),
                    answered: false,
                    last_media: now,
                    held: false,
                    timed_out: false,
                    recorded: false,
                });
                let index = entry.streams.len();
                entry.ports.push(ports);
                // A side whose sockets are missing keeps a token no socket has: what would
                // go out through it is dropped (counted as send_failed), never sent from
                // another stream's socket.
                let mut tokens = [[usize::MAX; 2]; 2];
                for ((side, port), pair) in [(Side::A, ports.a), (Side::B, ports.b)]
                    .into_iter()
                    .zip(sockets)
                {
                    let t = match pair {
                        Some(pair) => self.register(port, pair),
                        None => match self.idle.remove(&port) {
                            Some(t) => t,
                            None => {
                                // The pool said this thread holds it; it does not (a bug).
                                tracing::error!(port, "media port not held by its relay thread");
                                continue;
                            }
                        },
                    };
                    for tok in t {
                        if let Some(s) = self.socks.get_mut(tok) {
                            s.owner = Some((call, index, side));
                        }
                    }
                    tokens[side.index()] = t;
                }
                // (Looked up again: `self.register` borrowed all of `self` above.)
                if let Some(entry) = self.calls.get_mut(&call) {
                    entry.streams.push(StreamEntry {
                        stream: Stream::default(),
                        tokens,
                        cname: [random_cname(), random_cname()],
                    });
                }
                crate::metrics::get().media.streams.inc();
            }
            Control::Update {
                call,
                index,
                side,
                peer,
            } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    if let Some(s) = c.streams.get_mut(index) {
                        s.stream.update(side, peer);
                    }
                    let held = c.on_hold();
                    if held != c.held {
                        // The timeout counts from the end of a hold, not from before it.
                        c.held = held;
                        c.last_media = now;
                    }
                }
            }
            Control::Answered { call, record } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.answered = true;
                    c.last_media = now;
                    if let Some(spec) = record {
                        c.recorded = true;
                        self.recordings.start(call, spec, now);
                    }
                }
            }
            Control::Release { call } => self.release(call, now),
            Control::Stop => {}
        }
    }

    /// Registers a newly bound port's RTP and RTCP sockets; returns their tokens.
    fn register(&mut self, port: u16, pair: [mio::net::UdpSocket; 2]) -> [usize; 2] {
        let mut tokens = [0usize; 2];
        for (i, mut sock) in pair.into_iter().enumerate() {
            let t = self.socks.len();
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut sock, mio::Token(t), mio::Interest::READABLE)
            {
                tracing::error!(error = %e, "media socket registration failed");
            }
            self.socks.push(Sock {
                sock,
                port,
                rtcp: i == 1,
                owner: None,
            });
            tokens[i] = t;
        }
        tokens
    }

    fn release(&mut self, call: u64, now: u64) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        // The sockets stay open and registered, idle, for the port's next call.
        for s in &c.streams {
            for pair in s.tokens {
                let Some(port) = self.socks.get_mut(pair[0]).map(|s| s.port) else {
                    continue;
                };
                for t in pair {
                    if let Some(sock) = self.socks.get_mut(t) {
                        sock.owner = None;
                    }
                }
                self.idle.insert(port, pair);
            }
        }
        crate::metrics::get()
            .media
            .streams
            .sub(c.streams.len() as i64);
        self.shared.give_back(&c.ports, self.me);
        if c.recorded {
            // Its last packets first: the recorder finishes the file at End.
            self.flush_recorded(now);
            self.recordings.end(call, now);
        }
    }

    fn shutdown(&mut self) {
        let now = self.clock.now();
        let calls: Vec<u64> = self.calls.keys().copied().collect();
        for call in calls {
            self.release(call, now);
        }
        self.flush_stats();
    }

    /// Hands the recorded RTP gathered so far to the recorder (counted as dropped if its
    /// queue is full).
    fn flush_recorded(&mut self, now: u64) {
        self.recorded_at = now;
        if self.recorded.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.recorded);
        let n = batch.len() as u64;
        if !self.recordings.packets(batch) {
            self.stats.drops[6] += n;
        }
    }

    /// Drains one socket and forwards what it read.
    fn readable(&mut self, token: usize, io: &mut Io) {
        loop {
            let Some(sock) = self.socks.get(token) else {
                return;
            };
            let fd = sock.sock.as_raw_fd();
            let (owner, on_rtcp) = (sock.owner, sock.rtcp);
            let n = match recv_batch(fd, io) {
                Ok(n) => n,
                Err(_) => return, // EAGAIN: drained.
            };
            if n == 0 {
                return;
            }
            let Some((call_id, index, side)) = owner else {
                // An idle port: late packets of its last call, or a stranger.
                self.stats.drops[7] += n as u64;
                if n < BATCH {
                    return;
                }
                continue;
            };
            let now = self.clock.now();
            io.out.clear();
            io.sends.clear();
            let Some(call) = self.calls.get_mut(&call_id) else {
                return;
            };
            let recorded = call.recorded;
            for i in 0..n {
                let (Some(src), len) = io.meta[i] else {
                    continue;
                };
                let data = &io.bufs[i][..len.min(BUF)];
                let Some(st) = call.streams.get_mut(index) else {
                    break;
                };
                match st.stream.route(side, on_rtcp, src, data) {
                    Ok(f) => {
                        let out_token = st.tokens[f.side.index()][f.rtcp_socket as usize];
                        let start = io.out.len();
                        if f.rtcp && !st.stream.srtp(side) {
                            match rtcp::scrub(data, &st.cname[side.index()], &mut io.out) {
                                Ok(s) => self.stats.rtcp_removed += s.removed as u64,
                                Err(_) => {
                                    io.out.truncate(start);
                                    self.stats.drops[4] += 1;
                                    continue;
                                }
                            }
                            if io.out.len() == start {
                                continue;
                            }
                        } else {
                            io.out.extend_from_slice(data);
                            call.last_media = now;
                            if recorded {
                                self.recorded.push(call_id, channel(side), now, data);
                            }
                        }
                        let len = io.out.len() - start;
                        self.stats.packets[side.index()][f.rtcp as usize] += 1;
                        self.stats.bytes[side.index()] += len as u64;
                        io.sends.push((out_token, f.to, start, len));
                    }
                    Err(d) => self.stats.drops[drop_index(d)] += 1,
                }
            }
            self.flush_sends(io);
            // Fewer than a full batch: the socket was empty when read; a datagram arriving
            // later raises a new edge. (Saves the EAGAIN call per wake-up.)
            if n < BATCH {
                return;
            }
        }
    }

    /// Sends this round's datagrams, one `sendmmsg` per run of the same outgoing socket.
    fn flush_sends(&mut self, io: &mut Io) {
        let mut i = 0;
        let mut items: Vec<(SocketAddr, usize, usize)> = Vec::with_capacity(BATCH);
        while i < io.sends.len() {
            let token = io.sends[i].0;
            items.clear();
            while i < io.sends.len() && io.sends[i].0 == token && items.len() < BATCH {
                let (_, to, start, len) = io.sends[i];
                items.push((to, start, len));
                i += 1;
            }
            let Some(sock) = self.socks.get(token) else {
                self.stats.drops[5] += items.len() as u64;
                continue;
            };
            let sent = send_batch(sock.sock.as_raw_fd(), &mut io.tx, &io.out, &items);
            self.stats.drops[5] += (items.len() - sent.min(items.len())) as u64;
        }
    }

    fn housekeeping(&mut self, now: u64) {
        self.flush_stats();
        for (id, c) in self.calls.iter_mut() {
            if c.answered
                && !c.timed_out
                && !c.held
                && now.saturating_sub(c.last_media) >= self.timeout_ms
            {
                c.timed_out = true;
                crate::metrics::get().media.timeouts.inc();
                let _ = self.timeouts.send(*id);
            }
        }
        self.recordings.tick(now);
    }

    fn flush_stats(&mut self) {
        let m = &crate::metrics::get().media;
        let s = std::mem::take(&mut self.stats);
        for (side, dir) in [(0, "a_to_b"), (1, "b_to_a")] {
            for (kind, label) in [(0, "rtp"), (1, "rtcp")] {
                if s.packets[side][kind] > 0 {
                    m.packets
                        .with_label_values(&[dir, label])
                        .inc_by(s.packets[side][kind]);
                }
            }
            if s.bytes[side] > 0 {
                m.bytes.with_label_values(&[dir]).inc_by(s.bytes[side]);
            }
        }
        for (i, n) in s.drops.iter().enumerate() {
            if *n > 0 {
                m.drops
                    .with_label_values(&[crate::metrics::media::DROP_REASONS[i]])
                    .inc_by(*n);
            }
        }
        if s.rtcp_removed > 0 {
            m.rtcp_scrubbed.inc_by(s.rtcp_removed);
        }
    }
}

fn channel(side: Side) -> Channel {
    match side {
        Side::A => Channel::A,
        Side::B => Channel::B,
    }
}

fn drop_index(d: Dropped) -> usize {
    match d {
        Dropped::NoDestination => 0,
        Dropped::WrongSource => 1,
        Dropped::Malformed => 2,
        Dropped::Held => 3,
    }
}
