//! # kala-store-postgres
//!
//! A [`JobStore`](kala_store::JobStore) on PostgreSQL (`--jobdb=postgres`), through sqlx.
//!
//! * The schema (`migrations/`) is applied at start-up by sqlx's migrator,
//!   which records what it applied in `kala_migrations` (not sqlx's default
//!   `_sqlx_migrations`, so kala can share a database with an application
//!   that uses sqlx migrations of its own). Tables: `kala_jobs(id, job)`,
//!   `kala_runs(seq, job_id, ran_at, run)`, `kala_claims`.
//! * Every [`Batch`](kala_store::Batch) is one transaction; jobs are upserted
//!   (`INSERT … ON CONFLICT DO UPDATE`, never Kala's racy read-then-write)
//!   in id order so that two batches cannot deadlock on each other, and a
//!   transaction that still loses a deadlock or serialisation race is
//!   retried.
//! * A write is acknowledged once PostgreSQL committed it (with the
//!   server's default `synchronous_commit = on`, that means flushed to WAL).
//! * The pool opens connections as needed: when the server goes away,
//!   calls fail with [`StoreError::Unavailable`](kala_store::StoreError::Unavailable) (HTTP 503) within
//!   [`ConnectOptions::acquire_timeout`], and they succeed again once it
//!   is back, with no restart of kala.
//!
//! The queries are kala-store-sql's, shared with MySQL; this crate says
//! only what is PostgreSQL's own: the address ([`address`]), the schema,
//! the syntax and connecting ([`dialect`]) and the error codes (`error`).

pub mod address;
pub mod dialect;
mod error;

pub use address::PostgresOptions;
pub use dialect::PgDialect;
pub use kala_store_sql::{ConnectOptions, SqlStore};

/// The PostgreSQL store: [`SqlStore`] speaking [`PgDialect`]
/// (`PostgresStore::connect(&options)`).
pub type PostgresStore = SqlStore<PgDialect>;
