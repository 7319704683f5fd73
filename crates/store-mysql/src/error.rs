//! MySQL's and MariaDB's errors, classified.
//!
//! Owns: [`classify`]. Must not: map errors to HTTP (the API does).

use kala_store_sql::ErrorClass;

/// SQLSTATE 40001 (deadlock, error 1213) and a lock wait timeout (1205)
/// are retried; class 08 and a server shutting down are "unavailable".
pub(crate) fn classify(code: Option<&str>, message: &str) -> ErrorClass {
    let code = code.unwrap_or_default();
    if code == "40001" || message.contains("Lock wait timeout") {
        ErrorClass::Retry
    } else if code.starts_with("08") || code == "HY000" && message.contains("shutdown") {
        ErrorClass::Unavailable
    } else {
        ErrorClass::Other
    }
}
