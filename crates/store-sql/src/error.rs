//! Mapping sqlx errors to store errors, the same for every database but
//! for the codes the [`Dialect`] classifies.
//!
//! Owns: [`map_err`], [`retryable`], and the errors of grouped calls
//! (`copy_error`, `abandoned`). Must not: know any database's codes.

use kala_store::StoreError;

use crate::dialect::{Dialect, ErrorClass};

fn class<D: Dialect>(e: &sqlx::Error) -> ErrorClass {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => ErrorClass::Unavailable,
        sqlx::Error::Database(db) => (D::CLASSIFY)(db.code().as_deref(), db.message()),
        _ => ErrorClass::Other,
    }
}

/// A sqlx error as a store error (`Unavailable` → HTTP 503).
pub fn map_err<D: Dialect>(e: sqlx::Error) -> StoreError {
    match class::<D>(&e) {
        ErrorClass::Unavailable => StoreError::Unavailable(format!("{}: {e}", D::SYNTAX.name)),
        ErrorClass::Retry | ErrorClass::Other => {
            StoreError::Backend(format!("{}: {e}", D::SYNTAX.name))
        }
    }
}

/// Whether `e` means the database cannot be reached (not a fault of
/// what was sent).
pub(crate) fn unavailable<D: Dialect>(e: &sqlx::Error) -> bool {
    class::<D>(e) == ErrorClass::Unavailable
}

pub(crate) fn retryable<D: Dialect>(e: &sqlx::Error) -> bool {
    class::<D>(e) == ErrorClass::Retry
}

/// The same error again, for each of the callers a grouped statement
/// failed for.
pub(crate) fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        StoreError::Full(why) => StoreError::Full(why.clone()),
        StoreError::Fenced(why) => StoreError::Fenced(why.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

/// A grouped call whose worker went away before answering (the runtime
/// is shutting down).
pub(crate) fn abandoned<D: Dialect>(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{}: the {what} was abandoned (the runtime is shutting down)",
        D::SYNTAX.name
    ))
}
