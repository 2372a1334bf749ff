//! Persistence: implements `core::store::Store` on embedded SQLite. Knows SQL and core types,
//! never SIP, SMPP or HTTP.

mod recordings;
mod schema;
pub mod sqlite;

pub use sqlite::SqliteStore;
