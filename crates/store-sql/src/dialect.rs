//! What a SQL database must say for [`crate::SqlStore`] to run on it.
//!
//! Owns: the [`Dialect`] trait. Must not: contain SQL shared by every
//! database (that is `store`).

use std::future::Future;

use kala_store::Result;
use sqlx::{Database, Pool};

/// How a database error is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The server is away or going away: HTTP 503, nothing written.
    Unavailable,
    /// A deadlock or serialisation failure: run the transaction again.
    Retry,
    /// Anything else: reported as a storage error.
    Other,
}

/// The differences between SQL databases, and nothing else.
pub trait Dialect: Send + Sync + 'static {
    type DB: Database;
    /// What the backend's flags become (address, credentials, TLS, …).
    type Options: Send + Sync;

    /// `postgres`, `mysql`: in messages and `JobStore::name`.
    const NAME: &'static str;
    /// The schema (`CREATE TABLE IF NOT EXISTS …`), migration 1.
    const SCHEMA: &'static str;
    /// Appended to `INSERT INTO kala_jobs (id, job) VALUES …` to replace
    /// an existing row.
    const UPSERT_JOB: &'static str;
    /// Wraps `INSERT INTO kala_claims … VALUES (…)` so that an existing
    /// row is left alone and no error is raised: (before, after).
    const INSERT_IF_ABSENT: (&'static str, &'static str);
    /// Wraps a `SELECT seq …` to delete those run rows: (before, after).
    const DELETE_RUNS_BY_SEQ: (&'static str, &'static str);
    /// Empties every table, in one transaction.
    const DELETE_ALL: &'static [&'static str];

    /// A pool on `options`, with the schema the options name in place.
    fn connect(options: &Self::Options) -> impl Future<Output = Result<Pool<Self::DB>>> + Send;

    /// Rows a statement changed (matched, for an `UPDATE` on MySQL with
    /// `CLIENT_FOUND_ROWS`, which sqlx sets).
    fn rows_affected(result: &<Self::DB as Database>::QueryResult) -> u64;

    /// Classifies an error the server returned (`sqlx::Error::Database`);
    /// I/O, pool and TLS errors are `Unavailable` for every database.
    fn classify(code: Option<&str>, message: &str) -> ErrorClass;
}
