//! Addresses: Kala's `host:port/db[?sslmode=…]` or a `postgres://` URL,
//! credentials from the flags, an optional schema.
//!
//! Owns: [`PostgresOptions`] and its translation to sqlx's connect
//! options (no I/O). Must not: connect.

use kala_store::{Result, StoreError};
use kala_store_sql::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;

/// How to reach PostgreSQL.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Address, credentials and pool settings; the address is Kala's form
    /// `host:port/db` (optionally `?sslmode=…`) or a `postgres://` URL.
    pub connect: ConnectOptions,
    /// Keep kala's tables in this schema (created if missing) instead of
    /// the connection's default search path.
    pub schema: Option<String>,
}

impl PostgresOptions {
    /// The connect options these settings describe (no I/O).
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        let c = &self.connect;
        let address = c.address.trim();
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
        if !c.username.is_empty() {
            opts = opts.username(&c.username);
        }
        if !c.password.is_empty() {
            opts = opts.password(&c.password);
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
            connect: ConnectOptions {
                address: a.into(),
                ..ConnectOptions::default()
            },
            ..PostgresOptions::default()
        };
        assert!(o("").connect_options().is_err());
        let c = o("127.0.0.1:5432/test?sslmode=disable")
            .connect_options()
            .unwrap();
        assert_eq!(c.get_host(), "127.0.0.1");
        assert_eq!(c.get_port(), 5432);
        assert_eq!(c.get_database(), Some("test"));
        let mut named = o("postgres://someone@db.example:6543/jobs");
        named.connect.username = "kala".into();
        let c = named.connect_options().unwrap();
        assert_eq!(c.get_username(), "kala");
        assert_eq!(c.get_port(), 6543);
        let bad = PostgresOptions {
            schema: Some("x; DROP TABLE y".into()),
            ..o("h:1/d")
        };
        assert!(bad.connect_options().is_err());
    }
}
