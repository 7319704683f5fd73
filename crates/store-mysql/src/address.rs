//! Addresses: Kala's Go-driver forms `tcp(host:3306)/db`, `(host)/db`,
//! `unix(/path/to.sock)/db`, plus `host:port/db` and `mysql://` URLs, and
//! the TLS flags.
//!
//! Owns: [`MySqlOptions`] and its translation to sqlx's connect options
//! (no I/O). Must not: connect.

use kala_store::{Result, StoreError};
use kala_store_sql::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use std::path::PathBuf;
use std::str::FromStr;

/// How to reach MySQL/MariaDB.
#[derive(Debug, Clone, Default)]
pub struct MySqlOptions {
    /// Address, credentials and pool settings; the address in one of the
    /// forms above.
    pub connect: ConnectOptions,
    /// `--jobdb-tls-capath`: CA file; turns on TLS with certificate and
    /// host name verification.
    pub tls_ca: Option<PathBuf>,
    /// `--jobdb-tls-certpath`: client certificate.
    pub tls_cert: Option<PathBuf>,
    /// `--jobdb-tls-keypath`: client key.
    pub tls_key: Option<PathBuf>,
    /// `--jobdb-tls-servername`: not supported (see [`MySqlOptions::connect_options`]).
    pub tls_servername: Option<String>,
}

fn bad(msg: impl Into<String>) -> StoreError {
    StoreError::Backend(msg.into())
}

impl MySqlOptions {
    /// The connect options these settings describe (no I/O).
    pub fn connect_options(&self) -> Result<MySqlConnectOptions> {
        let c = &self.connect;
        let address = c.address.trim();
        if address.is_empty() {
            return Err(bad(
                "--jobdb-address is required for mysql: tcp(host:3306)/database, host:port/database or a mysql:// URL",
            ));
        }
        let mut opts = if address.starts_with("mysql://") || address.starts_with("mariadb://") {
            MySqlConnectOptions::from_str(address)
                .map_err(|e| bad(format!("--jobdb-address {address:?} is not usable: {e}")))?
        } else {
            parse_go_dsn(address)?
        };
        if !c.username.is_empty() {
            opts = opts.username(&c.username);
        }
        if !c.password.is_empty() {
            opts = opts.password(&c.password);
        }
        if self
            .tls_servername
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(bad(
                "--jobdb-tls-servername is not supported: kala checks the server certificate against the host in --jobdb-address, so connect by that name",
            ));
        }
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => {}
            (Some(ca), cert, key) => {
                if cert.is_some() != key.is_some() {
                    return Err(bad(
                        "--jobdb-tls-certpath and --jobdb-tls-keypath go together",
                    ));
                }
                opts = opts.ssl_mode(MySqlSslMode::VerifyIdentity).ssl_ca(ca);
                if let (Some(cert), Some(key)) = (cert, key) {
                    opts = opts.ssl_client_cert(cert).ssl_client_key(key);
                }
            }
            (None, _, _) => {
                return Err(bad(
                    "--jobdb-tls-certpath/--jobdb-tls-keypath need --jobdb-tls-capath",
                ));
            }
        }
        Ok(opts)
    }
}

/// Go MySQL driver DSN addresses (what Kala documents), without the
/// `user:password@` part that Kala adds from its flags.
fn parse_go_dsn(address: &str) -> Result<MySqlConnectOptions> {
    let (main, params) = address.split_once('?').unwrap_or((address, ""));
    let shape = || {
        bad(format!(
            "--jobdb-address {address:?}: expected tcp(host:3306)/database or host:port/database"
        ))
    };
    // `proto(inner)/db`, `(inner)/db` or `host:port/db`; a socket path has
    // slashes of its own, so the parenthesis is found first.
    let (proto, inner, db) = match main.find('(') {
        Some(open) => {
            let close = main[open..]
                .find(')')
                .map(|c| open + c)
                .ok_or_else(|| bad(format!("--jobdb-address {address:?}: missing ')'")))?;
            let db = main[close + 1..].strip_prefix('/').ok_or_else(shape)?;
            (&main[..open], &main[open + 1..close], db)
        }
        None => {
            let (host_port, db) = main.split_once('/').ok_or_else(shape)?;
            ("tcp", host_port, db)
        }
    };
    if proto.contains('@') || inner.contains('@') {
        return Err(bad(format!(
            "--jobdb-address {address:?}: give the user and password with --jobdb-username/--jobdb-password"
        )));
    }
    let mut opts = MySqlConnectOptions::new();
    if !db.is_empty() {
        opts = opts.database(db);
    }
    let host_port = match proto {
        "unix" => return finish(opts.socket(inner), params, address),
        "tcp" | "" => inner,
        other => {
            return Err(bad(format!(
                "--jobdb-address {address:?}: unknown protocol {other:?} (use tcp or unix)"
            )));
        }
    };
    let (host, port) = split_host_port(host_port)
        .ok_or_else(|| bad(format!("--jobdb-address {address:?}: bad host:port")))?;
    if !host.is_empty() {
        opts = opts.host(&host);
    }
    if let Some(port) = port {
        opts = opts.port(port);
    }
    finish(opts, params, address)
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), Some(p.parse().ok()?))),
        _ => Some((s.to_string(), None)),
    }
}

fn finish(
    mut opts: MySqlConnectOptions,
    params: &str,
    address: &str,
) -> Result<MySqlConnectOptions> {
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "tls" {
            opts = opts.ssl_mode(match v {
                "true" | "custom" => MySqlSslMode::VerifyIdentity,
                "skip-verify" => MySqlSslMode::Required,
                "preferred" => MySqlSslMode::Preferred,
                "false" => MySqlSslMode::Disabled,
                other => {
                    return Err(bad(format!(
                        "--jobdb-address {address:?}: tls={other:?} (use true, custom, skip-verify, preferred or false)"
                    )));
                }
            });
        } else {
            tracing::warn!(parameter = k, "mysql: ignoring a Go-driver DSN parameter");
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(a: &str) -> MySqlConnectOptions {
        MySqlOptions {
            connect: ConnectOptions {
                address: a.into(),
                ..ConnectOptions::default()
            },
            ..MySqlOptions::default()
        }
        .connect_options()
        .unwrap()
    }

    #[test]
    fn kala_address_forms() {
        let o = opts("tcp(db.example:3307)/kala");
        assert_eq!((o.get_host(), o.get_port()), ("db.example", 3307));
        assert_eq!(o.get_database(), Some("kala"));
        let o = opts("(db.example)/kala");
        assert_eq!((o.get_host(), o.get_port()), ("db.example", 3306));
        let o = opts("127.0.0.1:3306/test");
        assert_eq!((o.get_host(), o.get_port()), ("127.0.0.1", 3306));
        let o = opts("tcp([::1]:3308)/x?tls=skip-verify&parseTime=true");
        assert_eq!((o.get_host(), o.get_port()), ("::1", 3308));
        assert!(matches!(o.get_ssl_mode(), MySqlSslMode::Required));
        let o = opts("unix(/run/mysqld/mysqld.sock)/test");
        assert!(o.get_socket().is_some());
        let o = opts("mysql://root@127.0.0.1:3306/test");
        assert_eq!(o.get_username(), "root");
    }

    #[test]
    fn bad_addresses_and_tls_flags() {
        let err = |o: MySqlOptions| o.connect_options().unwrap_err().to_string();
        let o = |a: &str| MySqlOptions {
            connect: ConnectOptions {
                address: a.into(),
                ..ConnectOptions::default()
            },
            ..MySqlOptions::default()
        };
        assert!(err(o("")).contains("--jobdb-address is required"));
        assert!(err(o("tcp(h:3306)")).contains("expected"));
        assert!(err(o("udp(h)/db")).contains("unknown protocol"));
        assert!(err(o("tcp(h:3306/db")).contains("')'"));
        assert!(err(o("u:p@tcp(h)/db")).contains("--jobdb-username"));
        assert!(err(o("h:notaport/db")).contains("host:port"));
        assert!(err(o("h/db?tls=maybe")).contains("tls="));
        let tls = MySqlOptions {
            tls_cert: Some("c.pem".into()),
            ..o("h/db")
        };
        assert!(err(tls).contains("need --jobdb-tls-capath"));
        let tls = MySqlOptions {
            tls_ca: Some("ca.pem".into()),
            tls_cert: Some("c.pem".into()),
            ..o("h/db")
        };
        assert!(err(tls).contains("go together"));
        let tls = MySqlOptions {
            tls_servername: Some("db".into()),
            ..o("h/db")
        };
        assert!(err(tls).contains("not supported"));
        let ok = MySqlOptions {
            tls_ca: Some("ca.pem".into()),
            ..o("h/db")
        }
        .connect_options()
        .unwrap();
        assert!(matches!(ok.get_ssl_mode(), MySqlSslMode::VerifyIdentity));
    }
}
