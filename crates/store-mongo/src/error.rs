//! The driver's errors as store errors: unreachable servers are
//! `Unavailable` (HTTP 503); server error codes for the store's own checks.
//!
//! Owns: [`map_err`], [`error_code`]. Must not: map errors to HTTP.

use kala_store::StoreError;
use mongodb::error::ErrorKind;

pub(crate) fn map_err(e: mongodb::error::Error) -> StoreError {
    match *e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => StoreError::Unavailable(format!("mongo: {e}")),
        _ if e.contains_label("RetryableWriteError") => {
            StoreError::Unavailable(format!("mongo: {e}"))
        }
        _ => StoreError::Backend(format!("mongo: {e}")),
    }
}

pub(crate) fn error_code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}
