//! Addresses: Kala's `host:port/db[?sslmode=…]` or a `postgres://` URL,
//! credentials from the flags, an optional schema.
//!
//! Owns: [`PostgresOptions`] and its translation to sqlx's connect
//! options (no I/O). Must not: connect.

use std::str::FromStr;
use std::time::Duration;

use kala_store::{Result, StoreError};
use sqlx::postgres::PgConnectOptions;

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Kala's form `host:port/db` (optionally `?sslmode=…`), or a full
    /// `postgres://` URL.
    pub address: String,
    /// Overrides the URL's user when not empty.
    pub username: String,
    /// Overrides the URL's password when not empty.
    pub password: String,
    /// Keep kala's tables in this schema (created if missing) instead of
    /// the connection's default search path.
    pub schema: Option<String>,
    pub max_connections: u32,
    /// How long a call waits for a connection before it fails with
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            address: String::new(),
            username: String::new(),
            password: String::new(),
            schema: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl PostgresOptions {
    /// The connect options these settings describe (no I/O).
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        let address = self.address.trim();
        if address.is_empty() {
            return Err(StoreError::Backend(
                "--jobdb-address is required for postgres: host:port/database or a postgres:// URL"
                    .into(),
            ));
        }
        let url = if address.starts_with("postgres://") || address.starts_with("postgresql://") {
            address.to_string()
        } else {
            format!("postgres://{address}")
        };
        let mut opts = PgConnectOptions::from_str(&url).map_err(|e| {
            StoreError::Backend(format!("--jobdb-address {address:?} is not usable: {e}"))
        })?;
        if !self.username.is_empty() {
            opts = opts.username(&self.username);
        }
        if !self.password.is_empty() {
            opts = opts.password(&self.password);
        }
        if let Some(schema) = &self.schema {
            check_identifier(schema)?;
            opts = opts.options([("search_path", schema.as_str())]);
        }
        Ok(opts.application_name("kala"))
    }
}

/// Schema names go into SQL text; allow only plain identifiers.
fn check_identifier(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "schema {name:?}: use letters, digits and _ only"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let o = |a: &str| PostgresOptions {
            address: a.into(),
            ..PostgresOptions::default()
        };
        assert!(o("").connect_options().is_err());
        let c = o("127.0.0.1:5432/test?sslmode=disable")
            .connect_options()
            .unwrap();
        assert_eq!(c.get_host(), "127.0.0.1");
        assert_eq!(c.get_port(), 5432);
        assert_eq!(c.get_database(), Some("test"));
        let c = PostgresOptions {
            username: "kala".into(),
            ..o("postgres://someone@db.example:6543/jobs")
        }
        .connect_options()
        .unwrap();
        assert_eq!(c.get_username(), "kala");
        assert_eq!(c.get_port(), 6543);
        let bad = PostgresOptions {
            schema: Some("x; DROP TABLE y".into()),
            ..o("h:1/d")
        };
        assert!(bad.connect_options().is_err());
    }
}
