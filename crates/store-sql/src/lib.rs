//! # kala-store-sql
//!
//! kala's SQL job store, written once. [`SqlStore`] implements
//! [`kala_store::JobStore`] over any sqlx database for which a [`Dialect`]
//! says the few things that differ: how to connect, the schema, the upsert
//! and insert-if-absent syntax, how to delete a set of run rows, and which
//! errors mean "unavailable" or "retry". Placeholders are sqlx's
//! `QueryBuilder`'s business (`$n` or `?`), so the SQL text, the batch
//! logic, retention, claims and migrations live here and nowhere else.
//!
//! Implementations: `kala-store-postgres` and `kala-store-mysql`.
//!
//! Modules: [`dialect`] (the trait and the shared connection settings),
//! [`syntax`] (every statement that differs, both databases side by
//! side), `store` ([`SqlStore`] and its queries), [`batch`] (a batch
//! encoded once, groups merged, the transaction retry), `group` (the
//! queues of group commit and grouped reads), `error` (the errors every
//! driver shares). Features `postgres` and `mysql` enable sqlx's drivers.
//!
//! Tables: `kala_jobs(id, job)`, `kala_runs(seq, job_id, ran_at, run)`,
//! `kala_claims(job_id, scheduled_at, owner, expires_at)`; values are the
//! JSON of `kala_store::json`. Batches applied while others are being
//! written wait, and the next of four writers takes every waiting batch
//! into one transaction (group commit: a group pays one transaction's
//! round trips and WAL flush); each batch's fence is checked in it, and
//! a batch whose fence fails is left out of the group alone. Concurrent
//! `get`s likewise become one `SELECT … IN (…)`. Jobs are upserted in id
//! order so two transactions cannot deadlock on each other.

mod audit;
pub mod batch;
mod cluster;
mod commit;
pub mod dialect;
mod error;
mod group;
mod migrate;
mod store;
pub mod syntax;

pub use dialect::{Classify, ConnectOptions, Dialect, ErrorClass, RowsAffected};
pub use error::map_err;
pub use migrate::migrator;
pub use store::SqlStore;
pub use syntax::{SessionSetting, Syntax};
