//! PostgreSQL's error codes, classified.
//!
//! Owns: [`classify`]. Must not: map errors to HTTP (the API does).

use kala_store_sql::ErrorClass;

/// Class 08: connection exception; 57P01–57P03: the server is shutting
/// down or starting up; 40P01 deadlock and 40001 serialisation failure
/// are retried.
pub(crate) fn classify(code: Option<&str>, _message: &str) -> ErrorClass {
    match code.unwrap_or_default() {
        "40P01" | "40001" => ErrorClass::Retry,
        c if c.starts_with("08") || c.starts_with("57P") => ErrorClass::Unavailable,
        _ => ErrorClass::Other,
    }
}
