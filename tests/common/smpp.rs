//! A small blocking SMPP peer for tests, built on maskd's codec: binds as a carrier, or
//! plays an upstream SMSC. It answers deliver_sm and enquire_link itself and collects what
//! it receives. Every wait is bounded.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use maskd::smpp::codec::{decode, encode};
use maskd::smpp::pdu::*;

pub struct Peer {
    pub s: TcpStream,
    buf: Vec<u8>,
    seq: u32,
    /// deliver_sm / submit_sm received (answered automatically).
    pub messages: Vec<ShortMessage>,
    /// Other PDUs received that nobody waited for.
    pub other: Vec<Pdu>,
    /// The message_id prefix this peer puts in its submit_sm_resp (as an SMSC); its
    /// deliver_sm_resp carries none.
    pub answer_id: String,
    answered: u32,
    pub closed: bool,
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        Peer::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// Connects and binds as `system_id`; the bind must succeed.
    pub fn bound(addr: SocketAddr, kind: BindKind, system_id: &str, password: &str) -> Peer {
        let mut p = Peer::connect(addr);
        assert_eq!(p.bind(kind, system_id, password), status::ESME_ROK);
        p
    }

    pub fn from_stream(s: TcpStream) -> Peer {
        s.set_nodelay(true).unwrap();
        Peer {
            s,
            buf: Vec::new(),
            seq: 0,
            messages: Vec::new(),
            other: Vec::new(),
            answer_id: String::new(),
            answered: 0,
            closed: false,
        }
    }

    pub fn send_pdu(&mut self, pdu: &Pdu) {
        let mut b = Vec::new();
        encode(pdu, &mut b);
        let _ = self.s.write_all(&b);
    }

    pub fn send(&mut self, body: Body) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        self.send_pdu(&Pdu {
            seq,
            status: 0,
            body,
        });
        seq
    }

    /// The next PDU within `timeout`, answering deliver_sm/submit_sm/enquire_link on the way
    /// (those are also returned). `None` on timeout or when the peer closed.
    pub fn recv(&mut self, timeout: Duration) -> Option<Pdu> {
        let deadline = Instant::now() + timeout;
        loop {
            match decode(&self.buf) {
                Ok(Some((pdu, used))) => {
                    self.buf.drain(..used);
                    self.auto_answer(&pdu);
                    return Some(pdu);
                }
                Ok(None) => {}
                Err(e) => panic!("maskd sent an undecodable PDU: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.s
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .unwrap();
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    self.closed = true;
                    return None;
                }
            }
        }
    }

    fn auto_answer(&mut self, pdu: &Pdu) {
        let resp = match &pdu.body {
            // An ESME leaves deliver_sm_resp's message_id empty (SMPP 3.4 §4.6.2), as
            // Kannel does: the peer behaves like the standard, whatever role it plays.
            Body::DeliverSm(m) => {
                self.messages.push(m.clone());
                self.answered += 1;
                Some(Body::DeliverSmResp {
                    message_id: String::new(),
                })
            }
            Body::SubmitSm(m) => {
                self.messages.push(m.clone());
                self.answered += 1;
                Some(Body::SubmitSmResp {
                    message_id: format!("{}{}", self.answer_id, self.answered),
                })
            }
            Body::EnquireLink => Some(Body::EnquireLinkResp),
            Body::Unbind => Some(Body::UnbindResp),
            _ => None,
        };
        if let Some(body) = resp {
            self.send_pdu(&Pdu {
                seq: pdu.seq,
                status: 0,
                body,
            });
        }
    }

    /// Sends `body` and returns the answer with the same sequence number.
    pub fn request(&mut self, body: Body) -> Pdu {
        let seq = self.send(body);
        self.wait_resp(seq)
    }

    pub fn wait_resp(&mut self, seq: u32) -> Pdu {
        if let Some(i) = self
            .other
            .iter()
            .position(|p| p.seq == seq && p.body.command_id() & cmd::RESP != 0)
        {
            return self.other.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(p) = self.recv(Duration::from_secs(1)) {
                if p.seq == seq && p.body.command_id() & cmd::RESP != 0 {
                    return p;
                }
                if !matches!(
                    p.body,
                    Body::DeliverSm(_) | Body::SubmitSm(_) | Body::EnquireLink
                ) {
                    self.other.push(p);
                }
            }
            assert!(
                !self.closed,
                "peer closed while waiting for the answer to {seq}"
            );
        }
        panic!("no answer to {seq}");
    }

    pub fn bind(&mut self, kind: BindKind, system_id: &str, password: &str) -> u32 {
        self.request(Body::Bind(Bind {
            kind,
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            interface_version: 0x34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        }))
        .status
    }

    /// Reads until `n` messages have arrived (bounded).
    pub fn wait_messages(&mut self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.messages.len() < n && Instant::now() < deadline && !self.closed {
            if let Some(p) = self.recv(Duration::from_millis(500)) {
                if !matches!(
                    p.body,
                    Body::DeliverSm(_) | Body::SubmitSm(_) | Body::EnquireLink
                ) {
                    self.other.push(p);
                }
            }
        }
        self.messages.len() >= n
    }
}

pub fn sm(from: &str, to: &str, text: &[u8]) -> ShortMessage {
    ShortMessage {
        source: Address {
            ton: 1,
            npi: 1,
            addr: from.into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: to.into(),
        },
        short_message: text.to_vec(),
        ..ShortMessage::default()
    }
}
