//! What is PostgreSQL's own: the schema, the upsert syntax, connecting
//! (with the schema created first when one is named).
//!
//! Owns: [`PgDialect`]. Must not: contain a query kala-store-sql has.

use kala_store::Result;
use kala_store_sql::{Dialect, ErrorClass};
use sqlx::postgres::{PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{Connection, Postgres};

use crate::address::PostgresOptions;

/// PostgreSQL for [`kala_store_sql::SqlStore`].
#[derive(Debug, Clone, Copy)]
pub struct PgDialect;

impl Dialect for PgDialect {
    type DB = Postgres;
    type Options = PostgresOptions;

    const NAME: &'static str = "postgres";
    const SCHEMA: &'static str = include_str!("../migrations/0001_init.sql");
    const UPSERT_JOB: &'static str = " ON CONFLICT (id) DO UPDATE SET job = EXCLUDED.job";
    const INSERT_IF_ABSENT: (&'static str, &'static str) = ("INSERT ", " ON CONFLICT DO NOTHING");
    const DELETE_RUNS_BY_SEQ: (&'static str, &'static str) =
        ("DELETE FROM kala_runs WHERE seq IN (", ")");
    const DELETE_ALL: &'static [&'static str] = &["TRUNCATE kala_jobs, kala_runs, kala_claims"];

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
        PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(map)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn classify(code: Option<&str>, message: &str) -> ErrorClass {
        crate::error::classify(code, message)
    }
}
