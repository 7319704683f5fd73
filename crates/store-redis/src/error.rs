//! Redis errors as store errors: a lost or refused connection or a
//! timeout is `Unavailable` (HTTP 503).
//!
//! Owns: [`map_err`].

use kala_store::StoreError;

pub(crate) fn map_err(e: redis::RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Backend(format!("redis: {e}"))
    }
}
