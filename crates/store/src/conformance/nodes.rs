//! The two instances of the cluster checks and what they ask of a
//! store's coordination (shared by `cluster` and `fencing`).

use jiff::{SignedDuration, Timestamp};

use crate::LeaseRequest;

pub(super) fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_900_000_000 + s).expect("in range")
}

pub(super) fn req(node: &str, take: &[u32], release: &[u32], now: Timestamp) -> LeaseRequest {
    LeaseRequest {
        node: node.into(),
        take: take.to_vec(),
        release: release.to_vec(),
        now,
        ttl: SignedDuration::from_secs(3),
    }
}

/// The test's two instances; their leases from an earlier run of the
/// suite are freed first (leases outlive `delete_all`, tokens never go
/// back, so tokens are checked relative to what was found).
pub(super) const A: &str = "conformance-a";
pub(super) const B: &str = "conformance-b";

/// The token of partition `p` if `node` holds it.
pub(super) fn tok(leases: &[crate::Lease], node: &str, p: u32) -> Option<u64> {
    leases
        .iter()
        .find(|l| l.partition == p && l.owner == node)
        .map(|l| l.token)
}
