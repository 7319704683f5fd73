//! Times in keys: nanoseconds, offset and zero-padded so that keys sort
//! as the times do.

use jiff::Timestamp;

/// Shifts nanosecond timestamps so that every realistic one is positive
/// and fits 31 decimal digits; fixed-width keys then sort as numbers.
pub(crate) const NS_OFFSET: i128 = 1_000_000_000_000_000_000_000_000_000;

pub(crate) fn padded_ns(t: Timestamp) -> String {
    format!("{:031}", t.as_nanosecond() + NS_OFFSET)
}
