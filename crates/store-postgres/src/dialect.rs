//! What is PostgreSQL's own beyond its syntax (`Syntax::POSTGRES` in
//! kala-store-sql): connecting, with the schema created first when one is
//! named.
//!
//! Owns: [`PgDialect`]. Must not: contain a query kala-store-sql has.

use kala_store::Result;
use kala_store_sql::{Classify, Dialect, Syntax};
use sqlx::postgres::PgPool;
use sqlx::{Connection, Postgres};

use crate::address::PostgresOptions;

/// PostgreSQL for [`kala_store_sql::SqlStore`].
pub struct PgDialect;

impl Dialect for PgDialect {
    type DB = Postgres;
    type Options = PostgresOptions;

    async fn connect(options: &PostgresOptions) -> Result<PgPool> {
        let map = kala_store_sql::map_err::<PgDialect>;
        let connect = options.connect_options()?;
        if let Some(schema) = &options.schema {
            // search_path names a schema that may not exist yet.
            let mut conn = sqlx::PgConnection::connect_with(&connect)
                .await
                .map_err(map)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&mut conn)
            .await
            .map_err(map)?;
            conn.close().await.map_err(map)?;
        }
        options.connect.pool::<PgDialect>(connect).await
    }

    const SYNTAX: Syntax = Syntax::POSTGRES;
    const CLASSIFY: Classify = crate::error::classify;
}
