//! A service with two pool numbers and one session between two people, made through the
//! engine (for the tests that work below the API: the store contract, recordings).

use maskd::core::engine::{Engine, NewParticipant, NewSession, ServicePatch};
use maskd::core::Sid;

/// What `service_with_session` made.
pub struct Seeded {
    pub service: Sid,
    pub session: Sid,
    pub participants: Vec<Sid>,
}

/// Creates the service `patch` with the pool `numbers` and a session `new` between
/// +14155551001 and +14155551002 (its participants, when `new` names none), each write
/// durable before the next.
pub fn service_with_session(
    e: &Engine,
    patch: ServicePatch,
    numbers: [&str; 2],
    mut new: NewSession,
    now: i64,
) -> Seeded {
    let (svc, d) = e.create_service(patch, now).expect("service");
    d.wait_blocking().expect("service durable");
    for n in numbers {
        let (_, d) = e
            .add_number(svc.sid, None, Some(n), false, None, now)
            .expect("number");
        d.wait_blocking().expect("number durable");
    }
    if new.participants.is_empty() {
        new.participants = ["+14155551001", "+14155551002"]
            .iter()
            .map(|i| NewParticipant {
                identifier: i.to_string(),
                ..Default::default()
            })
            .collect();
    }
    let (s, parts, d) = e.create_session(svc.sid, new, now).expect("session");
    d.wait_blocking().expect("session durable");
    Seeded {
        service: svc.sid,
        session: s.sid,
        participants: parts.iter().map(|p| p.sid).collect(),
    }
}
