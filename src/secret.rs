//! Secrets: compared without leaking where they differ (the API's basic auth, SMPP bind
//! passwords); API key secrets made, hashed (argon2id, salted) and verified, and the keys
//! verified once remembered by a keyed MAC of their secret so that a request costs
//! microseconds, not an argon2 run. A leaf.

/// Compares in time that depends only on the lengths, never on where bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use blake2::digest::{KeyInit, Mac};

use crate::core::Sid;

/// A new API key secret: 32 letters and digits (Twilio's shape) from the OS's randomness.
pub fn new_key_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut b = [0u8; 64];
        getrandom::getrandom(&mut b).expect("the OS has randomness");
        // 248 = 4 × 62: no letter is likelier than another.
        out.extend(
            b.iter()
                .filter(|x| **x < 248)
                .map(|x| ALPHABET[usize::from(*x % 62)] as char),
        );
        out.truncate(32);
    }
    out
}

/// The argon2id hash (PHC string, random salt) of `secret`, with argon2's defaults
/// (19 MiB, 2 passes: OWASP's recommendation).
pub fn hash_key_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).expect("the OS has randomness");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes fit a salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with its defaults")
        .to_string()
}

/// Whether `secret` is the one `phc` is the hash of.
pub fn verify_key_secret(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Failures of one key before its argon2 checks pause (each costs tens of milliseconds of
/// CPU: a stream of wrong secrets must not become a way to burn it).
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at most; past it, the ones whose window has passed are forgotten.
const MAX_TRACKED: usize = 100_000;

/// The keys whose secret this process has verified, each as a MAC of the secret under a key
/// made at start (never the secret itself); and recent checks per key and source address,
/// so that one source's wrong secrets pause only that source (a stranger who knows a key's
/// SID cannot lock its app out).
pub struct VerifiedKeys {
    mac_key: [u8; 32],
    verified: parking_lot::Mutex<HashMap<Sid, [u8; 32]>>,
    attempts: parking_lot::Mutex<HashMap<(Sid, IpAddr), (u32, Instant)>>,
}

impl Default for VerifiedKeys {
    fn default() -> Self {
        let mut mac_key = [0u8; 32];
        getrandom::getrandom(&mut mac_key).expect("the OS has randomness");
        VerifiedKeys {
            mac_key,
            verified: Default::default(),
            attempts: Default::default(),
        }
    }
}

/// What the fast check says of a key and secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Known {
    /// Verified before: the secret is right.
    Right,
    /// Too many unverified secrets for this key from this source lately: refused unchecked.
    Paused,
    /// Not verified yet (or another secret): argon2 decides.
    Unknown,
}

impl VerifiedKeys {
    fn mac(&self, secret: &[u8]) -> [u8; 32] {
        let mut m = <blake2::Blake2bMac<blake2::digest::consts::U32> as KeyInit>::new_from_slice(
            &self.mac_key,
        )
        .expect("a 32-byte key");
        m.update(secret);
        m.finalize().into_bytes().into()
    }

    fn paused(&self, key: Sid, from: IpAddr, now: Instant) -> bool {
        self.attempts
            .lock()
            .get(&(key, from))
            .is_some_and(|(n, since)| {
                *n >= MAX_FAILURES && now.duration_since(*since) < FAILURE_WINDOW
            })
    }

    pub fn known(&self, key: Sid, from: IpAddr, secret: &[u8], now: Instant) -> Known {
        if let Some(mac) = self.verified.lock().get(&key).copied() {
            if constant_time_eq(&mac, &self.mac(secret)) {
                return Known::Right;
            }
        }
        if self.paused(key, from, now) {
            Known::Paused
        } else {
            Known::Unknown
        }
    }

    /// Counts a check about to run (before it runs, so that checks queued at once count
    /// too); `false`: this source is paused for this key.
    pub fn attempt(&self, key: Sid, from: IpAddr, now: Instant) -> bool {
        let mut a = self.attempts.lock();
        if a.len() >= MAX_TRACKED && !a.contains_key(&(key, from)) {
            a.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if a.len() >= MAX_TRACKED {
                return false;
            }
        }
        let entry = a.entry((key, from)).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        if entry.0 >= MAX_FAILURES {
            return false;
        }
        entry.0 += 1;
        true
    }

    /// Records argon2's verdict: a right secret is remembered (by its MAC) and clears the
    /// source's count.
    pub fn checked(&self, key: Sid, from: IpAddr, secret: &[u8], right: bool) {
        if right {
            self.verified.lock().insert(key, self.mac(secret));
            self.attempts.lock().remove(&(key, from));
        }
    }

    /// A key made here with this secret: right, without a check.
    pub fn remember(&self, key: Sid, secret: &[u8]) {
        self.verified.lock().insert(key, self.mac(secret));
    }

    /// A deleted key: forgotten.
    pub fn forget(&self, key: Sid) {
        self.verified.lock().remove(&key);
        self.attempts.lock().retain(|(k, _), _| *k != key);
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn key_secrets_hash_verify_and_are_remembered_by_mac() {
        use super::*;
        let secret = new_key_secret();
        assert_eq!(secret.len(), 32);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(secret, new_key_secret());
        let phc = hash_key_secret(&secret);
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains(&secret));
        assert!(verify_key_secret(&secret, &phc));
        assert!(!verify_key_secret("wrong", &phc));
        assert!(!verify_key_secret(&secret, "not a hash"));
        let v = VerifiedKeys::default();
        let k = Sid::generate(crate::core::SidKind::Key);
        let t = Instant::now();
        let (app, stranger): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.9".parse().unwrap());
        assert_eq!(v.known(k, app, secret.as_bytes(), t), Known::Unknown);
        assert!(v.attempt(k, app, t));
        v.checked(k, app, secret.as_bytes(), true);
        assert_eq!(v.known(k, app, secret.as_bytes(), t), Known::Right);
        assert_eq!(v.known(k, stranger, b"other", t), Known::Unknown);
        for _ in 0..MAX_FAILURES {
            assert!(v.attempt(k, stranger, t), "counted before the check");
            v.checked(k, stranger, b"other", false);
        }
        assert!(!v.attempt(k, stranger, t));
        assert_eq!(v.known(k, stranger, b"other", t), Known::Paused);
        assert_eq!(
            v.known(k, stranger, secret.as_bytes(), t),
            Known::Right,
            "the right one still works"
        );
        assert_eq!(
            v.known(k, app, b"other", t),
            Known::Unknown,
            "another source is not paused by the stranger"
        );
        assert_eq!(
            v.known(k, stranger, b"other", t + FAILURE_WINDOW),
            Known::Unknown
        );
        v.forget(k);
        assert_eq!(v.known(k, app, secret.as_bytes(), t), Known::Unknown);
    }

    #[test]
    fn constant_time_eq_compares_fully() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
