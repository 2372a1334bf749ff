//! API keys (Twilio's 2010-04-01 Key resource): kept in memory, so that authenticating a
//! request never reads the store, and followed by the other nodes like services (a key
//! deleted on one node stops working on every node as soon as they hear of it). The secret
//! is never here: only its salted hash, made by the caller (`crate::secret`) off the lock.

use super::*;

/// Longest `FriendlyName` (Twilio's limit).
pub const MAX_KEY_NAME: usize = 64;

impl Engine {
    /// A new key named `friendly_name` whose secret hashes to `secret_hash`.
    pub fn create_key(
        &self,
        friendly_name: &str,
        secret_hash: String,
        now: Timestamp,
    ) -> (ApiKey, Durable) {
        let mut st = self.state.lock();
        let key = ApiKey {
            sid: Sid::generate(SidKind::Key),
            seq: st.next_seq(),
            friendly_name: friendly_name.chars().take(MAX_KEY_NAME).collect(),
            secret_hash,
            date_created: now,
            date_updated: now,
        };
        st.key_order.insert(key.seq, key.sid);
        st.keys.insert(key.sid, key.clone());
        let d = self.submit(vec![WriteOp::PutKey(key.clone())]);
        (key, d)
    }

    pub fn key(&self, sid: Sid) -> Result<ApiKey, CoreError> {
        self.state
            .lock()
            .keys
            .get(&sid)
            .cloned()
            .ok_or(CoreError::NotFound(Resource::Key))
    }

    /// Whether key `sid` exists now.
    pub fn has_key(&self, sid: Sid) -> bool {
        self.state.lock().keys.contains_key(&sid)
    }

    /// The hash of key `sid`'s secret while the key exists (authentication).
    pub fn key_hash(&self, sid: Sid) -> Option<String> {
        self.state
            .lock()
            .keys
            .get(&sid)
            .map(|k| k.secret_hash.clone())
    }

    pub fn list_keys(&self, cursor: Cursor, limit: usize) -> Page<ApiKey> {
        let st = self.state.lock();
        let (sids, more_after) = page_of(&st.key_order, cursor, limit);
        Page {
            items: sids
                .iter()
                .filter_map(|s| st.keys.get(s).cloned())
                .collect(),
            more_after,
        }
    }

    pub fn update_key(
        &self,
        sid: Sid,
        friendly_name: Option<&str>,
        now: Timestamp,
    ) -> Result<(ApiKey, Durable), CoreError> {
        let mut st = self.state.lock();
        let key = st
            .keys
            .get_mut(&sid)
            .ok_or(CoreError::NotFound(Resource::Key))?;
        if let Some(name) = friendly_name {
            key.friendly_name = name.chars().take(MAX_KEY_NAME).collect();
        }
        key.date_updated = now;
        let key = key.clone();
        let d = self.submit(vec![WriteOp::UpdateKey {
            sid,
            friendly_name: key.friendly_name.clone(),
            at: now,
        }]);
        Ok((key, d))
    }

    /// Deletes key `sid`: it stops working at once on this node.
    pub fn delete_key(&self, sid: Sid) -> Result<Durable, CoreError> {
        let mut st = self.state.lock();
        let key = st
            .keys
            .remove(&sid)
            .ok_or(CoreError::NotFound(Resource::Key))?;
        st.key_order.remove(&key.seq);
        Ok(self.submit(vec![WriteOp::DeleteKey(sid)]))
    }
}
