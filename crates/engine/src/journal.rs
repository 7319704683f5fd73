//! The run journal at start-up: runs that began before a crash (or a
//! kill, or a power loss) and never ended are recorded as interrupted,
//! their schedule points count as done, and processes they left running
//! are killed.
//!
//! Owns: [`recover`]. The journal's writes are in `runner` (begin, before
//! the first attempt) and `record` (end, with the run record).
//! Must not: run anything; it only records what happened.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use kala_job::{Job, NotifyOn, Outcome, RunRecord};
use kala_store::{Batch, JobChange, JobStore, JobUpdate, OpenRun, RunDelta};

use crate::config::EngineConfig;
use crate::metrics::Metrics;

/// What [`recover`] found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovered {
    /// Runs recorded as interrupted.
    pub interrupted: usize,
    /// Processes those runs left running, killed.
    pub killed: Vec<u32>,
}

/// What a set of open runs becomes: an `interrupted` record each, and
/// what each adds to its job (the point counts as done; a failure).
pub(crate) struct Interrupted {
    pub records: Vec<RunRecord>,
    pub deltas: Vec<(String, RunDelta)>,
}

/// The counters an `interrupted` record adds to its job (a failure that
/// finished): what a late record of the same run takes back.
pub(crate) fn interrupted_delta() -> RunDelta {
    RunDelta {
        errors: 1,
        finished: 1,
        ..RunDelta::default()
    }
}

/// Records and job deltas for runs found open. `orphans`: the processes
/// killed per run id (`None`: not checked on this platform, or not this
/// machine's runs: another instance's).
pub(crate) fn interrupted(
    open: &[OpenRun],
    orphans: Option<&HashMap<String, Vec<u32>>>,
    now: Timestamp,
) -> Interrupted {
    let mut out = Interrupted {
        records: Vec::new(),
        deltas: Vec::new(),
    };
    for run in open {
        let left = match orphans {
            None => "whether it left processes running was not checked".to_string(),
            Some(found) => match found.get(&run.run_id) {
                Some(pids) if !pids.is_empty() => {
                    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
                    format!(
                        "its processes still running were killed (pids {})",
                        list.join(", ")
                    )
                }
                _ => "no process of it was left running".to_string(),
            },
        };
        let why = format!(
            "interrupted: the server (node {}) stopped during this run; found in the run journal at {now}; {left}",
            run.node
        );
        tracing::warn!(job = %run.job_id, run = %run.run_id, started = %run.started_at,
            scheduled = ?run.scheduled_at, "{why}");
        out.deltas.push((
            run.job_id.clone(),
            RunDelta {
                point: run.scheduled_at,
                attempted_at: Some(run.started_at),
                last_error: Some(now),
                ..interrupted_delta()
            },
        ));
        out.records.push(RunRecord {
            job_id: run.job_id.clone(),
            ran_at: run.started_at,
            scheduled_at: run.scheduled_at,
            trigger: run.trigger,
            outcome: Outcome::Interrupted,
            number_of_retries: 0,
            execution_duration: u64::try_from(now.duration_since(run.started_at).as_nanos())
                .unwrap_or(0),
            exit_code: None,
            error: Some(why),
            output: String::new(),
            run_id: Some(run.run_id.clone()),
            node: Some(run.node.clone()),
        });
    }
    out
}

/// Reads the journal's open runs that belong to this instance (its
/// `node_id`, or all of them when it is alone), kills their orphaned
/// processes, and in one batch stores an `interrupted` record for each,
/// the jobs' updated state (whole jobs when alone, deltas in a cluster),
/// and the end of each entry. `jobs` (just loaded) is updated in place,
/// so that scheduling after this does not run an interrupted point again
/// and a one-off job does not start again.
pub(crate) async fn recover(
    store: &Arc<dyn JobStore>,
    jobs: &mut [Box<[u8]>],
    config: &EngineConfig,
    cluster: bool,
    metrics: &Metrics,
    now: Timestamp,
) -> Result<Recovered, kala_store::StoreError> {
    let open: Vec<OpenRun> = store
        .open_runs()
        .await?
        .into_iter()
        .filter(|r| !(config.claim_runs || cluster) || r.node == config.node_id)
        .collect();
    if open.is_empty() {
        return Ok(Recovered::default());
    }
    let ids: Vec<String> = open.iter().map(|r| r.run_id.clone()).collect();
    let scan_ids = ids.clone();
    let orphans = tokio::task::spawn_blocking(move || {
        if !kala_executor::orphans::supported() {
            return None;
        }
        let found = kala_executor::orphans::find(&scan_ids);
        Some(
            found
                .into_iter()
                .map(|(run, pids)| (run, kala_executor::orphans::kill(&pids)))
                .collect::<HashMap<_, _>>(),
        )
    })
    .await
    .ok()
    .flatten();
    let out = interrupted(&open, orphans.as_ref(), now);
    let mut recovered = Recovered {
        interrupted: open.len(),
        killed: orphans
            .iter()
            .flat_map(|o| o.values().flatten().copied())
            .collect(),
    };
    recovered.killed.sort_unstable();
    // The jobs are packed: only those with an interrupted run are
    // decoded, changed and packed again.
    let affected: std::collections::HashSet<&str> =
        open.iter().map(|r| r.job_id.as_str()).collect();
    let mut index: HashMap<String, (usize, Job)> = HashMap::new();
    for (i, bytes) in jobs.iter().enumerate() {
        let Ok(id) = kala_job::packed::decode_id(bytes) else {
            continue;
        };
        if affected.contains(id.as_str())
            && let Ok(job) = kala_job::packed::decode(bytes)
        {
            index.insert(id, (i, job));
        }
    }
    let mut notices = Vec::new();
    for r in &out.records {
        if let Some((_, job)) = index.get(&r.job_id) {
            notices.extend(crate::outbox::make_notices(
                &config.notify,
                &config.node_id,
                job,
                NotifyOn::Interrupted,
                r,
                now,
            ));
        }
    }
    let mut changed = std::collections::BTreeSet::new();
    let mut update = Vec::new();
    for (id, delta) in out.deltas {
        metrics.count(Outcome::Interrupted);
        let Some((i, job)) = index.get_mut(&id) else {
            continue; // deleted meanwhile: only the entry goes
        };
        JobChange::Ran(RunDelta {
            // the point moves `last_scheduled_at` in memory; counted once
            // in the store by the delta
            ..delta.clone()
        })
        .apply(job);
        jobs[*i] = kala_job::packed::encode(job).into_boxed_slice();
        changed.insert(id.clone());
        update.push(JobUpdate {
            job_id: id,
            change: JobChange::Ran(delta),
        });
    }
    let batch = if cluster {
        Batch {
            update,
            ..Batch::default()
        }
    } else {
        Batch {
            put: changed
                .iter()
                .filter_map(|id| index.get(id).map(|(_, j)| j.clone()))
                .collect(),
            ..Batch::default()
        }
    };
    store
        .apply(Batch {
            runs: out.records,
            notices,
            keep_runs: config.keep_runs,
            end: ids,
            ..batch
        })
        .await?;
    Ok(recovered)
}
