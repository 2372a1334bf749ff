//! Services and their pools of numbers: create, update, delete (cascading), list, and the
//! pool numbers' own resource.

use super::*;

impl Engine {
    pub fn resolve_service(&self, sid_or_name: &str) -> Result<Sid, CoreError> {
        let st = self.state.lock();
        st.resolve_service(sid_or_name)
    }

    /// The service whose pool holds `number`.
    pub fn service_of_number(&self, number: E164) -> Option<Sid> {
        let st = self.state.lock();
        let pn = st.number_index.get(&number.as_u64())?;
        st.numbers.get(pn).map(|n| n.service_sid)
    }

    pub fn service(&self, sid: Sid) -> Result<Service, CoreError> {
        let st = self.state.lock();
        st.services
            .get(&sid)
            .cloned()
            .ok_or(CoreError::NotFound(Resource::Service))
    }

    pub fn list_services(&self, cursor: Cursor, limit: usize) -> Page<Service> {
        let st = self.state.lock();
        let (sids, more_after) = page_of(&st.service_order, cursor, limit);
        Page {
            items: sids
                .iter()
                .filter_map(|s| st.services.get(s).cloned())
                .collect(),
            more_after,
        }
    }

    pub fn create_service(
        &self,
        patch: ServicePatch,
        now: Timestamp,
    ) -> Result<(Service, Durable), CoreError> {
        let mut st = self.state.lock();
        let name = patch
            .unique_name
            .clone()
            .ok_or_else(|| CoreError::invalid("UniqueName", "is required"))?;
        check_name("UniqueName", &name)?;
        if st.service_names.contains_key(&name) {
            return Err(CoreError::ServiceNameTaken);
        }
        let seq = st.next_seq();
        let mut svc = Service {
            sid: Sid::generate(SidKind::Service),
            seq,
            unique_name: name,
            callback_url: None,
            default_ttl: 0,
            geo_match_level: GeoMatchLevel::Country,
            number_selection_behavior: NumberSelection::PreferSticky,
            intercept_callback_url: None,
            out_of_session_callback_url: None,
            chat_instance_sid: None,
            cooloff: 0,
            record: false,
            date_created: now,
            date_updated: now,
        };
        apply_service_patch(&mut svc, patch);
        st.service_names.insert(svc.unique_name.clone(), svc.sid);
        st.service_order.insert(seq, svc.sid);
        st.pools.insert(svc.sid, BTreeMap::new());
        st.service_sessions.insert(svc.sid, BTreeMap::new());
        st.services.insert(svc.sid, svc.clone());
        let d = self.submit(vec![WriteOp::PutService(svc.clone())]);
        Ok((svc, d))
    }

    pub fn update_service(
        &self,
        sid: Sid,
        patch: ServicePatch,
        now: Timestamp,
    ) -> Result<(Service, Durable), CoreError> {
        let mut st = self.state.lock();
        let old = st
            .services
            .get(&sid)
            .cloned()
            .ok_or(CoreError::NotFound(Resource::Service))?;
        if let Some(name) = &patch.unique_name {
            check_name("UniqueName", name)?;
            if *name != old.unique_name && st.service_names.contains_key(name) {
                return Err(CoreError::ServiceNameTaken);
            }
        }
        let mut svc = old.clone();
        apply_service_patch(&mut svc, patch);
        svc.date_updated = now;
        if svc.unique_name != old.unique_name {
            st.service_names.remove(&old.unique_name);
            st.service_names.insert(svc.unique_name.clone(), sid);
        }
        st.services.insert(sid, svc.clone());
        let d = self.submit(vec![WriteOp::PutService(svc.clone())]);
        Ok((svc, d))
    }

    /// Deletes a service with its pool, sessions, participants and interactions; the route
    /// keys of its active sessions are withdrawn at once.
    pub fn delete_service(&self, sid: Sid) -> Result<Durable, CoreError> {
        let mut st = self.state.lock();
        if !st.services.contains_key(&sid) {
            return Err(CoreError::NotFound(Resource::Service));
        }
        self.forget_service(&mut st, sid);
        Ok(self.submit(vec![WriteOp::DeleteService(sid)]))
    }

    /// Removes a service, its pool and its sessions from memory.
    pub(super) fn forget_service(&self, st: &mut State, sid: Sid) {
        let Some(svc) = st.services.remove(&sid) else {
            return;
        };
        st.service_names.remove(&svc.unique_name);
        st.service_order.remove(&svc.seq);
        let sessions: Vec<Sid> = st
            .service_sessions
            .remove(&sid)
            .unwrap_or_default()
            .into_values()
            .collect();
        let batch = self.routes.batch();
        for s in sessions {
            self.drop_session(st, s);
        }
        drop(batch);
        for n in st.pools.remove(&sid).unwrap_or_default().into_values() {
            if let Some(num) = st.numbers.remove(&n) {
                st.number_index.remove(&num.number.as_u64());
                self.tags.set(num.number, None);
            }
        }
    }

    /// Creates or updates a service from config, idempotently: missing numbers are added,
    /// numbers not listed are left alone (removing them could cut live sessions).
    pub fn ensure_service(
        &self,
        name: &str,
        default_ttl: u64,
        cooloff: u64,
        record: bool,
        numbers: &[E164],
        now: Timestamp,
    ) -> Result<Durable, CoreError> {
        let existing = self.resolve_service(name).ok();
        let patch = ServicePatch {
            unique_name: Some(name.to_string()),
            default_ttl: Some(default_ttl),
            cooloff: Some(cooloff),
            record: Some(record),
            ..ServicePatch::default()
        };
        let (svc, mut last) = match existing {
            Some(sid) => self.update_service(sid, patch, now)?,
            None => self.create_service(patch, now)?,
        };
        for n in numbers {
            let known = {
                let st = self.state.lock();
                st.number_index
                    .get(&n.as_u64())
                    .map(|pn| st.numbers[pn].service_sid)
            };
            match known {
                Some(s) if s == svc.sid => continue,
                Some(_) => return Err(CoreError::NumberInOtherService),
                None => {
                    last = self
                        .add_number(svc.sid, None, Some(&n.to_string()), false, None, now)?
                        .1
                }
            }
        }
        Ok(last)
    }

    // ----- phone numbers -----

    pub fn number(&self, service: Sid, sid_or_number: &str) -> Result<PhoneNumber, CoreError> {
        let st = self.state.lock();
        let sid = st.resolve_number(service, sid_or_number)?;
        Ok(st.numbers[&sid].clone())
    }

    pub fn list_numbers(
        &self,
        service: Sid,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<PhoneNumber>, CoreError> {
        let st = self.state.lock();
        let pool = st
            .pools
            .get(&service)
            .ok_or(CoreError::NotFound(Resource::Service))?;
        let (sids, more_after) = page_of(pool, cursor, limit);
        Ok(Page {
            items: sids.iter().map(|s| st.numbers[s].clone()).collect(),
            more_after,
        })
    }

    /// Adds a number to a service pool by `Sid` (a PN of this deployment) or `PhoneNumber`.
    pub fn add_number(
        &self,
        service: Sid,
        sid: Option<&str>,
        number: Option<&str>,
        is_reserved: bool,
        carrier: Option<String>,
        now: Timestamp,
    ) -> Result<(PhoneNumber, Durable), CoreError> {
        self.check_carrier(carrier.as_deref())?;
        let mut st = self.state.lock();
        if !st.services.contains_key(&service) {
            return Err(CoreError::NotFound(Resource::Service));
        }
        let e164 = match (sid, number) {
            (_, Some(text)) => {
                E164::parse(text).map_err(|e| CoreError::invalid("PhoneNumber", e.to_string()))?
            }
            (Some(text), None) => {
                // Without a carrier account there are no IncomingPhoneNumbers to look up: a
                // PN SID can only name a number already in some pool here.
                let pn =
                    Sid::parse(SidKind::PhoneNumber, text).ok_or(CoreError::NumberSidNotFound)?;
                let n = st.numbers.get(&pn).ok_or(CoreError::NumberSidNotFound)?;
                return Err(if n.service_sid == service {
                    CoreError::NumberInService
                } else {
                    CoreError::NumberInOtherService
                });
            }
            (None, None) => {
                return Err(CoreError::invalid(
                    "PhoneNumber",
                    "Sid or PhoneNumber is required",
                ))
            }
        };
        if let Some(pn) = st.number_index.get(&e164.as_u64()) {
            return Err(if st.numbers[pn].service_sid == service {
                CoreError::NumberInService
            } else {
                CoreError::NumberInOtherService
            });
        }
        let seq = st.next_seq();
        let n = PhoneNumber {
            sid: Sid::generate(SidKind::PhoneNumber),
            seq,
            service_sid: service,
            number: e164,
            friendly_name: e164.to_string(),
            is_reserved,
            carrier,
            in_use: 0,
            date_created: now,
            date_updated: now,
        };
        self.tags.set(e164, n.carrier.as_deref());
        st.number_index.insert(e164.as_u64(), n.sid);
        st.pools.entry(service).or_default().insert(seq, n.sid);
        st.numbers.insert(n.sid, n.clone());
        let d = self.submit(vec![WriteOp::PutNumber(n.clone())]);
        Ok((n, d))
    }

    /// A carrier tag must name a configured carrier.
    fn check_carrier(&self, carrier: Option<&str>) -> Result<(), CoreError> {
        match carrier {
            Some(c) if !self.carrier_names.lock().iter().any(|n| n == c) => Err(
                CoreError::invalid("Carrier", format!("\"{c}\" is no configured carrier")),
            ),
            _ => Ok(()),
        }
    }

    pub fn update_number(
        &self,
        service: Sid,
        sid_or_number: &str,
        is_reserved: Option<bool>,
        carrier: Option<Option<String>>,
        now: Timestamp,
    ) -> Result<(PhoneNumber, Durable), CoreError> {
        let mut st = self.state.lock();
        let sid = st.resolve_number(service, sid_or_number)?;
        if let Some(c) = &carrier {
            self.check_carrier(c.as_deref())?;
        }
        let n = st
            .numbers
            .get_mut(&sid)
            .ok_or(CoreError::NotFound(Resource::PhoneNumber))?;
        if let Some(r) = is_reserved {
            n.is_reserved = r;
        }
        if let Some(c) = carrier {
            n.carrier = c;
            self.tags.set(n.number, n.carrier.as_deref());
        }
        n.date_updated = now;
        let n = n.clone();
        let d = self.submit(vec![WriteOp::PutNumber(n.clone())]);
        Ok((n, d))
    }

    pub fn delete_number(&self, service: Sid, sid_or_number: &str) -> Result<Durable, CoreError> {
        let mut st = self.state.lock();
        let sid = st.resolve_number(service, sid_or_number)?;
        if st.numbers[&sid].in_use > 0 {
            return Err(CoreError::NumberInUse);
        }
        if let Some(n) = st.numbers.remove(&sid) {
            st.number_index.remove(&n.number.as_u64());
            self.tags.set(n.number, None);
            if let Some(pool) = st.pools.get_mut(&service) {
                pool.remove(&n.seq);
            }
        }
        Ok(self.submit(vec![WriteOp::DeleteNumber(sid)]))
    }

    // ----- sessions -----
}

pub(super) fn check_name(param: &'static str, name: &str) -> Result<(), CoreError> {
    if name.is_empty() || name.chars().count() > 191 {
        return Err(CoreError::invalid(param, "must be 1 to 191 characters"));
    }
    Ok(())
}

pub(super) fn apply_service_patch(svc: &mut Service, p: ServicePatch) {
    if let Some(v) = p.unique_name {
        svc.unique_name = v;
    }
    if let Some(v) = p.default_ttl {
        svc.default_ttl = v;
    }
    if let Some(v) = p.record {
        svc.record = v;
    }
    let opt = |v: String| if v.is_empty() { None } else { Some(v) };
    if let Some(v) = p.callback_url {
        svc.callback_url = opt(v);
    }
    if let Some(v) = p.geo_match_level {
        svc.geo_match_level = v;
    }
    if let Some(v) = p.number_selection_behavior {
        svc.number_selection_behavior = v;
    }
    if let Some(v) = p.intercept_callback_url {
        svc.intercept_callback_url = opt(v);
    }
    if let Some(v) = p.out_of_session_callback_url {
        svc.out_of_session_callback_url = opt(v);
    }
    if let Some(v) = p.chat_instance_sid {
        svc.chat_instance_sid = opt(v);
    }
    if let Some(v) = p.cooloff {
        svc.cooloff = v;
    }
}
