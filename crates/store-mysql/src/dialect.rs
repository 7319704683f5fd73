//! What is MySQL's own: the schema, the upsert syntax, a multi-table
//! delete (MySQL cannot delete from a table its subquery reads), and
//! connecting.
//!
//! Owns: [`MySqlDialect`]. Must not: contain a query kala-store-sql has.

use kala_store::Result;
use kala_store_sql::{Dialect, ErrorClass};
use sqlx::MySql;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlQueryResult};

use crate::address::MySqlOptions;

/// MySQL and MariaDB for [`kala_store_sql::SqlStore`].
#[derive(Debug, Clone, Copy)]
pub struct MySqlDialect;

impl Dialect for MySqlDialect {
    type DB = MySql;
    type Options = MySqlOptions;

    const NAME: &'static str = "mysql";
    const SCHEMA: &'static str = include_str!("../migrations/0001_init.sql");
    const UPSERT_JOB: &'static str = " ON DUPLICATE KEY UPDATE job = VALUES(job)";
    const INSERT_IF_ABSENT: (&'static str, &'static str) = ("INSERT IGNORE ", "");
    const DELETE_RUNS_BY_SEQ: (&'static str, &'static str) =
        ("DELETE r FROM kala_runs r JOIN (", ") d ON r.seq = d.seq");
    // DELETE, not TRUNCATE: TRUNCATE commits implicitly and cannot be
    // part of a transaction.
    const DELETE_ALL: &'static [&'static str] = &[
        "DELETE FROM kala_jobs",
        "DELETE FROM kala_runs",
        "DELETE FROM kala_claims",
    ];

    async fn connect(options: &MySqlOptions) -> Result<MySqlPool> {
        MySqlPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(options.connect_options()?)
            .await
            .map_err(kala_store_sql::map_err::<MySqlDialect>)
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    fn classify(code: Option<&str>, message: &str) -> ErrorClass {
        crate::error::classify(code, message)
    }
}
