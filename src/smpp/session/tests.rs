//! Protocol tests of the SMPP session in simulated time: a scripted peer on one side, the
//! clock a variable (`Harness::run_until` fires every deadline on the way, as a driver would).

use super::*;
use crate::smpp::pdu::ShortMessage;

const S: Duration = Duration::from_secs(1);

fn cfg() -> Config {
    Config {
        system_id: "maskd".into(),
        window: 2,
        inbound_window: 2,
        enquire_link: 30 * S,
        inactivity: 120 * S,
        response_timeout: 10 * S,
    }
}

fn bind(kind: BindKind) -> Bind {
    Bind {
        kind,
        system_id: "carrier".into(),
        password: "pw".into(),
        system_type: String::new(),
        interface_version: 0x34,
        addr_ton: 0,
        addr_npi: 0,
        address_range: String::new(),
    }
}

/// A session and its clock; the peer's PDUs go in, what maskd writes comes out.
struct Harness {
    s: Session<&'static str>,
    t0: Instant,
    now: Instant,
    peer_seq: u32,
}

impl Harness {
    fn server() -> Harness {
        let t0 = Instant::now();
        Harness {
            s: Session::server(cfg(), t0),
            t0,
            now: t0,
            peer_seq: 100,
        }
    }
    fn bound(kind: BindKind) -> Harness {
        let mut h = Harness::server();
        h.peer(Body::Bind(bind(kind)));
        match h.events().as_slice() {
            [Event::BindRequested { seq, bind }] => h.s.accept_bind(*seq, bind.kind),
            other => panic!("{other:?}"),
        }
        h.sent();
        h
    }
    fn at(&self) -> Duration {
        self.now - self.t0
    }
    /// The peer sends `body`; returns its sequence number.
    fn peer(&mut self, body: Body) -> u32 {
        self.peer_seq += 1;
        let pdu = Pdu {
            seq: self.peer_seq,
            status: 0,
            body,
        };
        self.s.handle_pdu(pdu, self.now);
        self.peer_seq
    }
    fn peer_answers(&mut self, seq: u32, st: u32, body: Body) {
        let pdu = Pdu {
            seq,
            status: st,
            body,
        };
        self.s.handle_pdu(pdu, self.now);
    }
    /// Lets time run to `until`, firing every deadline on the way, as a driver would.
    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        for _ in 0..10_000 {
            match self.s.poll_timeout() {
                Some(t) if t <= end => {
                    assert!(t >= self.now, "a deadline in the past");
                    self.now = t;
                    self.s.handle_timeout(t);
                }
                _ => break,
            }
        }
        self.now = end;
    }
    fn sent(&mut self) -> Vec<Pdu> {
        std::iter::from_fn(|| self.s.poll_transmit()).collect()
    }
    fn events(&mut self) -> Vec<Event<&'static str>> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }
}

fn submit() -> Body {
    Body::SubmitSm(ShortMessage::default())
}

fn statuses(pdus: &[Pdu]) -> Vec<(&'static str, u32)> {
    pdus.iter().map(|p| (p.body.name(), p.status)).collect()
}

#[test]
fn a_server_bind_is_decided_by_the_driver_and_happens_once() {
    let mut h = Harness::server();
    h.peer(submit());
    h.peer(Body::QuerySm {
        message_id: "x".into(),
        source: Default::default(),
    });
    assert_eq!(
        statuses(&h.sent()),
        [
            ("submit_sm_resp", status::ESME_RINVBNDSTS),
            ("generic_nack", status::ESME_RINVBNDSTS)
        ]
    );
    h.peer(Body::Bind(bind(BindKind::Transceiver)));
    let Some(Event::BindRequested { seq, .. }) = h.s.poll_event() else {
        panic!("a bind request");
    };
    h.s.accept_bind(seq, BindKind::Transceiver);
    let resp = h.sent();
    assert_eq!(statuses(&resp), [("bind_transceiver_resp", 0)]);
    match &resp[0].body {
        Body::BindResp {
            system_id, tlvs, ..
        } => {
            assert_eq!(system_id, "maskd");
            assert_eq!(tlvs[0].tag, tag::SC_INTERFACE_VERSION);
        }
        other => panic!("{other:?}"),
    }
    h.peer(Body::Bind(bind(BindKind::Transceiver)));
    assert_eq!(
        statuses(&h.sent()),
        [("bind_transceiver_resp", status::ESME_RALYBND)]
    );
    assert_eq!(h.s.bound(), Some(BindKind::Transceiver));

    // A refused bind closes the connection after its answer.
    let mut h = Harness::server();
    let seq = h.peer(Body::Bind(bind(BindKind::Transmitter)));
    h.events();
    h.s.refuse_bind(seq, BindKind::Transmitter, status::ESME_RINVPASWD);
    assert_eq!(
        statuses(&h.sent()),
        [("bind_transmitter_resp", status::ESME_RINVPASWD)]
    );
    assert!(h.s.is_closed());
    assert!(matches!(
        h.events().as_slice(),
        [Event::Closed(CloseReason::BindRefused)]
    ));
}

#[test]
fn messages_need_a_bind_that_may_send_and_a_free_window_slot() {
    let mut rx = Harness::bound(BindKind::Receiver);
    rx.peer(submit());
    assert_eq!(
        statuses(&rx.sent()),
        [("submit_sm_resp", status::ESME_RINVBNDSTS)]
    );
    let mut h = Harness::bound(BindKind::Transmitter);
    let mut begun = Vec::new();
    for _ in 0..3 {
        h.peer(submit());
        let Some(Event::Message(m)) = h.s.poll_event() else {
            panic!("a message");
        };
        if h.s.begin_message(&m) {
            begun.push(m.seq);
        }
    }
    assert_eq!(begun.len(), 2, "a window of two");
    assert_eq!(
        statuses(&h.sent()),
        [("submit_sm_resp", status::ESME_RMSGQFUL)]
    );
    h.s.answer(begun[0], cmd::SUBMIT_SM, 0, "SM1".into(), h.now);
    let sent = h.sent();
    assert_eq!(
        sent[0].body,
        Body::SubmitSmResp {
            message_id: "SM1".into()
        }
    );
    // The slot is free again.
    h.peer(Body::DataSm(Default::default()));
    let Some(Event::Message(m)) = h.s.poll_event() else {
        panic!("a message");
    };
    assert!(h.s.begin_message(&m));
    // Other requests: enquire_link answered, outbind and query_sm refused.
    h.peer(Body::EnquireLink);
    h.peer(Body::Outbind {
        system_id: "x".into(),
        password: "y".into(),
    });
    h.peer(Body::QuerySm {
        message_id: "SM1".into(),
        source: Default::default(),
    });
    assert_eq!(
        statuses(&h.sent()),
        [
            ("enquire_link_resp", 0),
            ("generic_nack", status::ESME_RINVCMDID),
            ("query_sm_resp", ESME_RQUERYFAIL)
        ]
    );
}

#[test]
fn idle_links_are_probed_and_silent_ones_closed_in_simulated_time() {
    let mut h = Harness::bound(BindKind::Transceiver);
    // Nothing before 30 s; an enquire_link at 30 s exactly, then every 30 s.
    h.run_until(29 * S);
    assert!(h.sent().is_empty());
    h.run_until(30 * S);
    assert_eq!(statuses(&h.sent()), [("enquire_link", 0)]);
    // The peer answers at 31 s: the next probe is 30 s after that.
    let seq = h.s.seq;
    h.now = h.t0 + 31 * S;
    h.peer_answers(seq, 0, Body::EnquireLinkResp);
    h.run_until(60 * S);
    assert!(h.sent().is_empty());
    h.run_until(61 * S);
    assert_eq!(statuses(&h.sent()), [("enquire_link", 0)]);
    // The peer goes silent: closed 120 s after it was last heard (31 s).
    h.run_until(150 * S);
    assert!(!h.s.is_closed());
    h.run_until(151 * S);
    assert!(h.s.is_closed());
    assert!(matches!(
        h.events().last(),
        Some(Event::Closed(CloseReason::Inactive))
    ));
    assert_eq!(h.s.poll_timeout(), None);

    // A connection that never binds is closed after the response timeout.
    let mut h = Harness::server();
    h.run_until(9 * S);
    assert!(!h.s.is_closed());
    h.run_until(10 * S);
    assert!(matches!(
        h.events().as_slice(),
        [Event::Closed(CloseReason::NeverBound)]
    ));
    assert_eq!(h.at(), 10 * S);
}

#[test]
fn requests_keep_to_the_window_and_only_their_own_answer_answers_them() {
    let mut h = Harness::bound(BindKind::Transceiver);
    let m = || Body::DeliverSm(ShortMessage::default());
    let a = h.s.request(m(), "a", h.now);
    h.now += S;
    let b = h.s.request(m(), "b", h.now);
    assert!(!h.s.can_request(), "window of two");
    assert_eq!(h.sent().len(), 2);
    // Another command's answer with the same sequence number answers nothing.
    h.peer_answers(a, 0, Body::EnquireLinkResp);
    assert!(h.events().is_empty());
    h.peer_answers(
        a,
        0,
        Body::DeliverSmResp {
            message_id: String::new(),
        },
    );
    assert!(matches!(
        h.events().as_slice(),
        [Event::Answered { token: "a", .. }]
    ));
    assert!(h.s.can_request());
    // A generic_nack answers any request; b is left to time out 10 s after it was sent.
    let c = h.s.request(m(), "c", h.now);
    h.peer_answers(c, status::ESME_RINVCMDLEN, Body::GenericNack);
    assert!(matches!(
        h.events().as_slice(),
        [Event::Answered { token: "c", pdu }] if pdu.status == status::ESME_RINVCMDLEN
    ));
    h.run_until(10 * S);
    assert!(h.events().is_empty());
    h.run_until(11 * S);
    assert!(matches!(
        h.events().as_slice(),
        [Event::TimedOut { token: "b" }]
    ));
    assert_eq!(b, a + 1);
    // Sequence numbers start over at 1 after 0x7FFFFFFF.
    h.s.seq = MAX_SEQ - 1;
    assert_eq!(h.s.request(m(), "d", h.now), MAX_SEQ);
    h.sent();
    h.peer_answers(
        MAX_SEQ,
        0,
        Body::DeliverSmResp {
            message_id: String::new(),
        },
    );
    assert_eq!(h.s.request(m(), "e", h.now), 1);
}

#[test]
fn shutdown_unbinds_and_answers_what_the_peer_sent_before() {
    let mut h = Harness::bound(BindKind::Transceiver);
    h.peer(submit());
    let Some(Event::Message(m)) = h.s.poll_event() else {
        panic!("a message");
    };
    assert!(h.s.begin_message(&m));
    let pending =
        h.s.request(Body::DeliverSm(Default::default()), "out", h.now);
    h.s.shutdown(h.now);
    let sent = h.sent();
    let unbind = sent.last().unwrap();
    assert_eq!(unbind.body, Body::Unbind);
    assert!(!h.s.can_request(), "no new requests while closing");
    // A message the peer sent before it saw the unbind is still taken.
    h.peer(submit());
    assert!(matches!(h.events().as_slice(), [Event::Message(_)]));
    h.peer_answers(unbind.seq, 0, Body::UnbindResp);
    h.peer_answers(
        pending,
        0,
        Body::DeliverSmResp {
            message_id: String::new(),
        },
    );
    h.events();
    assert!(!h.s.is_closed(), "a message is still being accepted");
    h.s.answer(m.seq, cmd::SUBMIT_SM, 0, "SM9".into(), h.now);
    assert!(h.s.is_closed());
    assert!(matches!(
        h.events().as_slice(),
        [Event::Closed(CloseReason::Unbound)]
    ));
    assert_eq!(statuses(&h.sent()), [("submit_sm_resp", 0)]);

    // A peer that never answers the unbind: closed after the response timeout.
    let mut h = Harness::bound(BindKind::Transceiver);
    h.s.shutdown(h.now);
    h.run_until(9 * S);
    assert!(!h.s.is_closed());
    h.run_until(10 * S);
    assert!(h.s.is_closed());
    // The peer's own unbind is answered and closes.
    let mut h = Harness::bound(BindKind::Receiver);
    h.peer(Body::Unbind);
    assert_eq!(statuses(&h.sent()), [("unbind_resp", 0)]);
    assert!(matches!(
        h.events().as_slice(),
        [Event::Closed(CloseReason::PeerUnbound)]
    ));
    // Unbound, shutdown just closes.
    let mut h = Harness::server();
    h.s.shutdown(h.now);
    assert!(h.s.is_closed() && h.sent().is_empty());
}

#[test]
fn a_client_binds_first_and_takes_what_its_upstream_sends() {
    let t0 = Instant::now();
    let mut s: Session<()> = Session::client(cfg(), bind(BindKind::Transceiver), t0);
    let first = s.poll_transmit().unwrap();
    assert_eq!((first.seq, first.body.name()), (1, "bind_transceiver"));
    assert!(!s.can_request());
    s.handle_pdu(
        Pdu {
            seq: 1,
            status: 0,
            body: Body::BindResp {
                kind: BindKind::Transceiver,
                system_id: "smsc".into(),
                tlvs: vec![],
            },
        },
        t0,
    );
    assert!(matches!(
        s.poll_event(),
        Some(Event::Bound {
            kind: BindKind::Transceiver
        })
    ));
    assert!(s.can_request());
    // A bind from the upstream is refused; its deliver_sm is a message.
    s.handle_pdu(
        Pdu {
            seq: 7,
            status: 0,
            body: Body::Bind(bind(BindKind::Transceiver)),
        },
        t0,
    );
    assert_eq!(
        s.poll_transmit().map(|p| p.status),
        Some(status::ESME_RALYBND)
    );
    s.handle_pdu(
        Pdu {
            seq: 8,
            status: 0,
            body: Body::DeliverSm(Default::default()),
        },
        t0,
    );
    assert!(matches!(s.poll_event(), Some(Event::Message(_))));

    // A refused bind closes.
    let mut s: Session<()> = Session::client(cfg(), bind(BindKind::Transmitter), t0);
    s.poll_transmit();
    s.handle_pdu(
        Pdu {
            seq: 1,
            status: status::ESME_RINVPASWD,
            body: Body::BindResp {
                kind: BindKind::Transmitter,
                system_id: String::new(),
                tlvs: vec![],
            },
        },
        t0,
    );
    assert!(matches!(
        s.poll_event(),
        Some(Event::BindRefused {
            status: status::ESME_RINVPASWD
        })
    ));
    assert!(s.is_closed());
}

#[test]
fn malformed_bytes_get_the_codec_s_answer_and_lost_framing_closes() {
    let mut h = Harness::bound(BindKind::Transceiver);
    let skippable = DecodeError {
        status: status::ESME_RINVTLVLEN,
        command_id: cmd::SUBMIT_SM,
        seq: 5,
        skip: Some(40),
        what: "test",
    };
    h.s.handle_malformed(&skippable, h.now);
    assert_eq!(
        statuses(&h.sent()),
        [("submit_sm_resp", status::ESME_RINVTLVLEN)]
    );
    assert!(!h.s.is_closed());
    let lost = DecodeError {
        skip: None,
        status: status::ESME_RINVCMDLEN,
        ..skippable
    };
    h.s.handle_malformed(&lost, h.now);
    assert_eq!(
        statuses(&h.sent()),
        [("generic_nack", status::ESME_RINVCMDLEN)]
    );
    assert!(h.s.is_closed());
    let waiting = h.s.request(Body::EnquireLink, "late", h.now);
    assert!(waiting > 0);
    assert_eq!(h.s.abandon(), ["late"]);
}
