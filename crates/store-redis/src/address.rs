//! Addresses: `host:port` or a `redis://`/`rediss://` URL, with the
//! password from `--jobdb-password`.
//!
//! Owns: [`RedisOptions`]. Must not: connect.

use std::time::Duration;

use kala_store::{Result, StoreError};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `host:port`, or a `redis://` / `rediss://` URL. Empty = `127.0.0.1:6379`.
    pub address: String,
    /// Sent with AUTH when not empty.
    pub password: String,
    /// Key prefix (default `kala`).
    pub prefix: String,
    /// A command that takes longer than this fails (default 5 s).
    pub response_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            address: String::new(),
            password: String::new(),
            prefix: "kala".into(),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisOptions {
    /// The connection URL these options describe.
    pub fn url(&self) -> Result<String> {
        let address = if self.address.is_empty() {
            "127.0.0.1:6379"
        } else {
            self.address.as_str()
        };
        let mut url = if address.starts_with("redis://") || address.starts_with("rediss://") {
            address.to_string()
        } else {
            if address.contains('/') || address.contains('@') {
                return Err(StoreError::Backend(format!(
                    "--jobdb-address {address:?}: expected host:port or a redis:// URL"
                )));
            }
            format!("redis://{address}")
        };
        if !self.password.is_empty() {
            let (scheme, rest) = url.split_once("://").unwrap_or(("redis", &url));
            if rest.contains('@') {
                return Err(StoreError::Backend(
                    "give the Redis password either in the URL or in --jobdb-password, not both"
                        .into(),
                ));
            }
            url = format!("{scheme}://:{}@{rest}", percent_encode(&self.password));
        }
        Ok(url)
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let o = |a: &str, p: &str| RedisOptions {
            address: a.into(),
            password: p.into(),
            ..RedisOptions::default()
        };
        assert_eq!(o("", "").url().unwrap(), "redis://127.0.0.1:6379");
        assert_eq!(o("h:1", "").url().unwrap(), "redis://h:1");
        assert_eq!(o("h:1", "p@ss").url().unwrap(), "redis://:p%40ss@h:1");
        assert_eq!(o("redis://h:1/2", "").url().unwrap(), "redis://h:1/2");
        assert!(o("redis://u:p@h:1", "x").url().is_err());
        assert!(o("h:1/db", "").url().is_err());
    }
}
