//! # maskd
//!
//! A self-hosted number-masking gateway: two people talk by SMS and phone through proxy
//! numbers from a pool, and neither sees the other's real number. Apps drive it through a
//! REST API wire-compatible with Twilio Proxy v1; carriers reach it over SIP and SMPP.
//!
//! ```text
//!   carriers (SIP)                 carriers / SMSCs (SMPP)
//!        |                                |
//!   net/ + sip/  (voice plane)       net/ + smpp/  (text plane)
//!        |   resolve(P, S) / record interaction   |
//!        v                                        v
//!   core/  routing table (proxy, sender) -> route · number allocator
//!          session engine + timer wheel · domain model · Store trait
//!        |                                        |
//!   store/ SQLite (WAL, group commit)      api/ REST /v1 (Twilio shape)
//!             metrics · config · telemetry (leaves)
//! ```
//!
//! Every import points down: `api` and the drivers use `core`; `store` implements
//! `core::store::Store`; `core` knows no sockets, SQL, HTTP or clock. Control-plane writes
//! are durable before the API answers 2xx; the routing table and timer wheel are rebuilt
//! from the store at start.
//!
//! Modules: [`core`] (domain, allocator, routing, engine), [`timer`] (hashed wheel),
//! [`store`] (SQLite), [`api`] (REST), [`config`], [`metrics`], [`telemetry`], [`app`]
//! (wiring).

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod core;
pub mod dns;
#[doc(hidden)]
pub mod fuzzing;
pub mod heap;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod net;
pub mod secret;
pub mod sip;
pub mod smpp;
pub mod spill;
pub mod store;
pub mod telemetry;
pub mod timer;
pub mod tls;
