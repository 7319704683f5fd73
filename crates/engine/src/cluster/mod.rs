//! Several engines on one database: membership, partition leases, takeover
//! and the change follower.
//!
//! Owns: [`Cluster`] (the partitions this instance holds, with their
//! fencing tokens; the nodes it last saw), the membership loop (heartbeat,
//! lease keeping and rebalancing every [`EngineConfig::heartbeat`](crate::EngineConfig::heartbeat)), the
//! takeover of newly held partitions (runs of dead instances recorded as
//! interrupted, the partition's jobs re-read, re-armed), the change
//! follower (jobs other instances created, changed or deleted), and the
//! hand-over at shutdown.
//! Must not: run jobs (the timer and runner do, after asking
//! [`Inner::fence_for`]) or decide who may write (the database does:
//! every scheduled run's journal entry carries the lease's [`Fence`]).

use jiff::Timestamp;
use kala_store::{Fence, NodeInfo, partition_of};

use crate::state::Inner;

pub(crate) use model::{Cluster, Held, LEASE_MARGIN, plan_round};
pub use model::{ClusterStatus, NodeStatus};

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
            tags: self.config.tags.clone(),
            role: self.config.role,
        }
    }
}

mod dead;
mod follower;
mod membership;
pub(crate) mod model;
pub(crate) mod placement;
