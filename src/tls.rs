//! TLS for the SMPP and SIP planes (rustls, the ring provider): server settings from a
//! certificate chain and key in PEM files, optionally requiring client certificates signed by
//! a CA; client settings that verify the peer against a CA file (or the built-in web roots)
//! and optionally present a client certificate. Files are read once, when the config is
//! checked, so a bad path or PEM is a config error naming its key.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain from a PEM file: at least one certificate.
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if list.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(list)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{} holds no readable private key: {e}", path.display()))
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Server settings: `cert` (chain) and `key`; with `client_ca`, clients must present a
/// certificate it signed.
pub fn server(
    cert: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| {
            format!(
                "{} does not go with {}: {e}",
                key_path.display(),
                cert.display()
            )
        })?;
    Ok(Arc::new(config))
}

/// Client settings: the peer verified against `ca` (or the built-in web roots), presenting
/// `identity` (certificate chain, key) when given.
pub fn client(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let roots = match ca {
        Some(ca) => roots(ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key_path)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_path)?)
            .map_err(|e| {
                format!(
                    "{} does not go with {}: {e}",
                    key_path.display(),
                    cert.display()
                )
            })?,
    };
    Ok(Arc::new(config))
}

/// The name a peer's certificate must carry: `name` when given, else the host of `address`
/// (`host:port`, `[v6]:port`); an IP address is matched against the certificate's IP names.
pub fn server_name(name: Option<&str>, address: &str) -> Result<ServerName<'static>, String> {
    let host = match name {
        Some(n) => n.to_string(),
        None => {
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        }
    };
    ServerName::try_from(host.clone())
        .map_err(|_| format!("\"{host}\" is not a host name or address"))
}

/// A connector and acceptor made from settings (what the planes hold).
pub type Connector = tokio_rustls::TlsConnector;
pub type Acceptor = tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = server(&missing, &missing, None).unwrap_err();
        assert!(e.contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = client(Some(&empty), None).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn the_server_name_is_the_addresss_host_unless_given() {
        assert_eq!(
            server_name(None, "smsc.example.net:3550").unwrap(),
            ServerName::try_from("smsc.example.net").unwrap()
        );
        assert_eq!(
            server_name(None, "[::1]:5061").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name(Some("sip.example.com"), "127.0.0.1:5061").unwrap(),
            ServerName::try_from("sip.example.com").unwrap()
        );
        assert!(server_name(Some("bad name!"), "x:1").is_err());
    }
}
