//! TLS settings in the config: a listener's (`smpp.tls`, `sip.tls`) and a peer's (an SMPP
//! upstream's or a SIP trunk's `tls`). Their files are read when the config is checked.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::validate::Problems;

/// A TLS listener beside the plain one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListen {
    /// `host:port` of the TLS listener.
    pub listen: String,
    /// PEM certificate chain, the listener's own first.
    pub cert: String,
    /// PEM private key of the first certificate.
    pub key: String,
    /// PEM CA certificates: when set, clients must present a certificate one of them signed.
    #[serde(default)]
    pub client_ca: Option<String>,
}

/// How maskd connects to a peer over TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsPeer {
    /// PEM CA certificates the peer's certificate must chain to; the built-in web roots
    /// when unset.
    pub ca: Option<String>,
    /// The name the peer's certificate must carry; the host of its address when unset.
    pub server_name: Option<String>,
    /// A client certificate chain and key to present, when the peer asks for one.
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// A checked TLS listener.
#[derive(Clone)]
pub struct TlsListener {
    pub listen: SocketAddr,
    pub acceptor: crate::tls::Acceptor,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsListener({})", self.listen)
    }
}

/// A checked TLS peer: the settings and the name its certificate must carry (`None`: the
/// host of the address connected to, for settings shared by several trunks).
#[derive(Clone)]
pub struct TlsClient {
    pub connector: crate::tls::Connector,
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsClient({:?})", self.server_name)
    }
}

impl Problems {
    /// Checks a TLS listener's address and reads its files.
    pub(super) fn tls_listen(&mut self, key: &str, t: &TlsListen) -> Option<TlsListener> {
        let listen = self.addr(&format!("{key}.listen"), &t.listen);
        let server = crate::tls::server(
            Path::new(&t.cert),
            Path::new(&t.key),
            t.client_ca.as_deref().map(Path::new),
        );
        match server {
            Ok(config) => listen.map(|listen| TlsListener {
                listen,
                acceptor: tokio_rustls::TlsAcceptor::from(config),
            }),
            Err(e) => {
                self.add(key, e);
                None
            }
        }
    }

    /// Checks a peer's TLS settings for a connection to `address` (`None`: several, the
    /// name then `server_name` or each one's host) and reads its files.
    pub(super) fn tls_peer(
        &mut self,
        key: &str,
        t: &TlsPeer,
        address: Option<&str>,
    ) -> Option<TlsClient> {
        let identity = match (&t.cert, &t.key) {
            (Some(c), Some(k)) => Some((Path::new(c.as_str()), Path::new(k.as_str()))),
            (None, None) => None,
            _ => {
                self.add(key, "cert and key go together");
                return None;
            }
        };
        let name = match (t.server_name.as_deref(), address) {
            (None, None) => None,
            (name, address) => match crate::tls::server_name(name, address.unwrap_or("")) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.add(format!("{key}.server_name"), e);
                    return None;
                }
            },
        };
        match crate::tls::client(t.ca.as_deref().map(Path::new), identity) {
            Ok(config) => Some(TlsClient {
                connector: tokio_rustls::TlsConnector::from(config),
                server_name: name,
            }),
            Err(e) => {
                self.add(key, e);
                None
            }
        }
    }
}

/// Shares one checked peer setting (cheap clones: the settings are behind an `Arc`).
pub type SharedTlsClient = Arc<TlsClient>;
