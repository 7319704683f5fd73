//! Where Consul is and how to talk to it: `--jobdb-address` (Kala's
//! `host:port`, or an `http(s)://` URL; default `CONSUL_HTTP_ADDR`, else
//! `127.0.0.1:8500`), an ACL token (`--jobdb-token`, `CONSUL_HTTP_TOKEN`),
//! HTTP basic auth for a proxy in front (`--jobdb-username/password`), TLS
//! (`--jobdb-tls-*`).
//!
//! Owns: [`ConsulOptions`]. Must not: send requests.

use std::path::PathBuf;
use std::time::Duration;

use kala_store::{Result, StoreError};

/// How to reach Consul.
#[derive(Debug, Clone)]
pub struct ConsulOptions {
    /// `host:port` or a URL; empty: `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`.
    pub address: String,
    /// ACL token (`X-Consul-Token`); empty: `CONSUL_HTTP_TOKEN`, else none.
    pub token: String,
    /// HTTP basic auth (a proxy in front of Consul), when not empty.
    pub username: String,
    pub password: String,
    /// The key prefix (default `kala`, Kala's).
    pub prefix: String,
    /// HTTPS: the CA to trust, a client certificate and key, the name to
    /// verify instead of the address's host.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_servername: Option<String>,
    /// A request that takes longer than this fails (default 5 s).
    pub timeout: Duration,
}

impl Default for ConsulOptions {
    fn default() -> Self {
        ConsulOptions {
            address: String::new(),
            token: String::new(),
            username: String::new(),
            password: String::new(),
            prefix: "kala".into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_servername: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A resolved address: the URL to send to, and (with a TLS server name)
/// the name to verify plus the socket address it stands for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Endpoint {
    pub base: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl ConsulOptions {
    fn tls_wanted(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some()
    }

    pub(crate) fn endpoint(&self) -> Result<Endpoint> {
        let env = std::env::var("CONSUL_HTTP_ADDR").unwrap_or_default();
        let address = if !self.address.is_empty() {
            self.address.as_str()
        } else if !env.is_empty() {
            env.as_str()
        } else {
            "127.0.0.1:8500"
        };
        let bad = |why: &str| StoreError::Backend(format!("--jobdb-address {address:?}: {why}"));
        let (tls, rest) = if let Some(r) = address.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = address.strip_prefix("http://") {
            (self.tls_wanted(), r)
        } else if address.contains("://") {
            return Err(bad("expected host:port, http:// or https://"));
        } else {
            (self.tls_wanted(), address)
        };
        let hostport = rest.trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') || hostport.contains('@') {
            return Err(bad("expected host:port"));
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?;
                (h.to_string(), port)
            }
            _ => (hostport.to_string(), 8500),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let scheme = if tls { "https" } else { "http" };
        let shown = self.tls_servername.clone().filter(|n| !n.is_empty() && tls);
        let base = format!("{scheme}://{}:{port}", shown.as_deref().unwrap_or(&host));
        Ok(Endpoint {
            base,
            host,
            port,
            tls,
        })
    }

    pub(crate) fn token(&self) -> Option<String> {
        if !self.token.is_empty() {
            return Some(self.token.clone());
        }
        std::env::var("CONSUL_HTTP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
    }

    /// The prefix without slashes at either end.
    pub(crate) fn prefix(&self) -> Result<String> {
        let p = self.prefix.trim_matches('/');
        let p = if p.is_empty() { "kala" } else { p };
        if p.chars().any(|c| c.is_control() || c == '?' || c == '#') {
            return Err(StoreError::Backend(format!(
                "--jobdb-namespace {:?}: not a usable Consul key prefix",
                self.prefix
            )));
        }
        Ok(p.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(address: &str) -> Result<Endpoint> {
        ConsulOptions {
            address: address.into(),
            ..ConsulOptions::default()
        }
        .endpoint()
    }

    #[test]
    fn addresses() {
        let e = ep("127.0.0.1:8500").unwrap();
        assert_eq!(e.base, "http://127.0.0.1:8500");
        assert_eq!(
            ep("consul.internal").unwrap().base,
            "http://consul.internal:8500"
        );
        assert_eq!(ep("https://c:8501/").unwrap().base, "https://c:8501");
        assert!(ep("consul://x").is_err());
        assert!(ep("a:b").is_err());
        assert!(ep("user@host:1").is_err());
        let tls = ConsulOptions {
            address: "10.0.0.1:8501".into(),
            tls_ca: Some("/ca.pem".into()),
            tls_servername: Some("consul.example".into()),
            ..ConsulOptions::default()
        }
        .endpoint()
        .unwrap();
        assert_eq!(tls.base, "https://consul.example:8501");
        assert_eq!(
            (tls.host.as_str(), tls.port, tls.tls),
            ("10.0.0.1", 8501, true)
        );
    }

    #[test]
    fn prefixes() {
        let p = |s: &str| {
            ConsulOptions {
                prefix: s.into(),
                ..ConsulOptions::default()
            }
            .prefix()
        };
        assert_eq!(p("").unwrap(), "kala");
        assert_eq!(p("/a/b/").unwrap(), "a/b");
        assert!(p("a?b").is_err());
    }
}
