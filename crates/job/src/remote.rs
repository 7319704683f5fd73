//! A remote (HTTP) job's settings, Kala's `remote_properties`, shared
//! between the jobs that have none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Settings of a remote (HTTP) job, Kala's `remote_properties`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteProperties {
    pub url: String,
    /// Empty means GET.
    pub method: String,
    pub body: String,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Seconds; 0 means the default of 30 s, negative means none.
    pub timeout: i64,
    /// Empty means `[200]`.
    pub expected_response_codes: Option<Vec<u16>>,
}

thread_local! {
    /// One empty value per thread: jobs made on a thread share it, and
    /// threads decoding a million jobs at once do not all count
    /// references on one cache line.
    static NO_REMOTE: std::sync::Arc<RemoteProperties> =
        std::sync::Arc::new(RemoteProperties::default());
}

impl RemoteProperties {
    /// The empty settings local jobs share.
    pub fn shared_default() -> std::sync::Arc<RemoteProperties> {
        NO_REMOTE.with(std::sync::Arc::clone)
    }

    /// `self` in an `Arc`: the shared one when it is empty.
    pub fn shared(self) -> std::sync::Arc<RemoteProperties> {
        if self == RemoteProperties::default() {
            RemoteProperties::shared_default()
        } else {
            std::sync::Arc::new(self)
        }
    }
}

/// Stored jobs' remote settings: the shared empty value when empty, so a
/// million loaded local jobs do not hold a million empty copies.
pub(crate) fn shared_remote<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::sync::Arc<RemoteProperties>, D::Error> {
    RemoteProperties::deserialize(d).map(RemoteProperties::shared)
}
