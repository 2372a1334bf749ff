//! The voice plane's UDP socket as its own thread uses it (issue 17): blocking reads of up
//! to `BATCH` datagrams per system call (`recvmmsg`, waiting for the first only), writes of
//! everything one round produced in as few calls (`sendmmsg`), and a waker: the other
//! threads' events for the plane (TCP messages, callback answers, the stop) are followed by
//! one small datagram from a socket of maskd's own, so the thread sleeps in one place.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sip::b2bua::Datagram;
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

/// Datagrams read or written per system call at most.
pub(super) const BATCH: usize = 16;
/// The largest UDP datagram.
const BUF: usize = 65_536;

/// The socket buffers asked for: with the kernel's default (208 KiB) a plane busy for
/// ~25 ms at 1,000 calls/s (the thread not scheduled on a loaded machine) lost datagrams,
/// and calls ended in 408 when retransmissions were lost too.
const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for `SOCKET_BUFFER` each way; the kernel caps it at `net.core.rmem_max` and
/// `wmem_max`, and a smaller buffer than asked is said once in the log.
pub(super) fn large_buffers(sock: &UdpSocket) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let _ = setsockopt(sock, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(sock, sockopt::SndBuf, &SOCKET_BUFFER);
    // Linux reports twice what it grants (its own bookkeeping included).
    let got = getsockopt(sock, sockopt::RcvBuf).unwrap_or(0) / 2;
    if got < SOCKET_BUFFER {
        tracing::warn!(
            asked = SOCKET_BUFFER,
            got,
            "SIP UDP receive buffer smaller than asked: raise net.core.rmem_max"
        );
    }
}

/// Wakes the plane's thread out of its read. `armed`: a wake-up is on its way, and the
/// thread has not yet looked at its events since.
pub(super) struct Wake {
    /// None when no socket could reach the plane's: the thread then reads with a short
    /// timeout instead (`FALLBACK_MS`).
    sock: Option<(UdpSocket, SocketAddr)>,
    armed: AtomicBool,
}

/// The read timeout when there is no waker: events wait at most this long.
pub(super) const FALLBACK_MS: u64 = 5;

impl Wake {
    /// A socket that sends to the plane's socket bound at `plane` (an unspecified address is
    /// reached on loopback).
    /// Without one (IPv6 off on loopback, say), said in the log: see `FALLBACK_MS`.
    pub(super) fn new(plane: SocketAddr) -> Wake {
        let to = match plane {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.port())
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), a.port())
            }
            // A link-local address keeps its scope.
            a => a,
        };
        let any: SocketAddr = match to {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let made = UdpSocket::bind(any).and_then(|sock| {
            sock.connect(to)?;
            sock.set_nonblocking(true)?;
            let from = sock.local_addr()?;
            Ok((sock, from))
        });
        let sock = match made {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(to = %to, error = %e, "no waker socket for the voice plane: TCP messages and callback answers wait up to 5 ms");
                None
            }
        };
        Wake {
            sock,
            armed: AtomicBool::new(false),
        }
    }

    /// The read timeout the thread uses: a tick, or `FALLBACK_MS` without a waker.
    pub(super) fn read_timeout(&self, tick_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(match self.sock {
            Some(_) => tick_ms,
            None => FALLBACK_MS,
        })
    }

    /// After an event is queued: the thread reads its events before it sleeps again.
    pub(super) fn wake(&self) {
        if !self.armed.swap(true, Ordering::SeqCst) {
            // Lost (the plane's buffer is full): the thread is busy reading anyway, and
            // looks at its events after every read and at least every tick.
            if let Some((sock, _)) = &self.sock {
                let _ = sock.send(&[0]);
            }
        }
    }

    /// Called by the thread before it looks at its events: one queued after this wakes it.
    pub(super) fn disarm(&self) {
        self.armed.swap(false, Ordering::SeqCst);
    }

    /// Whether there is a waker socket.
    pub(super) fn present(&self) -> bool {
        self.sock.is_some()
    }

    /// Whether a datagram came from the waker (not SIP: it carries nothing).
    pub(super) fn is_from(&self, src: SocketAddr) -> bool {
        self.sock.as_ref().is_some_and(|(_, from)| *from == src)
    }
}

/// Buffers and headers for batched reads and writes, allocated once.
pub(super) struct Io {
    bufs: Box<[[u8; BUF]; BATCH]>,
    rx: MultiHeaders<SockaddrStorage>,
    tx: MultiHeaders<SockaddrStorage>,
    meta: [(Option<SocketAddr>, usize); BATCH],
}

fn std_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

impl Io {
    pub(super) fn new() -> Io {
        let bufs: Box<[[u8; BUF]; BATCH]> = vec![[0u8; BUF]; BATCH]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!("BATCH buffers"));
        Io {
            bufs,
            rx: MultiHeaders::preallocate(BATCH, None),
            tx: MultiHeaders::preallocate(BATCH, None),
            meta: [(None, 0); BATCH],
        }
    }

    /// Waits for datagrams on `sock` (up to its read timeout) and reads what is there, up
    /// to `BATCH`: how many. 0 when the timeout passed or the read was interrupted.
    pub(super) fn recv(&mut self, sock: &UdpSocket) -> usize {
        let mut iovs: [[IoSliceMut; 1]; BATCH] = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let Ok(res) = recvmmsg(
            sock.as_raw_fd(),
            &mut self.rx,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) else {
            return 0;
        };
        let mut n = 0;
        for (slot, m) in self.meta.iter_mut().zip(res) {
            *slot = (m.address.as_ref().and_then(std_addr), m.bytes);
            n += 1;
        }
        n
    }

    /// The `i`th datagram of the last read: its source and bytes.
    pub(super) fn get(&self, i: usize) -> (Option<SocketAddr>, &[u8]) {
        let (src, len) = self.meta[i];
        (src, &self.bufs[i][..len.min(BUF)])
    }

    /// Sends every datagram in `items` from `sock`, `BATCH` per call (blocking while the
    /// socket's buffer is full). One that cannot be sent at all (no route, too large) is
    /// dropped, as a network would; SIP's timers retransmit.
    pub(super) fn send(&mut self, sock: &UdpSocket, items: &[Datagram]) {
        let fd = sock.as_raw_fd();
        let mut i = 0;
        let mut interrupted = 0;
        // Each call sends at least one datagram or drops one: bounded by the items.
        while i < items.len() {
            let k = (items.len() - i).min(BATCH);
            let mut iov: [[IoSlice; 1]; BATCH] = std::array::from_fn(|_| [IoSlice::new(&[])]);
            let mut addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
            for (j, d) in items[i..i + k].iter().enumerate() {
                iov[j] = [IoSlice::new(&d.data)];
                addrs[j] = Some(SockaddrStorage::from(d.to.addr));
            }
            let none: [ControlMessage; 0] = [];
            let sent = match sendmmsg(
                fd,
                &mut self.tx,
                iov[..k].iter(),
                &addrs[..k],
                none,
                MsgFlags::empty(),
            ) {
                // (Counting nix's results reads nothing the kernel did not write here.)
                Ok(r) => r.count(),
                // Interrupted before anything went: tried again, a bounded number of times.
                Err(nix::errno::Errno::EINTR) if interrupted < 3 => {
                    interrupted += 1;
                    continue;
                }
                Err(_) => 0,
            };
            i += sent.max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::b2bua::Remote;
    use std::time::Duration;

    #[test]
    fn the_socket_buffers_are_raised_as_far_as_the_kernel_allows() {
        use nix::sys::socket::{getsockopt, sockopt};
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        large_buffers(&sock);
        let max = |f: &str| -> usize {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        // Linux reports twice what it grants.
        let want = |cap: usize| SOCKET_BUFFER.min(cap);
        let rcv = getsockopt(&sock, sockopt::RcvBuf).unwrap() / 2;
        let snd = getsockopt(&sock, sockopt::SndBuf).unwrap() / 2;
        assert!(rcv >= want(max("/proc/sys/net/core/rmem_max")), "{rcv}");
        assert!(snd >= want(max("/proc/sys/net/core/wmem_max")), "{snd}");
    }

    fn out(to: SocketAddr, data: &[u8]) -> Datagram {
        Datagram {
            to: Remote::udp(to),
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_batch_is_read_and_written_and_the_waker_is_told_apart() {
        let plane = UdpSocket::bind("127.0.0.1:0").unwrap();
        plane
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let wake = Wake::new(plane.local_addr().unwrap());
        for i in 0..20u8 {
            peer.send_to(&[i; 3], plane.local_addr().unwrap()).unwrap();
        }
        wake.wake();
        wake.wake(); // armed: no second datagram
        let mut io = Io::new();
        let mut got = Vec::new();
        let mut wakes = 0;
        for _ in 0..10 {
            let n = io.recv(&plane);
            assert!(n <= BATCH);
            for i in 0..n {
                let (src, data) = io.get(i);
                let src = src.unwrap();
                if wake.is_from(src) {
                    wakes += 1;
                } else {
                    assert_eq!(src, peer.local_addr().unwrap());
                    got.push(data.to_vec());
                }
            }
            if got.len() == 20 && wakes == 1 {
                break;
            }
        }
        assert_eq!(wakes, 1);
        assert_eq!(got, (0..20u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
        // Nothing more: the read times out with 0.
        assert_eq!(io.recv(&plane), 0);
        wake.disarm();
        wake.wake();
        assert_eq!(io.recv(&plane), 1);

        // 40 datagrams out in batches, in order.
        let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 5]).collect();
        let to = peer.local_addr().unwrap();
        let items: Vec<Datagram> = msgs.iter().map(|m| out(to, m)).collect();
        io.send(&plane, &items);
        let mut b = [0u8; 16];
        for m in &msgs {
            let (n, from) = peer.recv_from(&mut b).unwrap();
            assert_eq!(from, plane.local_addr().unwrap());
            assert_eq!(&b[..n], m.as_slice());
        }
    }

    #[test]
    fn a_datagram_that_cannot_be_sent_is_dropped_and_the_rest_go() {
        let plane = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = peer.local_addr().unwrap();
        let too_large = vec![7u8; 70_000]; // EMSGSIZE: over UDP's 65,507 bytes
        let items = vec![
            out(to, b"one"),
            out(to, &too_large),
            out(to, b"two"),
            out(to, &too_large),
        ];
        Io::new().send(&plane, &items);
        let mut b = [0u8; 16];
        for want in [&b"one"[..], b"two"] {
            let (n, _) = peer.recv_from(&mut b).unwrap();
            assert_eq!(&b[..n], want);
        }
    }

    #[test]
    fn an_unspecified_plane_address_is_woken_on_loopback() {
        let plane = UdpSocket::bind("0.0.0.0:0").unwrap();
        plane
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let wake = Wake::new(plane.local_addr().unwrap());
        wake.wake();
        let mut io = Io::new();
        assert_eq!(io.recv(&plane), 1);
        assert!(wake.is_from(io.get(0).0.unwrap()));
    }
}
