//! # kala-store-mysql
//!
//! A [`JobStore`](kala_store::JobStore) on MySQL or MariaDB (`--jobdb=mysql`, `--jobdb=mariadb`),
//! through sqlx.
//!
//! * The schema (`migrations/`) is applied at start-up by sqlx's migrator,
//!   recorded in `kala_migrations`. Tables: `kala_jobs(id, job)`,
//!   `kala_runs(seq, job_id, ran_at, run)`, `kala_claims`, all InnoDB.
//! * Every [`Batch`](kala_store::Batch) is one transaction; jobs are upserted with
//!   `INSERT … ON DUPLICATE KEY UPDATE` in id order; a transaction that
//!   loses a deadlock is retried.
//! * A write is acknowledged once the server committed it (InnoDB's default
//!   `innodb_flush_log_at_trx_commit = 1` flushes the redo log on commit).
//! * Addresses: Kala's Go-driver forms `tcp(host:3306)/db`, `(host)/db`,
//!   `unix(/path/to.sock)/db`, plus `host:port/db` and `mysql://` URLs.
//!   `?tls=true|custom|skip-verify|preferred|false` is understood; other
//!   Go-driver parameters (`parseTime`, `charset`, …) are ignored.
//! * When the server goes away calls fail with [`StoreError::Unavailable`](kala_store::StoreError::Unavailable)
//!   (HTTP 503); the pool reconnects by itself when it is back.
//!
//! The queries are kala-store-sql's, shared with PostgreSQL; this crate
//! says only what is MySQL's own: the address ([`address`]), the schema,
//! the syntax and connecting ([`dialect`]) and the error codes (`error`).

pub mod address;
pub mod dialect;
mod error;

pub use address::MySqlOptions;
pub use dialect::MySqlDialect;
pub use kala_store_sql::{ConnectOptions, SqlStore};

/// The MySQL/MariaDB store: [`SqlStore`] speaking [`MySqlDialect`]
/// (`MySqlStore::connect(&options)`).
pub type MySqlStore = SqlStore<MySqlDialect>;
