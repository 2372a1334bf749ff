//! The SIP side, sans-IO: the message parser and writer, URIs and name-addrs. Transactions
//! and the B2BUA come next (see the voice-plane issue); sockets live in `net/`.

pub mod b2bua;
pub mod digest;
pub mod message;
mod timed;
pub mod transaction;
pub mod uri;
pub mod writer;

pub use message::{parse, HeaderName, Message, Outgoing, ParseError, Transport};
