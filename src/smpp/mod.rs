//! The SMPP side, sans-IO: PDUs and their codec, the session state machine (bind state,
//! windows, timers), text codings and UDH, and the delivery receipt format. Sockets and the clock live in `net/`.

pub mod codec;
pub mod pdu;
pub mod receipt;
pub mod session;
pub mod text;

pub use codec::{decode, encode, DecodeError};
pub use pdu::{Body, Pdu};
