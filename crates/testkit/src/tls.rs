//! Certificates for HTTPS tests, made with the `openssl` command: a
//! private CA and a server certificate it signed for the given names.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// PEM files in a test's directory.
pub struct TlsFiles {
    /// The CA to trust.
    pub ca: PathBuf,
    /// The server's certificate (signed by `ca`) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) -> io::Result<()> {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("openssl is needed for this test: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("openssl {args:?} failed")))
    }
}

/// A CA and a server certificate for `san` (an openssl subjectAltName
/// value, e.g. `IP:127.0.0.1,DNS:localhost`), written into `dir`.
pub fn ca_and_server_cert(dir: &Path, san: &str) -> io::Result<TlsFiles> {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kala test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        dir,
    )?;
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=kala test server",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
        dir,
    )?;
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"),
    )?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
        dir,
    )?;
    Ok(TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    })
}
