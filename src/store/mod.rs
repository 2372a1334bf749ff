//! Persistence: implements `core::store::Store` on embedded SQLite (one node) and on
//! PostgreSQL (several nodes sharing it). Knows SQL and core types, never SIP, SMPP or HTTP.

mod backfill;
mod counting;
pub mod postgres;
mod recordings;
mod reports;
mod schema;
pub mod sqlite;
mod writer;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::core::store::ReceiptOrigin;

/// A receipt origin as one text column: four fields separated by US (0x1F), which none of
/// them can contain (peer names, message ids and addresses are printable).
fn origin_text(o: &ReceiptOrigin) -> String {
    [o.peer.as_str(), &o.message_id, &o.source, &o.dest].join("\u{1f}")
}

/// The origin back from its column; a malformed one costs that message its receipt, never
/// the whole load.
fn parse_origin(text: &str) -> Option<ReceiptOrigin> {
    let f: Vec<&str> = text.split('\u{1f}').collect();
    match f[..] {
        [peer, message_id, source, dest] => Some(ReceiptOrigin {
            peer: peer.into(),
            message_id: message_id.into(),
            source: source.into(),
            dest: dest.into(),
        }),
        _ => None,
    }
}
