//! What authenticating a request costs: the account's auth token against an API key after
//! its first request (argon2id once, then a keyed MAC). Issue 18 wants a key under 5 µs.
//! `cargo bench --bench auth`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use maskd::api::auth::{credential, Credential};
use maskd::api::ApiState;
use maskd::core::engine::{Engine, EngineOptions};
use maskd::store::SqliteStore;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

fn basic(user: &str, pass: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
    );
    h
}

fn auth(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("b.db"), Box::new(|e| panic!("{e}"))).unwrap());
    let engine = Arc::new(Engine::open(store, EngineOptions::default(), 0).unwrap());
    let secret = maskd::secret::new_key_secret();
    let (key, d) = engine.create_key("bench", maskd::secret::hash_key_secret(&secret), 0);
    d.wait_blocking().unwrap();
    let state = ApiState {
        engine,
        limiter: maskd::api::RateLimiter::new(1_000_000, 1_000_000),
        public_url: "http://127.0.0.1:8080".into(),
        account_sid: ACCOUNT.into(),
        auth_token: "token".into(),
        auth_token_secondary: None,
        max_body: 65536,
        console: maskd::api::console::Console::new(Vec::new()),
        keys: maskd::secret::VerifiedKeys::default(),
        key_checks: tokio::sync::Semaphore::new(2),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let token = basic(ACCOUNT, "token");
    let from = std::net::IpAddr::from([127, 0, 0, 1]);
    let with_key = basic(&key.sid.to_string(), &secret);
    // The first request with the key runs argon2.
    assert_eq!(
        rt.block_on(credential(&with_key, &state, from)),
        Some(Credential::Key(key.sid))
    );
    c.bench_function("auth_account_token", |b| {
        b.iter(|| rt.block_on(credential(&token, &state, from)))
    });
    c.bench_function("auth_api_key_after_first", |b| {
        b.iter(|| rt.block_on(credential(&with_key, &state, from)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = auth
}
criterion_main!(benches);
