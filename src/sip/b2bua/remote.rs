//! A peer as the B2BUA sees it: an address and the transport that reaches it.

use std::net::SocketAddr;

/// A peer as a message reaches it: its address and whether over a connection (TCP, or TLS
/// with `tls`; else UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Remote {
    pub addr: SocketAddr,
    pub tcp: bool,
    pub tls: bool,
}

impl Remote {
    pub fn udp(addr: SocketAddr) -> Remote {
        Remote {
            addr,
            tcp: false,
            tls: false,
        }
    }
    pub fn tcp(addr: SocketAddr) -> Remote {
        Remote {
            addr,
            tcp: true,
            tls: false,
        }
    }
    pub fn tls(addr: SocketAddr) -> Remote {
        Remote {
            addr,
            tcp: true,
            tls: true,
        }
    }
    /// A carrier's trunk, over its transport.
    pub fn of_trunk(t: &crate::core::carriers::Trunk) -> Remote {
        Remote {
            addr: t.addr,
            tcp: t.tcp || t.tls,
            tls: t.tls,
        }
    }
    /// The same peer over a new connection of the same kind.
    pub fn stream(self, addr: SocketAddr) -> Remote {
        Remote { addr, ..self }
    }
    /// The transport token of a Via header.
    pub fn via_transport(self) -> &'static str {
        match (self.tcp, self.tls) {
            (_, true) => "TLS",
            (true, false) => "TCP",
            _ => "UDP",
        }
    }
    /// The `transport` parameter of a URI reaching it (none for UDP).
    pub fn uri_param(self) -> &'static str {
        match (self.tcp, self.tls) {
            (_, true) => ";transport=tls",
            (true, false) => ";transport=tcp",
            _ => "",
        }
    }
}
