//! The four RFC 3261 §17 transaction state machines, sans-IO: events in (a message, or the
//! time passing), actions out (bytes to send, what the transaction user learns), and the
//! next instant the machine wants to be woken. Time is milliseconds passed in by the
//! caller; nothing here reads a clock or touches a socket. Over a reliable transport the
//! retransmission timers (A, E, G) are off and the wait timers (D, I, J, K) are zero.

/// RFC 3261 timer base values, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub t1: u64,
    pub t2: u64,
    pub t4: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: 500,
            t2: 4_000,
            t4: 5_000,
        }
    }
}

/// What a transaction tells its user or asks of the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the peer (first send or retransmission).
    Transmit(Vec<u8>),
    /// A response reached a client transaction (passed up once per distinct status).
    Response(u16),
    /// A retransmitted request reached a server transaction (absorbed; for counters).
    Retransmission,
    /// Timer B, F or H fired: no answer (client) or no ACK (server).
    Timeout,
    /// The transaction is over and may be dropped.
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A client transaction (§17.1): INVITE (timers A, B, D) or non-INVITE (E, F, K).
#[derive(Debug)]
pub struct ClientTx {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ClientState,
    request: Vec<u8>,
    /// ACK for a non-2xx final answer to an INVITE, set by the user via `ack`.
    ack: Option<Vec<u8>>,
    retransmit_at: Option<u64>,
    interval: u64,
    deadline: Option<u64>,
    last_status: u16,
}

impl ClientTx {
    /// Starts the transaction: the request goes out at once.
    pub fn start(
        invite: bool,
        request: Vec<u8>,
        reliable: bool,
        timers: Timers,
        now: u64,
        out: &mut Vec<Action>,
    ) -> ClientTx {
        out.push(Action::Transmit(request.clone()));
        ClientTx {
            invite,
            reliable,
            timers,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            request,
            ack: None,
            retransmit_at: (!reliable).then_some(now + timers.t1),
            interval: timers.t1,
            deadline: Some(now + 64 * timers.t1),
            last_status: 0,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// A response with this transaction's branch arrived.
    pub fn on_response(&mut self, status: u16, now: u64, out: &mut Vec<Action>) {
        use ClientState::*;
        match (self.state, status) {
            (Calling | Trying | Proceeding, 100..=199) => {
                if self.state != Proceeding || status != self.last_status {
                    out.push(Action::Response(status));
                }
                self.state = Proceeding;
                self.last_status = status;
                if self.invite {
                    // Timer A stops once the INVITE is answered at all, and Timer B has no
                    // effect in Proceeding (§17.1.1.2): a phone may ring for minutes, and
                    // how long to let it is the transaction user's choice.
                    self.retransmit_at = None;
                    self.deadline = None;
                } else if !self.reliable {
                    // Non-INVITE keeps retransmitting, at T2 (§17.1.2.2).
                    self.interval = self.timers.t2;
                    self.retransmit_at = Some(now + self.timers.t2);
                }
            }
            (Calling | Proceeding, 200..=299) if self.invite => {
                // The 2xx goes up; the ACK is end to end (the user's), the transaction ends.
                out.push(Action::Response(status));
                self.finish(out);
            }
            (Calling | Trying | Proceeding, 200..=699) => {
                out.push(Action::Response(status));
                self.last_status = status;
                self.state = Completed;
                self.retransmit_at = None;
                // Never sent again: Completed only waits (timer D or K) for copies of the
                // answer, which an INVITE's ACK (kept in `ack`) answers.
                self.request = Vec::new();
                let wait = match (self.invite, self.reliable) {
                    (_, true) => 0,
                    (true, false) => 32_000.max(64 * self.timers.t1), // timer D
                    (false, false) => self.timers.t4,                 // timer K
                };
                self.deadline = Some(now + wait);
                if wait == 0 && !self.invite {
                    self.finish(out);
                }
            }
            (Completed, 300..=699) if self.invite => {
                // A retransmitted final answer: resend the ACK (§17.1.1.2).
                if let Some(ack) = &self.ack {
                    out.push(Action::Transmit(ack.clone()));
                }
            }
            _ => {}
        }
    }

    /// The ACK for a 3xx–6xx answer to this INVITE: sent now and on each retransmission of
    /// that answer while Completed.
    pub fn ack(&mut self, ack: Vec<u8>, out: &mut Vec<Action>) {
        out.push(Action::Transmit(ack.clone()));
        self.ack = Some(ack);
        if self.reliable {
            self.finish(out);
        }
    }

    /// The transport could not send (e.g. ICMP unreachable, TCP reset): §17.1.4.
    pub fn on_transport_error(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.state, ClientState::Completed | ClientState::Terminated) {
            out.push(Action::Timeout);
        }
        self.finish(out);
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.retransmit_at, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn on_timer(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.state == ClientState::Terminated {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            if self.state != ClientState::Completed {
                out.push(Action::Timeout); // timer B or F
            }
            self.finish(out); // or timer D / K
            return;
        }
        if let Some(at) = self.retransmit_at.filter(|at| now >= *at) {
            out.push(Action::Transmit(self.request.clone()));
            self.interval = if self.invite {
                self.interval * 2
            } else {
                (self.interval * 2).min(self.timers.t2)
            };
            self.retransmit_at = Some(at + self.interval);
        }
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        if self.state != ClientState::Terminated {
            self.state = ClientState::Terminated;
            self.request = Vec::new();
            self.retransmit_at = None;
            self.deadline = None;
            out.push(Action::Terminated);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    Trying,
    Proceeding,
    /// A 2xx to an INVITE went out: retransmissions of the INVITE are absorbed until
    /// Timer L (64×T1), RFC 6026 §7.1, so a late copy never starts a second call.
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// A server transaction (§17.2): INVITE (timers G, H, I) or non-INVITE (J).
#[derive(Debug)]
pub struct ServerTx {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ServerState,
    last_response: Option<Vec<u8>>,
    retransmit_at: Option<u64>,
    interval: u64,
    deadline: Option<u64>,
}

impl ServerTx {
    /// A new request arrived. An INVITE server transaction is in Proceeding (the user sends
    /// 100 Trying at once); a non-INVITE one in Trying.
    pub fn new(invite: bool, reliable: bool, timers: Timers) -> ServerTx {
        ServerTx {
            invite,
            reliable,
            timers,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last_response: None,
            retransmit_at: None,
            interval: timers.t1,
            deadline: None,
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The same request again (same branch): resend the last response, if any.
    pub fn on_request_retransmission(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Retransmission);
        if matches!(self.state, ServerState::Proceeding | ServerState::Completed) {
            if let Some(r) = &self.last_response {
                out.push(Action::Transmit(r.clone()));
            }
        }
    }

    /// The user answers with `status`, encoded as `bytes`.
    pub fn respond(&mut self, status: u16, bytes: Vec<u8>, now: u64, out: &mut Vec<Action>) {
        use ServerState::*;
        if !matches!(self.state, Trying | Proceeding) {
            return;
        }
        if self.invite && (200..300).contains(&status) {
            // Never sent again by the transaction (below): no copy kept.
            out.push(Action::Transmit(bytes));
        } else {
            out.push(Action::Transmit(bytes.clone()));
            self.last_response = Some(bytes);
        }
        match status {
            100..=199 => self.state = Proceeding,
            200..=299 if self.invite => {
                // 2xx to INVITE: the user retransmits the 2xx until the ACK arrives
                // (§13.3.1.4); the transaction only absorbs INVITE copies (RFC 6026), so
                // it does not keep the answer for the 32 s of timer L.
                self.last_response = None;
                self.state = Accepted;
                self.deadline = Some(now + 64 * self.timers.t1); // timer L
            }
            _ => {
                self.state = Completed;
                if self.invite {
                    if !self.reliable {
                        self.retransmit_at = Some(now + self.timers.t1); // timer G
                    }
                    self.deadline = Some(now + 64 * self.timers.t1); // timer H
                } else {
                    let j = if self.reliable {
                        0
                    } else {
                        64 * self.timers.t1
                    };
                    if j == 0 {
                        self.finish(out);
                    } else {
                        self.deadline = Some(now + j); // timer J
                    }
                }
            }
        }
    }

    /// An ACK for a 3xx–6xx answer to this INVITE.
    pub fn on_ack(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.invite && self.state == ServerState::Completed {
            self.state = ServerState::Confirmed;
            self.retransmit_at = None;
            let i = if self.reliable { 0 } else { self.timers.t4 }; // timer I
            if i == 0 {
                self.finish(out);
            } else {
                self.deadline = Some(now + i);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.retransmit_at, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn on_timer(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.state == ServerState::Terminated {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            if self.state == ServerState::Completed && self.invite {
                out.push(Action::Timeout); // timer H: no ACK
            }
            self.finish(out); // or timer I / J / L
            return;
        }
        if let Some(at) = self.retransmit_at.filter(|at| now >= *at) {
            if let Some(r) = &self.last_response {
                out.push(Action::Transmit(r.clone()));
            }
            self.interval = (self.interval * 2).min(self.timers.t2);
            self.retransmit_at = Some(at + self.interval);
        }
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        if self.state != ServerState::Terminated {
            self.state = ServerState::Terminated;
            self.retransmit_at = None;
            self.deadline = None;
            out.push(Action::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timers = Timers {
        t1: 500,
        t2: 4_000,
        t4: 5_000,
    };

    fn sends(out: &[Action]) -> usize {
        out.iter()
            .filter(|a| matches!(a, Action::Transmit(_)))
            .count()
    }

    /// Drives a machine's timers from `from` to `to` (ms), waking exactly when it asks.
    fn run_client(tx: &mut ClientTx, from: u64, to: u64) -> Vec<(u64, Action)> {
        let mut log = Vec::new();
        let mut now = from;
        for _ in 0..1000 {
            let Some(at) = tx.poll_timeout() else { break };
            if at > to {
                break;
            }
            now = now.max(at);
            let mut out = Vec::new();
            tx.on_timer(now, &mut out);
            log.extend(out.into_iter().map(|a| (now, a)));
        }
        log
    }

    #[test]
    fn finished_transactions_keep_no_bytes_they_will_not_send() {
        // A non-INVITE client transaction with its answer waits out timer K: its request is
        // never sent again.
        let mut out = Vec::new();
        let mut tx = ClientTx::start(false, b"BYE".to_vec(), false, T, 0, &mut out);
        tx.on_response(200, 10, &mut out);
        assert_eq!(tx.state(), ClientState::Completed);
        assert!(tx.request.is_empty());
        out.clear();
        tx.on_timer(600, &mut out);
        assert_eq!(sends(&out), 0);
        // An INVITE server transaction that sent a 2xx only absorbs copies (timer L, 32 s):
        // it does not hold the answer.
        let mut tx = ServerTx::new(true, false, T);
        tx.respond(200, b"SIP/2.0 200 OK".to_vec(), 0, &mut out);
        assert_eq!(tx.state(), ServerState::Accepted);
        assert!(tx.last_response.is_none());
        out.clear();
        tx.on_request_retransmission(&mut out);
        assert_eq!(out, vec![Action::Retransmission]);
    }

    #[test]
    fn invite_client_retransmits_on_timer_a_and_times_out_on_b() {
        let mut out = Vec::new();
        let mut tx = ClientTx::start(true, b"INVITE".to_vec(), false, T, 0, &mut out);
        assert_eq!(sends(&out), 1);
        let log = run_client(&mut tx, 0, 40_000);
        let at: Vec<u64> = log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Transmit(_)))
            .map(|(t, _)| *t)
            .collect();
        // A doubles from T1: 500, 1500, 3500, 7500, 15500, 31500 (then B at 32000).
        assert_eq!(at, vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]);
        assert!(log
            .iter()
            .any(|(t, a)| *t == 32_000 && *a == Action::Timeout));
        assert_eq!(tx.state(), ClientState::Terminated);
    }

    #[test]
    fn invite_client_lossy_path_then_ringing_and_busy() {
        let mut out = Vec::new();
        let mut tx = ClientTx::start(true, b"INVITE".to_vec(), false, T, 0, &mut out);
        let log = run_client(&mut tx, 0, 1_600); // first INVITE and one retransmission lost
        assert_eq!(
            log.iter()
                .filter(|(_, a)| matches!(a, Action::Transmit(_)))
                .count(),
            2
        );
        let mut out = Vec::new();
        tx.on_response(180, 1_700, &mut out);
        tx.on_response(180, 1_800, &mut out); // retransmitted 180: not passed up again
        assert_eq!(out, vec![Action::Response(180)]);
        assert!(
            run_client(&mut tx, 1_800, 20_000)
                .iter()
                .all(|(_, a)| !matches!(a, Action::Transmit(_))),
            "A stops after 1xx"
        );
        let mut out = Vec::new();
        tx.on_response(486, 20_000, &mut out);
        tx.ack(b"ACK".to_vec(), &mut out);
        tx.on_response(486, 20_500, &mut out); // the 486 again: ACK again, not passed up
        assert_eq!(
            out.iter().filter(|a| **a == Action::Response(486)).count(),
            1
        );
        assert_eq!(sends(&out), 2);
        assert_eq!(tx.state(), ClientState::Completed);
        let log = run_client(&mut tx, 20_500, 60_000);
        assert!(
            log.iter()
                .any(|(t, a)| *t == 52_000 && *a == Action::Terminated),
            "timer D 32 s"
        );
    }

    #[test]
    fn non_invite_client_caps_at_t2_and_waits_t4() {
        let mut out = Vec::new();
        let mut tx = ClientTx::start(false, b"BYE".to_vec(), false, T, 0, &mut out);
        let log = run_client(&mut tx, 0, 10_000);
        let at: Vec<u64> = log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Transmit(_)))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(at, vec![500, 1_500, 3_500, 7_500]); // 500,1000,2000,4000 then capped at T2
        let mut out = Vec::new();
        tx.on_response(200, 10_000, &mut out);
        assert_eq!(out, vec![Action::Response(200)]);
        let log = run_client(&mut tx, 10_000, 20_000);
        assert!(
            log.iter()
                .any(|(t, a)| *t == 15_000 && *a == Action::Terminated),
            "timer K = T4"
        );
        // Timer F when nothing answers.
        let mut out = Vec::new();
        let mut tx = ClientTx::start(false, b"BYE".to_vec(), false, T, 0, &mut out);
        let log = run_client(&mut tx, 0, 40_000);
        assert!(log
            .iter()
            .any(|(t, a)| *t == 32_000 && *a == Action::Timeout));
    }

    #[test]
    fn reliable_transport_has_no_retransmissions() {
        let mut out = Vec::new();
        let mut tx = ClientTx::start(false, b"BYE".to_vec(), true, T, 0, &mut out);
        assert_eq!(run_client(&mut tx, 0, 31_000).len(), 0);
        let mut out = Vec::new();
        tx.on_response(200, 31_000, &mut out);
        assert_eq!(
            out,
            vec![Action::Response(200), Action::Terminated],
            "timer K is zero"
        );
    }

    #[test]
    fn invite_server_retransmits_final_until_ack_then_waits_i() {
        let mut tx = ServerTx::new(true, false, T);
        let mut out = Vec::new();
        tx.respond(100, b"100".to_vec(), 0, &mut out);
        tx.on_request_retransmission(&mut out); // INVITE again: 100 again
        assert_eq!(sends(&out), 2);
        let mut out = Vec::new();
        tx.respond(486, b"486".to_vec(), 1_000, &mut out);
        let mut resent = Vec::new();
        for _ in 0..10 {
            let at = tx.poll_timeout().unwrap();
            if at > 10_000 {
                break;
            }
            let now = at;
            let mut o = Vec::new();
            tx.on_timer(now, &mut o);
            if sends(&o) > 0 {
                resent.push(now);
            }
        }
        // G from T1 doubling, capped at T2: 1500, 2500, 4500, 8500.
        assert_eq!(resent, vec![1_500, 2_500, 4_500, 8_500]);
        let mut out = Vec::new();
        tx.on_ack(10_000, &mut out);
        assert_eq!(tx.state(), ServerState::Confirmed);
        tx.on_request_retransmission(&mut out); // absorbed in Confirmed
        assert_eq!(sends(&out), 0);
        tx.on_timer(15_000, &mut out);
        assert_eq!(out.last(), Some(&Action::Terminated), "timer I = T4");
    }

    #[test]
    fn invite_server_times_out_without_ack_and_2xx_absorbs_copies_until_timer_l() {
        let mut tx = ServerTx::new(true, false, T);
        let mut out = Vec::new();
        tx.respond(503, b"503".to_vec(), 0, &mut out);
        tx.on_timer(32_000, &mut out);
        assert!(out.contains(&Action::Timeout), "timer H");
        let mut tx = ServerTx::new(true, false, T);
        let mut out = Vec::new();
        tx.respond(200, b"200".to_vec(), 0, &mut out);
        assert_eq!(tx.state(), ServerState::Accepted);
        // A copy of the INVITE is absorbed: nothing sent (the 2xx is the user's to repeat).
        let mut again = Vec::new();
        tx.on_request_retransmission(&mut again);
        assert_eq!(again, vec![Action::Retransmission]);
        assert_eq!(tx.poll_timeout(), Some(32_000), "timer L");
        tx.on_timer(32_000, &mut out);
        assert_eq!(out.last(), Some(&Action::Terminated));
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn non_invite_server_absorbs_retransmissions_for_timer_j() {
        let mut tx = ServerTx::new(false, false, T);
        let mut out = Vec::new();
        tx.respond(200, b"200".to_vec(), 0, &mut out);
        tx.on_request_retransmission(&mut out);
        assert_eq!(sends(&out), 2, "the 200 again for a retransmitted BYE");
        assert_eq!(tx.poll_timeout(), Some(32_000));
        tx.on_timer(32_000, &mut out);
        assert_eq!(tx.state(), ServerState::Terminated);
        let mut tx = ServerTx::new(false, true, T);
        let mut out = Vec::new();
        tx.respond(200, b"200".to_vec(), 0, &mut out);
        assert_eq!(
            tx.state(),
            ServerState::Terminated,
            "timer J is zero over TCP"
        );
    }
}
