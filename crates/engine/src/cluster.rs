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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, JobId, Trigger};
use kala_store::{
    ALL_JOBS, Batch, Fence, JobChange, JobUpdate, Lease, LeaseRequest, NodeInfo, OpenRun,
    PARTITIONS, partition_of,
};

use crate::facade::job_is_pending_once;
use crate::state::Inner;
use crate::timer::Overdue;

/// A partition this instance holds and has taken over (ready to run).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub token: u64,
    pub expires_at: Timestamp,
}

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
}

impl Cluster {
    pub fn new(now: Timestamp) -> Cluster {
        Cluster {
            started_at: now,
            held: Mutex::new(HashMap::new()),
            nodes: Mutex::new(Vec::new()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            dropped: Mutex::new(HashSet::new()),
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

    /// One membership round: heartbeat, keep and take leases, give up
    /// extras, take over what is new. Returns whether it reached the
    /// database.
    pub async fn membership_round(self: &Arc<Self>) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let Some(coord) = self.store.coordination() else {
            return true;
        };
        let now = self.clock.now();
        let me = self.config.node_id.clone();
        let nodes = match coord.heartbeat(&self.node_info(cluster, now)).await {
            Ok(n) => n,
            Err(e) => {
                self.metrics.lease_error();
                tracing::warn!(error = %e, "cluster heartbeat failed; runs stop when the leases run out");
                return false;
            }
        };
        let live = nodes
            .iter()
            .filter(|n| n.expires_at > now && !n.leaving)
            .count()
            .max(1);
        *cluster.nodes() = nodes;
        let leases = match coord.leases().await {
            Ok(l) => l,
            Err(e) => {
                self.metrics.lease_error();
                tracing::warn!(error = %e, "cannot read the leases");
                return false;
            }
        };
        let leaving = cluster.leaving.load(std::sync::atomic::Ordering::Relaxed);
        let (take, release) = plan_round(&me, &leases, live, now, leaving);
        let after = match coord
            .lease(LeaseRequest {
                node: me.clone(),
                take: take.clone(),
                release: release.clone(),
                now,
                ttl: self.config.lease_ttl,
            })
            .await
        {
            Ok(l) => l,
            Err(e) => {
                self.metrics.lease_error();
                tracing::warn!(error = %e, "cannot renew the leases; runs stop when they run out");
                return false;
            }
        };
        let mine: HashMap<u32, Held> = after
            .iter()
            .filter(|l| l.owner == me && l.expires_at > now)
            .map(|l| {
                (
                    l.partition,
                    Held {
                        token: l.token,
                        expires_at: l.expires_at,
                    },
                )
            })
            .collect();
        let (new, gone, rearm): (Vec<u32>, Vec<u32>, Vec<u32>) = {
            let mut held = cluster.held();
            let gone: Vec<u32> = held
                .keys()
                .filter(|p| mine.get(p).is_none_or(|h| h.token != held[p].token))
                .copied()
                .collect();
            for p in &gone {
                held.remove(p);
            }
            // Renewed: same token, later expiry.
            for (p, h) in held.iter_mut() {
                if let Some(m) = mine.get(p) {
                    h.expires_at = m.expires_at;
                }
            }
            let new = mine
                .keys()
                .filter(|p| !held.contains_key(p))
                .copied()
                .collect();
            // Held again after the timer or the runner dropped a run of
            // theirs (the lease had run out here: a slow round, the
            // database away): their jobs are armed again.
            let mut dropped = cluster.dropped();
            let rearm: Vec<u32> = dropped
                .iter()
                .filter(|p| held.contains_key(p))
                .copied()
                .collect();
            dropped.clear();
            (new, gone, rearm)
        };
        if !rearm.is_empty() {
            tracing::info!(
                partitions = rearm.len(),
                "leases renewed after runs were held back; their jobs are armed again"
            );
            self.arm_partitions(&rearm, Overdue::Takeover);
        }
        if !gone.is_empty() {
            self.metrics.released(gone.len());
            tracing::info!(partitions = ?gone, "partitions handed over");
        }
        if !new.is_empty() {
            let alive = cluster.alive(now);
            match self.take_over(&new, &alive).await {
                Ok(()) => {
                    let mut held = cluster.held();
                    for p in &new {
                        if let Some(h) = mine.get(p) {
                            held.insert(*p, *h);
                        }
                    }
                    self.metrics.taken(new.len());
                    tracing::info!(partitions = new.len(), "partitions taken over");
                    drop(held);
                    self.arm_partitions(&new, Overdue::Takeover);
                }
                Err(e) => {
                    self.metrics.lease_error();
                    tracing::warn!(error = %e, "taking over partitions failed; retried next round");
                }
            }
        }
        true
    }

    /// Before running anything of `parts`: the runs in them that dead
    /// instances left open are recorded as interrupted (their points are
    /// not run again); points of live instances' runs still going count
    /// as taken; the partitions' jobs are re-read from the database.
    async fn take_over(
        self: &Arc<Self>,
        parts: &[u32],
        alive: &HashSet<String>,
    ) -> Result<(), kala_store::StoreError> {
        let Some(coord) = self.store.coordination() else {
            return Ok(());
        };
        let parts: HashSet<u32> = parts.iter().copied().collect();
        let open: Vec<OpenRun> = self
            .store
            .open_runs()
            .await?
            .into_iter()
            .filter(|r| parts.contains(&partition_of(&r.job_id)))
            .collect();
        let me = &self.config.node_id;
        let (dead, going): (Vec<OpenRun>, Vec<OpenRun>) = open
            .into_iter()
            .filter(|r| &r.node != me)
            .partition(|r| !alive.contains(&r.node));
        self.record_dead_runs(dead).await?;
        let ids: Vec<JobId> = {
            let st = self.lock();
            st.jobs
                .ids()
                .map(|(id, _)| id)
                .filter(|id| parts.contains(&partition_of(id)))
                .collect()
        };
        let fresh = coord.get_many(&ids).await?;
        let mut taken: HashMap<&str, Timestamp> = HashMap::new();
        for r in &going {
            if let Some(p) = r.scheduled_at {
                let e = taken.entry(r.job_id.as_str()).or_insert(p);
                *e = (*e).max(p);
            }
        }
        let present: HashSet<String> = fresh.iter().map(|j| j.id.clone()).collect();
        let mut st = self.lock();
        for mut job in fresh {
            if let Some(p) = taken.get(job.id.as_str()) {
                job.last_scheduled_at = Some(job.last_scheduled_at.map_or(*p, |l| l.max(*p)));
            }
            if let Some(cur) = st.job(&job.id) {
                job.next_run_at = cur.next_run_at;
                st.jobs.put(&job);
            }
        }
        for id in ids.iter().filter(|id| !present.contains(*id)) {
            st.remove(id);
        }
        Ok(())
    }

    /// Records open runs of instances that are gone as interrupted, with
    /// their jobs' counters moved on in the database and in memory.
    pub(crate) async fn record_dead_runs(
        &self,
        dead: Vec<OpenRun>,
    ) -> Result<(), kala_store::StoreError> {
        if dead.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let out = crate::journal::interrupted(&dead, None, now);
        let update: Vec<JobUpdate> = out
            .deltas
            .iter()
            .map(|(id, d)| JobUpdate {
                job_id: id.clone(),
                change: JobChange::Ran(d.clone()),
            })
            .collect();
        let notices: Vec<_> = out
            .records
            .iter()
            .flat_map(|r| self.notices_of_run(&r.job_id, kala_job::NotifyOn::Interrupted, r))
            .collect();
        self.store
            .apply(Batch {
                notices,
                runs: out.records,
                update,
                keep_runs: self.config.keep_runs,
                end: dead.iter().map(|r| r.run_id.clone()).collect(),
                ..Batch::default()
            })
            .await?;
        let mut st = self.lock();
        for (id, d) in out.deltas {
            st.update(&id, |job| JobChange::Ran(d).apply(job));
        }
        for r in &dead {
            self.metrics.count(kala_job::Outcome::Interrupted);
            tracing::warn!(job = %r.job_id, run = %r.run_id, node = %r.node,
                "run of an instance that is gone recorded as interrupted");
        }
        Ok(())
    }

    /// Arms every job of `parts` and starts their one-off jobs that never
    /// ran.
    fn arm_partitions(self: &Arc<Self>, parts: &[u32], overdue: Overdue) {
        let parts: HashSet<u32> = parts.iter().copied().collect();
        let now = self.clock.now();
        let mut once = Vec::new();
        {
            let mut st = self.lock();
            let ids: Vec<String> = st
                .jobs
                .ids()
                .map(|(id, _)| id)
                .filter(|id| parts.contains(&partition_of(id)))
                .collect();
            for id in ids {
                self.rearm(&mut st, &id, now, overdue);
                if !st.is_running(&id) && st.job(&id).is_some_and(|j| job_is_pending_once(&j)) {
                    once.push(id);
                }
            }
        }
        for id in once {
            self.clone().spawn_once(id);
        }
    }

    /// Starts a one-off job's run on a worker, unless this process has
    /// started it already (create, enable, the change follower and a
    /// takeover may each find it pending while its run is being set up).
    pub(crate) fn spawn_once(self: Arc<Self>, id: JobId) {
        if !self.lock().once_started.insert(id.clone()) {
            return;
        }
        tokio::spawn(async move {
            let Ok(_permit) = self.permit().await else {
                return;
            };
            self.run_pipeline(id, Trigger::Once, None, Vec::new()).await;
        });
    }

    /// The membership loop, until shutdown.
    pub async fn membership_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        let mut round = 0u64;
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Rounds start at a fixed rate (a slow round does not push
            // the next one back), so a lease is renewed well within its
            // lifetime and a dead instance's leases are seen expired
            // within one heartbeat.
            let started = self.clock.now();
            let reached = self.membership_round().await;
            round += 1;
            if reached && round.is_multiple_of(5) {
                self.sweep().await;
            }
            let next = started + self.config.heartbeat;
            tokio::select! {
                _ = self.clock.sleep_until(next) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Now and then: runs in held partitions left open by instances that
    /// are gone since (they were alive at takeover), and old changes.
    async fn sweep(&self) {
        let (Some(cluster), Some(coord)) = (&self.cluster, self.store.coordination()) else {
            return;
        };
        let now = self.clock.now();
        let alive = cluster.alive(now);
        let held: HashSet<u32> = cluster.held().keys().copied().collect();
        let me = &self.config.node_id;
        match self.store.open_runs().await {
            Ok(open) => {
                let dead: Vec<OpenRun> = open
                    .into_iter()
                    .filter(|r| {
                        &r.node != me
                            && !alive.contains(&r.node)
                            && held.contains(&partition_of(&r.job_id))
                    })
                    .collect();
                if let Err(e) = self.record_dead_runs(dead).await {
                    tracing::warn!(error = %e, "cannot record the runs of a dead instance");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the run journal"),
        }
        if held.contains(&0)
            && let Err(e) = coord
                .prune_changes(now - SignedDuration::from_hours(1))
                .await
        {
            tracing::debug!(error = %e, "cannot prune old changes");
        }
    }

    /// Hands every partition over (shutdown): others take them at their
    /// next round instead of after the lease runs out. Runs in flight
    /// stay this instance's until they end.
    pub async fn hand_over(self: &Arc<Self>) {
        let Some(cluster) = &self.cluster else { return };
        cluster
            .leaving
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let parts = cluster.held_partitions();
        cluster.held().clear();
        if let Some(coord) = self.store.coordination() {
            let now = self.clock.now();
            let _ = coord.heartbeat(&self.node_info(cluster, now)).await;
            let r = coord
                .lease(LeaseRequest {
                    node: self.config.node_id.clone(),
                    take: Vec::new(),
                    release: parts.clone(),
                    now,
                    ttl: self.config.lease_ttl,
                })
                .await;
            match r {
                Ok(_) => {
                    self.metrics.released(parts.len());
                    tracing::info!(
                        partitions = parts.len(),
                        "partitions handed over at shutdown"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hand the partitions over; others take them when the leases run out");
                }
            }
        }
    }

    /// The last step of shutdown: this instance is gone.
    pub async fn leave_cluster(&self) {
        if self.cluster.is_some()
            && let Some(coord) = self.store.coordination()
            && let Err(e) = coord.leave(&self.config.node_id).await
        {
            tracing::warn!(error = %e, "cannot leave the cluster; the others see it gone when its heartbeat runs out");
        }
    }

    /// Follows the other instances' changes until shutdown: woken by the
    /// database's notification where it has one, and polls every
    /// [`EngineConfig::change_poll`] regardless.
    pub async fn follow_loop(self: Arc<Self>, mut cursor: u64) {
        let Some(coord) = self.store.coordination() else {
            return;
        };
        let signal = coord.change_signal();
        let mut shutdown = self.shutdown.subscribe();
        // Changes seen beyond a gap in the sequence: re-read from the gap
        // until it fills or is old enough to be a rollback.
        let mut gap: Option<(u64, std::time::Instant)> = None;
        // Reconciliation: every minute the changes of the last few minutes
        // are read again (idempotent), so that a change whose transaction
        // committed later than the gap wait, or anything missed by a
        // failed read, is not missed for ever.
        let mut marks: std::collections::VecDeque<(std::time::Instant, u64)> = Default::default();
        let mut last_rewind = std::time::Instant::now();
        let mut last_read = std::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            marks.push_back((std::time::Instant::now(), cursor));
            while marks.front().is_some_and(|(t, _)| t.elapsed() > REWIND) {
                marks.pop_front();
            }
            let rewind = last_rewind.elapsed() >= REWIND_EVERY;
            if rewind {
                last_rewind = std::time::Instant::now();
            }
            let from = match (rewind, marks.front()) {
                (true, Some((_, old))) => (*old).min(gap.map_or(cursor, |(g, _)| g)),
                _ => gap.map_or(cursor, |(g, _)| g),
            };
            let read = coord.changes(from, 10_000).await;
            if read.is_ok() {
                // Cut off for longer than changes are kept: some may be
                // gone, so everything is read again.
                if last_read.elapsed() > CUT_OFF {
                    tracing::warn!(
                        "the change log was out of reach for a long time; reloading every job"
                    );
                    if let Err(e) = self.apply_changes(vec![ALL_JOBS.to_string()]).await {
                        tracing::warn!(error = %e, "reloading after a long cut-off failed; trying again");
                        tokio::time::sleep(self.config.change_poll).await;
                        continue;
                    }
                }
                last_read = std::time::Instant::now();
            }
            match read {
                Ok(changes) if !changes.is_empty() => {
                    let mut expect = from + 1;
                    let mut first_gap = None;
                    for (seq, _) in &changes {
                        if *seq != expect && first_gap.is_none() && !coord.commit_ordered() {
                            first_gap = Some(expect - 1);
                        }
                        expect = seq + 1;
                    }
                    let last = changes.last().map_or(cursor, |c| c.0).max(cursor);
                    gap = match (first_gap, gap) {
                        (Some(g), Some((_, since))) if since.elapsed() < GAP_WAIT => {
                            Some((g, since))
                        }
                        (Some(g), None) => Some((g, std::time::Instant::now())),
                        _ => None,
                    };
                    cursor = last;
                    let ids: Vec<JobId> = changes.into_iter().map(|(_, id)| id).collect();
                    if let Err(e) = self.apply_changes(ids).await {
                        tracing::warn!(error = %e, "cannot read changed jobs; retrying");
                        gap = Some((from, gap.map_or_else(std::time::Instant::now, |g| g.1)));
                    }
                }
                Ok(_) => {
                    if gap.is_some_and(|(_, since)| since.elapsed() >= GAP_WAIT) {
                        gap = None;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read changes"),
            }
            let poll = self.config.change_poll;
            let wait = async {
                match &signal {
                    Some(s) => {
                        let _ = tokio::time::timeout(poll, s.notified()).await;
                    }
                    None => tokio::time::sleep(poll).await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Re-reads changed jobs and installs them (created, changed) or
    /// forgets them (deleted).
    async fn apply_changes(
        self: &Arc<Self>,
        mut ids: Vec<JobId>,
    ) -> Result<(), kala_store::StoreError> {
        ids.sort_unstable();
        ids.dedup();
        let fresh: Vec<Job> = if ids.iter().any(|id| id == ALL_JOBS) {
            let all = self.store.load_all().await?;
            let keep: HashSet<&str> = all.iter().map(|j| j.id.as_str()).collect();
            let gone: Vec<String> = {
                let st = self.lock();
                st.jobs
                    .ids()
                    .map(|(id, _)| id)
                    .filter(|id| !keep.contains(id.as_str()))
                    .collect()
            };
            let mut st = self.lock();
            for id in gone {
                st.remove(&id);
            }
            drop(st);
            all
        } else {
            let Some(coord) = self.store.coordination() else {
                return Ok(());
            };
            let fresh = coord.get_many(&ids).await?;
            let present: HashSet<&str> = fresh.iter().map(|j| j.id.as_str()).collect();
            let mut st = self.lock();
            for id in ids.iter().filter(|id| !present.contains(id.as_str())) {
                st.remove(id);
            }
            drop(st);
            fresh
        };
        self.metrics.changes_applied(fresh.len());
        let now = self.clock.now();
        let mut once = Vec::new();
        {
            let mut st = self.lock();
            for job in fresh {
                let id = job.id.clone();
                let owned = self.fence_for(&id).is_ok();
                let overdue = match st.job(&id) {
                    Some(cur) if cur.disabled && !job.disabled => Overdue::CatchUp,
                    _ => Overdue::AsIs,
                };
                install(&mut st, job);
                if owned {
                    self.rearm(&mut st, &id, now, overdue);
                    if st
                        .job(&id)
                        .is_some_and(|j| job_is_pending_once(&j) && !st.is_running(&id))
                    {
                        once.push(id);
                    }
                } else {
                    st.disarm(&id);
                }
            }
        }
        for id in once {
            self.clone().spawn_once(id);
        }
        Ok(())
    }

    /// The cluster as this instance sees it (nodes from the database, the
    /// leases as they are now).
    pub async fn cluster_status(&self) -> Result<Option<ClusterStatus>, kala_store::StoreError> {
        let (Some(cluster), Some(coord)) = (&self.cluster, self.store.coordination()) else {
            return Ok(None);
        };
        let now = self.clock.now();
        let leases = coord.leases().await?;
        let mut by_owner: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for l in leases.iter().filter(|l| l.expires_at > now) {
            by_owner
                .entry(l.owner.clone())
                .or_default()
                .push(l.partition);
        }
        let nodes = cluster.nodes().clone();
        let mut out: Vec<NodeStatus> = nodes
            .into_iter()
            .map(|n| NodeStatus {
                partitions: by_owner.remove(&n.name).unwrap_or_default(),
                alive: n.expires_at > now,
                name: n.name,
                address: n.address,
                started: n.started_at,
                last_heartbeat: n.heartbeat_at,
                leaving: n.leaving,
                runs_done: n.runs_done,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(ClusterStatus {
            node: self.config.node_id.clone(),
            partitions: PARTITIONS,
            nodes: out,
        }))
    }
}

/// How long a gap in the change sequence is re-read before it counts as
/// a rolled-back transaction.
const GAP_WAIT: Duration = Duration::from_secs(5);

/// A follower that could not read the change log for this long reloads
/// every job (changes are kept an hour; this leaves a wide margin).
const CUT_OFF: Duration = Duration::from_secs(600);

/// Reconciliation: how far back the follower re-reads changes, and how
/// often.
const REWIND: Duration = Duration::from_secs(300);
const REWIND_EVERY: Duration = Duration::from_secs(60);

/// Puts a job read from the database into memory: a new one gets a slot,
/// a known one its new content (the schedule point this instance may have
/// consumed and not yet written is kept).
fn install(st: &mut crate::state::State, mut job: Job) {
    match st.job(&job.id) {
        Some(cur) => {
            if let Some(mine) = cur.last_scheduled_at
                && job.last_scheduled_at.is_none_or(|l| l < mine)
            {
                job.last_scheduled_at = Some(mine);
                job.scheduled_runs = job.scheduled_runs.max(cur.scheduled_runs);
            }
            job.next_run_at = cur.next_run_at;
            let same_timing = cur.schedule == job.schedule
                && cur.epsilon == job.epsilon
                && cur.time_zone == job.time_zone
                && cur.timeout == job.timeout
                && cur.retry_delay == job.retry_delay;
            if !same_timing {
                match job.plan() {
                    Ok(_) => {
                        st.invalid.remove(&job.id);
                    }
                    Err(e) => {
                        st.invalid.insert(job.id.clone(), Arc::new(e));
                    }
                }
            }
            st.jobs.put(&job);
        }
        None => {
            if let Err(e) = job.plan() {
                tracing::error!(job = %job.id, error = %e.message, "a job another instance stored does not parse: kept, never scheduled");
                st.invalid.insert(job.id.clone(), Arc::new(e));
            }
            st.insert(job, None);
        }
    }
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
