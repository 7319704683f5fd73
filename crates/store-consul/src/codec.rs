//! How kala's values are written in Consul's KV store: JSON documents,
//! nanosecond times as fixed-width keys that sort as numbers, and the
//! lease's `token|expiry|owner` value.
//!
//! Owns: the encodings. Must not: read or write Consul (`client`), or know
//! the key layout (`store`).

use jiff::Timestamp;
use kala_job::Job;
use kala_store::{Result, StoreError};
use serde::Serialize;

/// Shifts nanosecond timestamps so that every realistic one is positive
/// and fits 31 decimal digits; fixed-width keys then sort as numbers.
pub(crate) const NS_OFFSET: i128 = 1_000_000_000_000_000_000_000_000_000;

pub(crate) fn padded_ns(t: Timestamp) -> String {
    format!("{:031}", t.as_nanosecond() + NS_OFFSET)
}

pub(crate) fn ns_of_key(key: &str) -> Option<i128> {
    let tail = key.rsplit('/').next()?;
    let digits = tail.split('-').next()?;
    digits.parse::<i128>().ok().map(|n| n - NS_OFFSET)
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(format!("encoding: {e}")))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// A job written by kala (its own JSON) or by Kala (the job as Kala's API
/// renders it, at the same key).
pub(crate) fn decode_job(key: &str, bytes: &[u8]) -> Result<Job> {
    match serde_json::from_slice::<Job>(bytes) {
        Ok(job) => Ok(job),
        Err(ours) => {
            let value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
                    key: key.to_string(),
                    reason: e.to_string(),
                })?;
            kala_job::wire::job_from_rendered(value).map_err(|kalas| StoreError::Corrupt {
                key: key.to_string(),
                reason: format!("neither kala's job ({ours}) nor Kala's ({kalas})"),
            })
        }
    }
}

/// A lease's value: `token|expiry (padded ns)|owner`.
pub(crate) fn lease_of(partition: u32, value: &[u8]) -> Option<kala_store::Lease> {
    let text = std::str::from_utf8(value).ok()?;
    let mut it = text.splitn(3, '|');
    let token = it.next()?.parse().ok()?;
    let expires: i128 = it.next()?.parse().ok()?;
    let owner = it.next()?.to_string();
    Some(kala_store::Lease {
        partition,
        owner,
        token,
        expires_at: Timestamp::from_nanosecond(expires - NS_OFFSET)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    })
}

pub(crate) fn lease_value(token: u64, expires: Timestamp, owner: &str) -> Vec<u8> {
    format!("{token}|{}|{owner}", padded_ns(expires)).into_bytes()
}
