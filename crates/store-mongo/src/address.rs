//! Addresses: Kala's comma-separated host list or a `mongodb://` URI,
//! credentials, the database and whether batches use transactions.
//!
//! Owns: [`MongoOptions`], [`Transactions`]. Must not: connect.

use std::time::Duration;

use kala_store::{Result, StoreError};

/// Whether batches use multi-document transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transactions {
    /// When the server is a replica set or a sharded cluster.
    #[default]
    Auto,
    /// Never (ordered single-document writes).
    Never,
}

/// How to reach MongoDB.
#[derive(Debug, Clone)]
pub struct MongoOptions {
    /// Kala's comma-separated host list (`host1:27017,host2`), or a
    /// `mongodb://` URI. Empty = `127.0.0.1:27017`.
    pub address: String,
    pub username: String,
    pub password: String,
    /// Database name (default `kala`, as in Kala).
    pub database: String,
    pub transactions: Transactions,
    /// How long a call waits for a usable server before it fails.
    pub server_selection_timeout: Duration,
}

impl Default for MongoOptions {
    fn default() -> Self {
        MongoOptions {
            address: String::new(),
            username: String::new(),
            password: String::new(),
            database: "kala".into(),
            transactions: Transactions::Auto,
            server_selection_timeout: Duration::from_secs(3),
        }
    }
}

impl MongoOptions {
    /// The connection URI these options describe.
    pub fn uri(&self) -> Result<String> {
        let address = self.address.trim();
        if address.starts_with("mongodb+srv://") {
            return Err(StoreError::Backend(
                "mongodb+srv:// addresses are not supported (kala is built without the DNS resolver); list the hosts"
                    .into(),
            ));
        }
        if address.starts_with("mongodb://") {
            return Ok(address.to_string());
        }
        let hosts = if address.is_empty() {
            "127.0.0.1:27017"
        } else {
            address
        };
        if hosts.contains('/') || hosts.contains('@') {
            return Err(StoreError::Backend(format!(
                "--jobdb-address {address:?}: expected host[:port][,host[:port]…] or a mongodb:// URI"
            )));
        }
        Ok(format!("mongodb://{hosts}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let o = |a: &str| MongoOptions {
            address: a.into(),
            ..MongoOptions::default()
        };
        assert_eq!(o("").uri().unwrap(), "mongodb://127.0.0.1:27017/");
        assert_eq!(o("a:1,b").uri().unwrap(), "mongodb://a:1,b/");
        assert_eq!(
            o("mongodb://a:1/?replicaSet=rs").uri().unwrap(),
            "mongodb://a:1/?replicaSet=rs"
        );
        assert!(o("mongodb+srv://x").uri().is_err());
        assert!(o("a/b").uri().is_err());
    }
}
