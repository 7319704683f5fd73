//! `run_on`: which live instances run a point, and the dispatch of a run
//! to another instance through the run journal.
//!
//! The holder of a job's partition decides where each point runs
//! ([`Inner::place`]) from the instances it last saw (their tags, roles,
//! heartbeats). A run for another instance is an entry in the run
//! journal naming that instance ([`OpenRun::dispatched_by`]), written
//! under the holder's lease (fenced, like its own runs); the batch
//! announces the job on the change feed, which wakes the target, and the
//! target starts the entry ([`Inner::pick_up`]) exactly once: it keeps
//! the entries it took, and each membership round sweeps for any wake it
//! missed. If the target dies, the entry is its open run and becomes
//! `interrupted` at takeover, as any run of a dead instance does.
//! Must not: run anything itself (the runner does, under the handed
//! entry).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use jiff::Timestamp;
use kala_job::{Job, RunOn, Trigger};
use kala_store::{Batch, OpenRun, RunDelta};

use crate::state::Inner;

/// Where one point of a job runs.
#[derive(Debug, PartialEq)]
pub(crate) enum Placement {
    /// On this instance, as without `run_on`.
    Here,
    /// Nowhere: no live instance matches (the reason, recorded).
    Skip(String),
    /// On the chosen instances: this one (`local`) and/or others; `short`
    /// when fewer match than asked (recorded too).
    Spread {
        local: bool,
        remote: Vec<String>,
        short: Option<String>,
    },
}

impl Inner {
    /// Where `job`'s run for `point` runs (see [`Placement`]). Alone (no
    /// cluster) always here: creation checked `run_on` against this
    /// instance. A scheduler-only instance places every job, `run_on` or
    /// not, on an instance that runs jobs.
    pub(crate) fn place(&self, job: &Job, point: Option<Timestamp>) -> Placement {
        let Some(cluster) = &self.cluster else {
            return Placement::Here;
        };
        let any = RunOn::default();
        let run_on: &RunOn = match (&job.run_on, self.config.role.executes()) {
            (Some(r), _) => r,
            (None, true) => return Placement::Here,
            (None, false) => &any,
        };
        let now = self.clock.now();
        let me = &self.config.node_id;
        let leaving = cluster.leaving.load(std::sync::atomic::Ordering::Relaxed);
        let mut matches: Vec<String> = cluster
            .nodes()
            .iter()
            .filter(|n| {
                n.name != *me
                    && n.expires_at > now
                    && !n.leaving
                    && n.role.executes()
                    && run_on.matches(&n.tags)
            })
            .map(|n| n.name.clone())
            .collect();
        if self.config.role.executes() && !leaving && run_on.matches(&self.config.tags) {
            matches.push(me.clone());
        }
        matches.sort_unstable();
        matches.dedup();
        if matches.is_empty() {
            return Placement::Skip(format!(
                "skipped: no live instance matches run_on {}",
                run_on.describe()
            ));
        }
        let found = matches.len();
        let (chosen, short) = match run_on.wanted() {
            None => (matches, None),
            Some(n) if n >= found => {
                let short = (n > found).then(|| {
                    format!(
                        "skipped on {} of {n} instances: run_on {} asks for {n}, {found} live instance{} match{} ({})",
                        n - found,
                        run_on.describe(),
                        if found == 1 { "" } else { "s" },
                        if found == 1 { "es" } else { "" },
                        matches.join(", ")
                    )
                });
                (matches, short)
            }
            Some(n) => {
                // Spread the points over the matches: where the n chosen
                // start depends on the job and the point.
                let mut h = std::hash::DefaultHasher::new();
                job.id.hash(&mut h);
                point.map(|p| p.as_nanosecond()).hash(&mut h);
                let start = (h.finish() % found as u64) as usize;
                matches.rotate_left(start);
                matches.truncate(n);
                (matches, None)
            }
        };
        let local = chosen.iter().any(|n| n == me);
        let remote = chosen.into_iter().filter(|n| n != me).collect();
        Placement::Spread {
            local,
            remote,
            short,
        }
    }

    /// Alone (the embedded store, or a store without a cluster), `run_on`
    /// can only name this instance: it must match this instance's tags
    /// and ask for one instance (or every one). Otherwise the create is
    /// refused with why.
    pub(crate) fn check_run_on(&self, job: &Job) -> Result<(), kala_job::JobError> {
        let Some(r) = &job.run_on else {
            return Ok(());
        };
        if self.cluster.is_some() {
            return Ok(());
        }
        if !r.matches(&self.config.tags) {
            let mine: Vec<String> = self
                .config
                .tags
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            return Err(kala_job::JobError::new(
                "run_on.tags",
                format!(
                    "{} does not match this instance (tags {{{}}}), the only one: a single instance runs run_on jobs only when they match it",
                    r.describe(),
                    mine.join(", ")
                ),
            ));
        }
        if let Some(n) = r.count.filter(|n| *n > 1) {
            return Err(kala_job::JobError::new(
                "run_on.count",
                format!("{n} instances asked for, and this server runs alone (one instance)"),
            ));
        }
        Ok(())
    }

    /// Journals a run of `id` (`point`, `trigger`) for `target`, under
    /// this instance's lease of the job's partition. `Err` says why not.
    pub(crate) async fn dispatch(
        &self,
        id: &str,
        trigger: Trigger,
        point: Option<Timestamp>,
        target: &str,
    ) -> Result<(), String> {
        let fence = self
            .fence_for(id)
            .map_err(|()| "this instance no longer holds the job's partition".to_string())?;
        let open = OpenRun {
            run_id: uuid::Uuid::new_v4().to_string(),
            job_id: id.to_string(),
            trigger,
            scheduled_at: point,
            started_at: self.clock.now(),
            node: target.to_string(),
            dispatched_by: Some(self.config.node_id.clone()),
        };
        // A one-off is done once its run is dispatched (as once it
        // starts here): no instance finds it pending again, whatever
        // becomes of the run (its record, or `interrupted`).
        let done = RunDelta {
            next_run_at: Some(None),
            is_done: Some(true),
            ..RunDelta::default()
        };
        let update = match trigger {
            Trigger::Once => vec![kala_store::JobUpdate {
                job_id: id.to_string(),
                change: kala_store::JobChange::Ran(done.clone()),
            }],
            _ => Vec::new(),
        };
        self.store
            .apply(Batch {
                begin: vec![open],
                update,
                fence,
                ..Batch::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        if trigger == Trigger::Once {
            let change = kala_store::JobChange::Ran(done);
            self.lock().update(id, |job| change.apply(job));
        }
        self.metrics.dispatched();
        Ok(())
    }

    /// Runs `job`'s run for `point` where [`Inner::place`] says: skipped
    /// with the reason, dispatched to the chosen instances, and/or run
    /// here through `here`.
    pub(crate) async fn run_placed(
        self: &Arc<Self>,
        job: &Job,
        trigger: Trigger,
        point: Option<Timestamp>,
    ) -> bool {
        match self.place(job, point) {
            Placement::Here => true,
            Placement::Skip(why) => {
                self.record_placement_skip(&job.id, trigger, point, why)
                    .await;
                false
            }
            Placement::Spread {
                local,
                remote,
                short,
            } => {
                if let Some(why) = short {
                    self.record_placement_skip(&job.id, trigger, point, why)
                        .await;
                }
                for target in &remote {
                    if let Err(e) = self.dispatch(&job.id, trigger, point, target).await {
                        tracing::warn!(job = %job.id, target = %target, error = %e, "cannot dispatch the run");
                        self.record_placement_skip(
                            &job.id,
                            trigger,
                            point,
                            format!("skipped on {target}: the run could not be dispatched: {e}"),
                        )
                        .await;
                    }
                }
                local
            }
        }
    }

    async fn record_placement_skip(
        &self,
        id: &str,
        trigger: Trigger,
        point: Option<Timestamp>,
        why: String,
    ) {
        self.metrics.placement_skipped();
        tracing::warn!(job = %id, "{why}");
        self.record_skipped(id, trigger, point, why).await;
    }

    /// Whether a change of `ids` may carry a run dispatched here: one of
    /// them has `run_on`, or some instance only schedules (it dispatches
    /// every job). Spares the journal read on every other change.
    pub(crate) fn may_be_dispatched_here(&self, ids: &[String]) -> bool {
        let Some(cluster) = &self.cluster else {
            return false;
        };
        if !self.config.role.executes() {
            return false;
        }
        if cluster.nodes().iter().any(|n| !n.role.executes()) {
            return true;
        }
        let st = self.lock();
        ids.iter()
            .any(|id| st.job(id).is_some_and(|j| j.run_on.is_some()))
    }

    /// Starts the runs journaled for this instance by another (`run_on`)
    /// that it has not started: those of `ids` (woken by the change
    /// feed), or all (`None`: each membership round's sweep).
    pub(crate) async fn pick_up(self: &Arc<Self>, ids: Option<&[String]>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if !self.config.role.executes() {
            return;
        }
        let open = match self.store.open_runs().await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the journal for dispatched runs");
                return;
            }
        };
        let me = &self.config.node_id;
        let mine: Vec<OpenRun> = open
            .into_iter()
            .filter(|o| o.node == *me && o.dispatched_by.is_some())
            .collect();
        let fresh: Vec<OpenRun> = {
            let mut picked = cluster.picked();
            if ids.is_none() {
                // Forget entries that ended.
                let still: HashSet<&str> = mine.iter().map(|o| o.run_id.as_str()).collect();
                picked.retain(|r| still.contains(r.as_str()));
            }
            mine.into_iter()
                .filter(|o| ids.is_none_or(|ids| ids.contains(&o.job_id)))
                .filter(|o| picked.insert(o.run_id.clone()))
                .collect()
        };
        for o in fresh {
            let inner = self.clone();
            tokio::spawn(async move { inner.run_handed(o).await });
        }
    }

    async fn run_handed(self: Arc<Self>, o: OpenRun) {
        let known = self.lock().job(&o.job_id).is_some();
        if !known {
            // Not known here yet (the sweep found the entry before the
            // change follower installed the job): left for a later look.
            if let Ok(Some(_)) = self.store.get(&o.job_id).await {
                if let Some(c) = &self.cluster {
                    c.picked().remove(&o.run_id);
                }
                return;
            }
            // Deleted meanwhile: end the entry with why.
            let record = self.skipped_record(
                &o.job_id,
                o.trigger,
                o.scheduled_at,
                self.clock.now(),
                o.run_id.clone(),
                format!(
                    "not started: the job is not known on {} (deleted meanwhile)",
                    self.config.node_id
                ),
            );
            let batch = Batch {
                runs: vec![record],
                end: vec![o.run_id.clone()],
                ..Batch::default()
            };
            if let Err(e) = self.store.apply(batch).await {
                tracing::warn!(job = %o.job_id, error = %e, "cannot end a dispatched run of an unknown job");
            }
            return;
        }
        let Ok(_permit) = self.permit().await else {
            return;
        };
        let (id, trigger, point) = (o.job_id.clone(), o.trigger, o.scheduled_at);
        self.run_pipeline_with(id, trigger, point, Vec::new(), Some(o))
            .await;
    }
}
