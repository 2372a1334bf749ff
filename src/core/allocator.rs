//! Number selection (SPEC §3, reference §4.3): which pool number a participant gets. A pure
//! function over the pool and what the engine knows of the person's history; the engine calls
//! it under its state lock and reserves the route key in the same step, so selection and
//! reservation are atomic.

use super::e164::E164;
use super::model::{GeoMatchLevel, NumberSelection};
use super::sid::Sid;

/// One pool number as the allocator sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub sid: Sid,
    pub number: E164,
    pub reserved: bool,
    pub in_use: u32,
    /// Messages from it waiting for its carrier's message rate (`carriers[].mps`): among
    /// numbers otherwise equal, the one with spare rate is given.
    pub backlog: u32,
}

/// What the allocator needs to know about the person being given a number.
pub trait History {
    /// `(proxy, identifier)` is already a route key of an active session.
    fn is_active(&self, proxy: E164, identifier: E164) -> bool;
    /// `(proxy, identifier)` is cooling off and may not go to `counterpart`.
    fn is_cooling(&self, proxy: E164, identifier: E164, counterpart: Option<E164>) -> bool;
    /// A recency stamp of the last time `identifier` was given `proxy` (larger is later).
    fn last_used(&self, proxy: E164, identifier: E164) -> Option<u64>;
    /// The proxy `identifier` had most recently with `counterpart`.
    fn last_with(&self, identifier: E164, counterpart: E164) -> Option<E164>;
}

pub struct Request {
    pub identifier: E164,
    pub counterpart: Option<E164>,
    pub geo: GeoMatchLevel,
    pub behavior: NumberSelection,
    /// `ProxyIdentifier` / `ProxyIdentifierSid` given by the app, resolved to a number.
    pub explicit: Option<E164>,
}

/// Why no number could be given; each maps to Twilio's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("no proxy numbers in the service pool")]
    EmptyPool,
    #[error("only reserved numbers are in the pool")]
    OnlyReserved,
    #[error("no pool number matches the participant's country")]
    NoCountryMatch,
    #[error("no pool number matches the service's geo-match level")]
    NoGeoMatch,
    #[error("every matching proxy number is already in use by this participant")]
    AllInUse,
    #[error("the requested proxy identifier is not in the service pool")]
    NotInService,
    #[error("the requested proxy identifier is already paired with this identifier in an active session")]
    PairInUse,
}

impl AllocError {
    pub fn code(self) -> u32 {
        match self {
            AllocError::EmptyPool => 80205,
            AllocError::OnlyReserved => 80207,
            AllocError::NoCountryMatch => 80203,
            AllocError::NoGeoMatch => 80206,
            AllocError::AllInUse => 80208,
            AllocError::NotInService => 80605,
            AllocError::PairInUse => 80604,
        }
    }
}

/// Picks a number for `req` from `pool` (in pool order). Fails only when no number meets
/// the hard constraints: this is what makes allocation optimal.
pub fn select(
    pool: &[Candidate],
    req: &Request,
    history: &impl History,
) -> Result<usize, AllocError> {
    let me = req.identifier;
    if let Some(wanted) = req.explicit {
        let i = pool
            .iter()
            .position(|c| c.number == wanted)
            .ok_or(AllocError::NotInService)?;
        if history.is_active(wanted, me) {
            return Err(AllocError::PairInUse);
        }
        return Ok(i);
    }
    if pool.is_empty() {
        return Err(AllocError::EmptyPool);
    }
    let mut cands: Vec<usize> = (0..pool.len()).filter(|&i| !pool[i].reserved).collect();
    if cands.is_empty() {
        return Err(AllocError::OnlyReserved);
    }
    let code = me.calling_code();
    cands.retain(|&i| pool[i].number.calling_code() == code);
    if cands.is_empty() {
        return Err(AllocError::NoCountryMatch);
    }
    if let Some(npa) = me.nanp_area_code() {
        let same_npa = |i: &usize| pool[*i].number.nanp_area_code() == Some(npa);
        match req.geo {
            GeoMatchLevel::AreaCode => {
                cands.retain(same_npa);
                if cands.is_empty() {
                    return Err(AllocError::NoGeoMatch);
                }
            }
            // Without a proximity map, "extended area code" prefers the same NPA and widens
            // to the whole country when none of those is free (decided below, after
            // exclusivity).
            GeoMatchLevel::Overlay | GeoMatchLevel::Radius | GeoMatchLevel::Country => {}
        }
    }
    cands.retain(|&i| {
        let p = pool[i].number;
        !history.is_active(p, me) && !history.is_cooling(p, me, req.counterpart)
    });
    if cands.is_empty() {
        return Err(AllocError::AllInUse);
    }
    if let (GeoMatchLevel::Overlay | GeoMatchLevel::Radius, Some(npa)) =
        (req.geo, me.nanp_area_code())
    {
        if cands
            .iter()
            .any(|&i| pool[i].number.nanp_area_code() == Some(npa))
        {
            cands.retain(|&i| pool[i].number.nanp_area_code() == Some(npa));
        }
    }
    match req.behavior {
        NumberSelection::PreferSticky => {
            if let Some(prev) = req.counterpart.and_then(|c| history.last_with(me, c)) {
                if let Some(&i) = cands.iter().find(|&&i| pool[i].number == prev) {
                    return Ok(i);
                }
            }
            let recent = cands
                .iter()
                .filter_map(|&i| history.last_used(pool[i].number, me).map(|t| (t, i)))
                .max();
            if let Some((_, i)) = recent {
                return Ok(i);
            }
            Ok(least_in_use(pool, &cands))
        }
        NumberSelection::AvoidSticky => {
            // Never used first (None sorts before Some), then least recently used, then load.
            let best = cands.iter().min_by_key(|&&i| {
                (
                    history.last_used(pool[i].number, me),
                    pool[i].in_use,
                    pool[i].backlog,
                    i,
                )
            });
            // `cands` is non-empty here.
            Ok(best.copied().unwrap_or(cands[0]))
        }
    }
}

fn least_in_use(pool: &[Candidate], cands: &[usize]) -> usize {
    cands
        .iter()
        .copied()
        .min_by_key(|&i| (pool[i].in_use, pool[i].backlog, i))
        .unwrap_or(cands[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Default)]
    struct Hist {
        active: HashSet<(u64, u64)>,
        cooling: HashMap<(u64, u64), u64>,
        used: HashMap<(u64, u64), u64>,
        with: HashMap<(u64, u64), E164>,
    }
    impl History for Hist {
        fn is_active(&self, p: E164, i: E164) -> bool {
            self.active.contains(&(p.as_u64(), i.as_u64()))
        }
        fn is_cooling(&self, p: E164, i: E164, c: Option<E164>) -> bool {
            self.cooling
                .get(&(p.as_u64(), i.as_u64()))
                .is_some_and(|cp| Some(*cp) != c.map(E164::as_u64))
        }
        fn last_used(&self, p: E164, i: E164) -> Option<u64> {
            self.used.get(&(p.as_u64(), i.as_u64())).copied()
        }
        fn last_with(&self, i: E164, c: E164) -> Option<E164> {
            self.with.get(&(i.as_u64(), c.as_u64())).copied()
        }
    }

    fn n(s: &str) -> E164 {
        E164::parse(s).unwrap()
    }
    fn cand(s: &str, reserved: bool, in_use: u32) -> Candidate {
        Candidate {
            sid: Sid::generate(super::super::sid::SidKind::PhoneNumber),
            number: n(s),
            reserved,
            in_use,
            backlog: 0,
        }
    }
    #[test]
    fn among_equals_the_number_with_spare_rate_is_given() {
        let mut pool = vec![
            cand("+14155550101", false, 1),
            cand("+14155550102", false, 1),
            cand("+14155550103", false, 2),
        ];
        pool[0].backlog = 40;
        let h = Hist::default();
        assert_eq!(select(&pool, &req("+14155551001"), &h), Ok(1));
        // Load comes first: a busier number is not given for its spare rate.
        pool[1].backlog = 5;
        assert_eq!(select(&pool, &req("+14155551001"), &h), Ok(1));
        let mut avoid = req("+14155551001");
        avoid.behavior = NumberSelection::AvoidSticky;
        assert_eq!(select(&pool, &avoid, &h), Ok(1));
    }

    fn req(i: &str) -> Request {
        Request {
            identifier: n(i),
            counterpart: None,
            geo: GeoMatchLevel::Country,
            behavior: NumberSelection::PreferSticky,
            explicit: None,
        }
    }

    #[test]
    fn error_codes_in_order() {
        let h = Hist::default();
        assert_eq!(
            select(&[], &req("+14155551001"), &h),
            Err(AllocError::EmptyPool)
        );
        let reserved = [cand("+14155550101", true, 0)];
        assert_eq!(
            select(&reserved, &req("+14155551001"), &h),
            Err(AllocError::OnlyReserved)
        );
        let uk = [cand("+447700900001", false, 0)];
        assert_eq!(
            select(&uk, &req("+14155551001"), &h),
            Err(AllocError::NoCountryMatch)
        );
        let other_npa = [cand("+12125550101", false, 0)];
        let mut r = req("+14155551001");
        r.geo = GeoMatchLevel::AreaCode;
        assert_eq!(select(&other_npa, &r, &h), Err(AllocError::NoGeoMatch));
        let mut h2 = Hist::default();
        h2.active
            .insert((n("+12125550101").as_u64(), n("+14155551001").as_u64()));
        assert_eq!(
            select(&other_npa, &req("+14155551001"), &h2),
            Err(AllocError::AllInUse)
        );
    }

    #[test]
    fn explicit_allows_reserved_but_not_an_active_pair() {
        let pool = [
            cand("+14155550101", false, 0),
            cand("+14155550102", true, 0),
        ];
        let mut r = req("+14155551001");
        r.explicit = Some(n("+14155550102"));
        let mut h = Hist::default();
        assert_eq!(select(&pool, &r, &h), Ok(1));
        h.active
            .insert((n("+14155550102").as_u64(), n("+14155551001").as_u64()));
        assert_eq!(select(&pool, &r, &h), Err(AllocError::PairInUse));
        r.explicit = Some(n("+14155550199"));
        assert_eq!(select(&pool, &r, &h), Err(AllocError::NotInService));
    }

    #[test]
    fn area_code_is_skipped_for_non_nanp_identifiers() {
        let pool = [cand("+447700900001", false, 0)];
        let mut r = req("+447700900555");
        r.geo = GeoMatchLevel::AreaCode;
        assert_eq!(select(&pool, &r, &Hist::default()), Ok(0));
    }

    #[test]
    fn stickiness_and_load() {
        let pool = [
            cand("+14155550101", false, 5),
            cand("+14155550102", false, 1),
            cand("+14155550103", false, 3),
        ];
        let h = Hist::default();
        assert_eq!(
            select(&pool, &req("+14155551001"), &h),
            Ok(1),
            "least in_use"
        );
        let mut h = Hist::default();
        let me = n("+14155551001");
        h.used.insert((pool[0].number.as_u64(), me.as_u64()), 10);
        h.used.insert((pool[2].number.as_u64(), me.as_u64()), 20);
        assert_eq!(
            select(&pool, &req("+14155551001"), &h),
            Ok(2),
            "most recent"
        );
        let mut r = req("+14155551001");
        r.counterpart = Some(n("+14155552002"));
        h.with
            .insert((me.as_u64(), n("+14155552002").as_u64()), pool[0].number);
        assert_eq!(select(&pool, &r, &h), Ok(0), "same counterpart first");
        r.behavior = NumberSelection::AvoidSticky;
        assert_eq!(select(&pool, &r, &h), Ok(1), "never used first");
    }

    #[test]
    fn cooloff_only_blocks_other_counterparts() {
        let pool = [cand("+14155550101", false, 0)];
        let me = n("+14155551001");
        let mut h = Hist::default();
        h.cooling.insert(
            (pool[0].number.as_u64(), me.as_u64()),
            n("+14155552002").as_u64(),
        );
        let mut r = req("+14155551001");
        r.counterpart = Some(n("+14155553003"));
        assert_eq!(select(&pool, &r, &h), Err(AllocError::AllInUse));
        r.counterpart = Some(n("+14155552002"));
        assert_eq!(select(&pool, &r, &h), Ok(0));
    }

    use proptest::prelude::*;

    /// Valid, stated independently of `select`: what a number must satisfy.
    fn valid(c: &Candidate, r: &Request, h: &Hist) -> bool {
        let me = r.identifier;
        !c.reserved
            && c.number.calling_code() == me.calling_code()
            && (r.geo != GeoMatchLevel::AreaCode
                || me.nanp_area_code().is_none()
                || c.number.nanp_area_code() == me.nanp_area_code())
            && !h.is_active(c.number, me)
            && !h.is_cooling(c.number, me, r.counterpart)
    }

    fn arb_number() -> impl Strategy<Value = E164> {
        prop_oneof![
            (0u64..3, 0u64..4).prop_map(|(npa, line)| E164::from_u64(
                10_000_000_000 + [415, 212, 416][npa as usize] * 10_000_000 + 5_550_100 + line
            )
            .unwrap()),
            (0u64..3).prop_map(|line| E164::from_u64(447_700_900_000 + line).unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn never_fails_while_a_valid_number_exists(
            pool in proptest::collection::vec((arb_number(), any::<bool>(), 0u32..5), 0..8),
            me in arb_number(),
            active in proptest::collection::vec(arb_number(), 0..6),
            cooling in proptest::collection::vec(arb_number(), 0..3),
            geo in 0usize..4,
            behavior in any::<bool>(),
        ) {
            let mut seen = HashSet::new();
            let pool: Vec<Candidate> = pool.into_iter().filter(|(p, _, _)| seen.insert(*p)).map(|(p, reserved, in_use)| Candidate { backlog: 0,
                sid: Sid::generate(super::super::sid::SidKind::PhoneNumber), number: p, reserved, in_use,
            }).collect();
            let mut h = Hist::default();
            for p in active { h.active.insert((p.as_u64(), me.as_u64())); }
            for p in cooling { h.cooling.insert((p.as_u64(), me.as_u64()), 1); }
            let r = Request {
                identifier: me, counterpart: Some(n("+14155559999")),
                geo: GeoMatchLevel::ALL[geo],
                behavior: if behavior { NumberSelection::PreferSticky } else { NumberSelection::AvoidSticky },
                explicit: None,
            };
            let any_valid = pool.iter().any(|c| valid(c, &r, &h));
            match select(&pool, &r, &h) {
                Ok(i) => prop_assert!(valid(&pool[i], &r, &h), "picked an invalid number"),
                Err(e) => prop_assert!(!any_valid, "failed with {e:?} although a valid number exists"),
            }
        }
    }
}
