//! The only place with sockets and the clock: thin drivers around the sans-IO protocol
//! cores. `smpp` is the SMS plane (listener, upstream binds, outbound dispatcher).

pub mod smpp;
