//! The membership loop: heartbeat, leases, takeover of new partitions,
//! hand-over at shutdown, and the cluster's status (see the parent
//! module).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kala_job::{JobId, Trigger};
use kala_store::{LeaseRequest, OpenRun, PARTITIONS, partition_of};

use crate::facade::job_is_pending_once;
use crate::state::Inner;
use crate::timer::Overdue;

use super::{ClusterStatus, Held, NodeStatus, plan_round};

impl Inner {
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
        let mono = self.clock.monotonic();
        let me = self.config.node_id.clone();
        let nodes = match coord.heartbeat(&self.node_info(cluster, now)).await {
            Ok(n) => {
                self.heard_at(mono);
                n
            }
            Err(e) => {
                self.metrics.lease_error();
                tracing::warn!(error = %e, "cluster heartbeat failed; runs stop when the leases run out");
                return false;
            }
        };
        // Workers hold no partition: they do not count when sharing them.
        let live = nodes
            .iter()
            .filter(|n| n.expires_at > now && !n.leaving && n.role.schedules())
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
        let leaving = cluster.leaving.load(std::sync::atomic::Ordering::Relaxed)
            || !self.config.role.schedules();
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
                        valid_until: (mono
                            + std::time::Duration::try_from(l.expires_at.duration_since(now))
                                .unwrap_or_default())
                        .saturating_sub(super::LEASE_MARGIN),
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
                    h.valid_until = m.valid_until;
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
            let tokens: HashMap<u32, u64> = new
                .iter()
                .filter_map(|p| mine.get(p).map(|h| (*p, h.token)))
                .collect();
            match self.take_over(&new, &alive, &tokens).await {
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
    /// not run again); points of live instances' runs still going (this
    /// one's included) count as taken; the partitions' jobs are re-read from the database.
    async fn take_over(
        self: &Arc<Self>,
        parts: &[u32],
        alive: &HashSet<String>,
        tokens: &HashMap<u32, u64>,
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
        // This instance's own open runs count as going too: a run it
        // started before it lost the partition may still be running, or
        // its record may wait in the late writer (refused under the old
        // lease); its point must not be armed again here.
        let (going, dead): (Vec<OpenRun>, Vec<OpenRun>) = open
            .into_iter()
            .partition(|r| &r.node == me || alive.contains(&r.node));
        self.record_dead_runs(dead, tokens).await?;
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
        // One-offs whose run is going on a live instance (or here): they
        // count as attempted, so the takeover does not start them again
        // before that run's record is written.
        let mut once_going: HashMap<&str, Timestamp> = HashMap::new();
        for r in &going {
            if let Some(p) = r.scheduled_at {
                let e = taken.entry(r.job_id.as_str()).or_insert(p);
                *e = (*e).max(p);
            } else if r.trigger == kala_job::Trigger::Once {
                once_going.insert(r.job_id.as_str(), r.started_at);
            }
        }
        let present: HashSet<String> = fresh.iter().map(|j| j.id.clone()).collect();
        let mut st = self.lock();
        for mut job in fresh {
            if let Some(p) = taken.get(job.id.as_str()) {
                job.last_scheduled_at = Some(job.last_scheduled_at.map_or(*p, |l| l.max(*p)));
            }
            if let Some(t) = once_going.get(job.id.as_str()) {
                let m = &mut job.metadata.last_attempted_run;
                *m = Some(m.map_or(*t, |l| l.max(*t)));
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
            // In a cluster, a one-off whose run another instance (or this
            // one, before a hand-over) journaled and has not recorded yet
            // is going: the journal says so even when the stored job does
            // not yet.
            if self.cluster.is_some()
                && let Ok(open) = self.store.open_runs().await
                && open
                    .iter()
                    .any(|o| o.job_id == id && o.trigger == Trigger::Once)
            {
                tracing::debug!(job = %id, "a run of this one-off is journaled already; not started again");
                return;
            }
            // Skipped or dispatched elsewhere: the one-off is done either
            // way (recorded, or marked done with its dispatch).
            let job = self.lock().job(&id);
            if let Some(job) = job
                && !self.run_placed(&job, Trigger::Once, None).await
            {
                return;
            }
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
            // Dispatched runs whose wake this instance missed.
            if reached && round.is_multiple_of(5) {
                self.pick_up(None).await;
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
        let tokens: HashMap<u32, u64> = cluster.held().iter().map(|(p, h)| (*p, h.token)).collect();
        let me = &self.config.node_id;
        match self.store.open_runs().await {
            Ok(open) => {
                let dead: Vec<OpenRun> = open
                    .into_iter()
                    .filter(|r| {
                        &r.node != me
                            && !alive.contains(&r.node)
                            && tokens.contains_key(&partition_of(&r.job_id))
                    })
                    .collect();
                if let Err(e) = self.record_dead_runs(dead, &tokens).await {
                    tracing::warn!(error = %e, "cannot record the runs of a dead instance");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the run journal"),
        }
        if tokens.contains_key(&0)
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
                tags: n.tags,
                role: n.role,
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
