//! PostgreSQL's error codes, classified.
//!
//! Owns: [`classify`]. Must not: map errors to HTTP (the API does).

use kala_store_sql::ErrorClass;

/// Class 08: connection exception; 57P01–57P03: the server is shutting
/// down or starting up; 25P03: the session sat idle in a transaction past
/// `idle_in_transaction_session_timeout` and was ended; 40P01 deadlock,
/// 40001 serialisation failure and 55P03 (a lock not granted within
/// `lock_timeout`: another instance's transaction holds it, and the
/// server ends that one within its idle timeout) are retried.
pub(crate) fn classify(code: Option<&str>, _message: &str) -> ErrorClass {
    match code.unwrap_or_default() {
        "40P01" | "40001" | "55P03" => ErrorClass::Retry,
        "25P03" => ErrorClass::Unavailable,
        c if c.starts_with("08") || c.starts_with("57P") => ErrorClass::Unavailable,
        _ => ErrorClass::Other,
    }
}
