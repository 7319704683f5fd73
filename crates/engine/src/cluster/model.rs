//! What this instance knows of the cluster, without behaviour that needs
//! the engine: [`Cluster`] (the partitions it holds with their fencing
//! tokens, the nodes it last saw), the status the API shows, and the
//! rebalancing plan (a pure function).
//!
//! Owns: those types and [`plan_round`]. Must not: import the engine's
//! shared state (`state.rs` holds a [`Cluster`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use jiff::Timestamp;
use kala_store::{Lease, NodeInfo, PARTITIONS};

/// A partition this instance holds and has taken over (ready to run).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub token: u64,
    pub expires_at: Timestamp,
    /// When the lease runs out on this instance's monotonic clock
    /// ([`crate::Clock::monotonic`]), less [`LEASE_MARGIN`]: measured from
    /// the start of the round that renewed it, so a pause or a slow round
    /// can only make it earlier than the database's expiry, never later.
    pub valid_until: std::time::Duration,
}

/// How much sooner than its lease an instance stops trusting it before a
/// process starts: covers the wall clocks of the instances disagreeing
/// by this much (a taker sees the lease expire on its own clock).
pub(crate) const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// This instance's view of the cluster.
pub(crate) struct Cluster {
    pub started_at: Timestamp,
    /// Ready partitions: leased and taken over.
    pub held: Mutex<HashMap<u32, Held>>,
    /// Nodes as of the last heartbeat.
    pub nodes: Mutex<Vec<NodeInfo>>,
    /// Set at shutdown: take nothing, hand everything over.
    pub leaving: std::sync::atomic::AtomicBool,
    /// Partitions of which a run was held back (dropped by the timer or
    /// refused its journal entry) for want of a valid lease: armed again
    /// at the next round that holds them.
    pub dropped: Mutex<HashSet<u32>>,
    /// Grows each time this instance went silent for longer than a lease
    /// (no heartbeat reached the database): the others may have believed
    /// it dead meanwhile and recorded its runs `interrupted`.
    pub silences: std::sync::atomic::AtomicU64,
    /// When the last heartbeat reached the database (monotonic clock, at
    /// the start of its round).
    pub heard: Mutex<Option<std::time::Duration>>,
    /// Runs other instances dispatched to this one (`run_on`) that it
    /// has started, by run id (see `placement`).
    pub picked: Mutex<HashSet<String>>,
}

impl Cluster {
    pub fn new(now: Timestamp) -> Cluster {
        Cluster {
            started_at: now,
            held: Mutex::new(HashMap::new()),
            nodes: Mutex::new(Vec::new()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            dropped: Mutex::new(HashSet::new()),
            silences: std::sync::atomic::AtomicU64::new(0),
            heard: Mutex::new(None),
            picked: Mutex::new(HashSet::new()),
        }
    }

    pub fn heard(&self) -> std::sync::MutexGuard<'_, Option<std::time::Duration>> {
        match self.heard.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn dropped(&self) -> std::sync::MutexGuard<'_, HashSet<u32>> {
        match self.dropped.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn picked(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        match self.picked.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Held>> {
        match self.held.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn nodes(&self) -> std::sync::MutexGuard<'_, Vec<NodeInfo>> {
        match self.nodes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The nodes whose heartbeat had not run out at `now` (as of the last
    /// round).
    pub fn alive(&self, now: Timestamp) -> HashSet<String> {
        self.nodes()
            .iter()
            .filter(|n| n.expires_at > now)
            .map(|n| n.name.clone())
            .collect()
    }

    /// The partitions held now, sorted.
    pub fn held_partitions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.held().keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// What an instance owns and knows, for `GET /api/v1/cluster/`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterStatus {
    /// This instance's name.
    pub node: String,
    pub partitions: u32,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub started: Timestamp,
    pub last_heartbeat: Timestamp,
    pub alive: bool,
    pub leaving: bool,
    /// Partitions whose lease it holds now.
    pub partitions: Vec<u32>,
    pub runs_done: u64,
    /// Its tags (`--tag key=value`); absent when it has none.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
    /// What it does (`--role`): both, worker or scheduler.
    pub role: kala_store::NodeRole,
}

/// The number of partitions each of `live` instances should hold.
fn target(live: usize) -> usize {
    (PARTITIONS as usize).div_ceil(live.max(1))
}

/// One round's decision: which partitions to keep or take and which to
/// give up, from every lease and the number of live instances.
pub(crate) fn plan_round(
    me: &str,
    leases: &[Lease],
    live: usize,
    now: Timestamp,
    leaving: bool,
) -> (Vec<u32>, Vec<u32>) {
    let mine: Vec<u32> = leases
        .iter()
        .filter(|l| l.owner == me && l.expires_at > now)
        .map(|l| l.partition)
        .collect();
    if leaving {
        return (Vec::new(), mine);
    }
    let want = target(live);
    let mut keep: Vec<u32> = mine.clone();
    keep.sort_unstable();
    let release: Vec<u32> = if keep.len() > want {
        keep.split_off(want)
    } else {
        Vec::new()
    };
    let taken: HashSet<u32> = leases
        .iter()
        .filter(|l| l.expires_at > now)
        .map(|l| l.partition)
        .collect();
    for p in 0..PARTITIONS {
        if keep.len() >= want {
            break;
        }
        if !taken.contains(&p) {
            keep.push(p);
        }
    }
    (keep, release)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(p: u32, owner: &str, exp: i64) -> Lease {
        Lease {
            partition: p,
            owner: owner.into(),
            token: 1,
            expires_at: Timestamp::from_second(exp).unwrap(),
        }
    }

    #[test]
    fn rounds_share_the_partitions() {
        let now = Timestamp::from_second(100).unwrap();
        // Alone: everything.
        let (take, release) = plan_round("a", &[], 1, now, false);
        assert_eq!(take.len(), PARTITIONS as usize);
        assert!(release.is_empty());
        // Two live, a holds all: a keeps half and releases half.
        let all: Vec<Lease> = (0..PARTITIONS).map(|p| lease(p, "a", 200)).collect();
        let (take, release) = plan_round("a", &all, 2, now, false);
        assert_eq!((take.len(), release.len()), (32, 32));
        // b sees them held until a releases; then takes up to its share.
        let (take, _) = plan_round("b", &all, 2, now, false);
        assert!(take.is_empty());
        let half: Vec<Lease> = (0..32).map(|p| lease(p, "a", 200)).collect();
        let (take, _) = plan_round("b", &half, 2, now, false);
        assert_eq!(take, (32..64).collect::<Vec<_>>());
        // Expired leases are free; leaving gives everything up.
        let expired: Vec<Lease> = (0..PARTITIONS).map(|p| lease(p, "c", 50)).collect();
        assert_eq!(plan_round("b", &expired, 3, now, false).0.len(), 22);
        let (take, release) = plan_round("a", &all, 2, now, true);
        assert!(take.is_empty());
        assert_eq!(release.len(), PARTITIONS as usize);
    }
}
