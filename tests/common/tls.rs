//! A throwaway PKI for TLS tests, made with Debian's `openssl` command (scripts/test installs
//! it): a CA, a server certificate for 127.0.0.1, ::1 and localhost, and a client
//! certificate, each signed by the CA; plus a second CA that signed none of them.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The CA certificate (PEM).
    pub fn ca(&self) -> String {
        self.path("ca.pem").display().to_string()
    }
    /// A CA that signed nothing here.
    pub fn other_ca(&self) -> String {
        self.path("other-ca.pem").display().to_string()
    }
    pub fn server_cert(&self) -> String {
        self.path("server.pem").display().to_string()
    }
    pub fn server_key(&self) -> String {
        self.path("server.key").display().to_string()
    }
    pub fn client_cert(&self) -> String {
        self.path("client.pem").display().to_string()
    }
    pub fn client_key(&self) -> String {
        self.path("client.key").display().to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (scripts/test installs Debian's openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=maskd test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn leaf(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

impl Pki {
    /// Another certificate for 127.0.0.1 signed by the same CA (`{name}.pem`, `{name}.key`).
    pub fn another_server(&self, name: &str, cn: &str) -> (String, String) {
        leaf(self.dir.path(), name, cn);
        (
            self.path(&format!("{name}.pem")).display().to_string(),
            self.path(&format!("{name}.key")).display().to_string(),
        )
    }
}

/// Makes the PKI in a fresh temporary directory.
pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    ca(dir.path(), "ca");
    ca(dir.path(), "other-ca");
    leaf(dir.path(), "server", "localhost");
    leaf(dir.path(), "client", "carrier-a");
    Pki { dir }
}

/// `tests/interop/tls_relay.py`: TLS (OpenSSL) on one side of a port it prints, plain TCP on
/// the other; stopped when dropped.
pub struct Relay {
    child: std::process::Child,
    pub port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Relay {
    /// TLS in (with `client_ca`, a client certificate required), plain out to `target`.
    pub fn server(p: &Pki, target: u16, client_ca: Option<String>) -> Relay {
        let mut args = vec![
            "server".into(),
            p.server_cert(),
            p.server_key(),
            target.to_string(),
        ];
        args.extend(client_ca);
        Relay::start(&args)
    }

    /// Plain in, TLS out to `target` (verified against `ca`, presenting `identity`).
    pub fn client(ca: &str, target: u16, identity: Option<(String, String)>) -> Relay {
        let mut args = vec!["client".into(), ca.to_string(), target.to_string()];
        if let Some((c, k)) = identity {
            args.extend([c, k]);
        }
        Relay::start(&args)
    }

    fn start(args: &[String]) -> Relay {
        use std::io::BufRead;
        let mut child = Command::new(super::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/interop/tls_relay.py"
            ))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run tls_relay.py");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let port = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the relay's port")
            .parse()
            .unwrap();
        Relay {
            child,
            port,
            lines: rx,
        }
    }

    /// The relay's next line (a handshake it saw), waiting at most 15 s.
    pub fn next(&self) -> String {
        self.lines
            .recv_timeout(std::time::Duration::from_secs(15))
            .expect("a line from the relay")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
