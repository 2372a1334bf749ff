//! The only place with sockets and the clock: thin drivers around the sans-IO protocol
//! cores. `smpp` is the SMS plane (listener, upstream binds, outbound dispatcher); `sip` the
//! voice plane's UDP driver around the B2BUA.

pub mod dns;
pub mod media;
pub mod sip;
pub mod smpp;
pub mod webhook;
