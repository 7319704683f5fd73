//! Several engines on one database: membership, partition leases, takeover
//! and the change follower.
//!
//! Owns: [`Cluster`] (the partitions this instance holds, with their
//! fencing tokens; the nodes it last saw), the membership loop (heartbeat,
//! lease keeping and rebalancing every [`EngineConfig::heartbeat`]), the
//! takeover of newly held partitions (runs of dead instances recorded as
//! interrupted, the partition's jobs re-read, re-armed), the change
//! follower (jobs other instances created, changed or deleted), and the
//! hand-over at shutdown.
//! Must not: run jobs (the timer and runner do, after asking
//! [`Inner::fence_for`]) or decide who may write (the database does:
//! every scheduled run's journal entry carries the lease's [`Fence`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use jiff::Timestamp;
use kala_store::{Fence, Lease, NodeInfo, PARTITIONS, partition_of};

use crate::state::Inner;

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
        }
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, Option<std::time::Duration>> {
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

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Held>> {
        match self.held.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, Vec<NodeInfo>> {
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

impl Inner {
    /// The fence a run of `id` must carry: `Ok(None)` on a single
    /// instance; `Err(())` when this instance does not hold the job's
    /// partition (or its lease ran out: the partition is then re-armed at
    /// the next renewal): it must not start the run.
    pub fn fence_for(&self, id: &str) -> Result<Option<Fence>, ()> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let partition = partition_of(id);
        let now = self.clock.now();
        match cluster.held().get(&partition) {
            Some(h) if h.expires_at > now => Ok(Some(Fence {
                partition,
                node: self.config.node_id.clone(),
                token: h.token,
                now,
            })),
            Some(_) => {
                // Held, but the lease ran out here: whatever is held back
                // now is armed again when the lease is renewed.
                cluster.dropped().insert(partition);
                Err(())
            }
            None => Err(()),
        }
    }

    /// Right before a process starts: whether this instance still holds
    /// the partition of `id` under the lease `token` it journaled the run
    /// with, on its monotonic clock (with [`LEASE_MARGIN`]). A pause
    /// between the journal entry and the start (SIGSTOP, a VM stalled,
    /// swap) makes this false, whatever the wall clock says.
    pub fn lease_proven(&self, id: &str, token: u64) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let now = self.clock.monotonic();
        cluster
            .held()
            .get(&partition_of(id))
            .is_some_and(|h| h.token == token && h.valid_until > now)
    }

    /// A heartbeat of the round that started at `mono` reached the
    /// database: a silence longer than a lease since the last one counts.
    pub(crate) fn heard_at(&self, mono: std::time::Duration) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let ttl = std::time::Duration::try_from(self.config.lease_ttl).unwrap_or_default();
        let mut heard = cluster.heard();
        if heard.is_some_and(|h| mono.saturating_sub(h) > ttl) {
            cluster
                .silences
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        *heard = Some(mono);
    }

    /// Where this instance stands when a run is journaled: compared by
    /// [`Inner::silent_since`] when the run is recorded. `None` alone.
    pub(crate) fn liveness_mark(&self) -> Option<u64> {
        self.cluster
            .as_ref()
            .map(|c| c.silences.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Whether this instance went silent (paused, cut off) for longer
    /// than a lease since `mark`, or is silent now: then another instance
    /// may have recorded the run `interrupted`, and its record goes the
    /// late writer's careful way.
    pub(crate) fn silent_since(&self, mark: u64) -> bool {
        let Some(cluster) = &self.cluster else {
            return false;
        };
        if cluster.silences.load(std::sync::atomic::Ordering::SeqCst) != mark {
            return true;
        }
        let ttl = std::time::Duration::try_from(self.config.lease_ttl).unwrap_or_default();
        let now = self.clock.monotonic();
        cluster.heard().is_none_or(|h| now.saturating_sub(h) > ttl)
    }

    fn node_info(&self, cluster: &Cluster, now: Timestamp) -> NodeInfo {
        let m = self.metrics.snapshot();
        NodeInfo {
            name: self.config.node_id.clone(),
            address: self.config.address.clone(),
            started_at: cluster.started_at,
            heartbeat_at: now,
            expires_at: now + self.config.lease_ttl,
            runs_done: m.runs_succeeded + m.runs_failed,
            leaving: cluster.leaving.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

mod follower;
mod membership;

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
