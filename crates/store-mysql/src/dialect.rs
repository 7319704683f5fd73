//! What is MySQL's own beyond its syntax (`Syntax::MYSQL` in
//! kala-store-sql): connecting, with the Go-driver address forms and TLS.
//!
//! Owns: [`MySqlDialect`]. Must not: contain a query kala-store-sql has.

use kala_store::Result;
use kala_store_sql::{Classify, Dialect, Syntax};
use sqlx::MySql;
use sqlx::mysql::MySqlPool;

use crate::address::MySqlOptions;

/// MySQL and MariaDB for [`kala_store_sql::SqlStore`].
pub struct MySqlDialect;

impl Dialect for MySqlDialect {
    type DB = MySql;
    type Options = MySqlOptions;

    async fn connect(options: &MySqlOptions) -> Result<MySqlPool> {
        let connect = options.connect_options()?;
        let target = format!(
            "{}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or_default()
        );
        options.connect.pool::<MySqlDialect>(connect, &target).await
    }

    const SYNTAX: Syntax = Syntax::MYSQL;
    const CLASSIFY: Classify = crate::error::classify;
}
