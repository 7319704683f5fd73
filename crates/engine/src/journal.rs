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
use kala_job::{Job, Outcome, RunRecord};
use kala_store::{Batch, JobStore, OpenRun};

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

/// Reads the journal's open runs that belong to this instance (its
/// `node_id`, or all of them when it does not claim runs), kills their
/// orphaned processes, and in one batch stores an `interrupted` record
/// for each, the jobs' updated state, and the end of each entry. `jobs`
/// (just loaded) is updated in place, so that scheduling after this does
/// not run an interrupted point again and a one-off job does not start
/// again.
pub(crate) async fn recover(
    store: &Arc<dyn JobStore>,
    jobs: &mut [Job],
    config: &EngineConfig,
    metrics: &Metrics,
    now: Timestamp,
) -> Result<Recovered, kala_store::StoreError> {
    let open: Vec<OpenRun> = store
        .open_runs()
        .await?
        .into_iter()
        .filter(|r| !config.claim_runs || r.node == config.node_id)
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
    let wanted: std::collections::HashSet<&str> = open.iter().map(|r| r.job_id.as_str()).collect();
    let index: HashMap<String, usize> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| wanted.contains(j.id.as_str()))
        .map(|(i, j)| (j.id.clone(), i))
        .collect();
    let mut changed = std::collections::BTreeSet::new();
    let mut records = Vec::new();
    let mut recovered = Recovered::default();
    for run in &open {
        let left = match &orphans {
            None => {
                "whether it left processes running cannot be checked on this platform".to_string()
            }
            Some(found) => match found.get(&run.run_id) {
                Some(pids) if !pids.is_empty() => {
                    recovered.killed.extend(pids);
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
            "interrupted: the server (node {}) stopped during this run; found in the run journal at start-up at {now}; {left}",
            run.node
        );
        tracing::warn!(job = %run.job_id, run = %run.run_id, started = %run.started_at,
            scheduled = ?run.scheduled_at, "{why}");
        metrics.count(Outcome::Interrupted);
        recovered.interrupted += 1;
        let Some(&i) = index.get(&run.job_id) else {
            continue; // deleted meanwhile: only the entry goes
        };
        let job = &mut jobs[i];
        if let Some(point) = run.scheduled_at {
            job.last_scheduled_at = Some(job.last_scheduled_at.map_or(point, |l| l.max(point)));
        }
        let m = &mut job.metadata;
        m.last_attempted_run = Some(
            m.last_attempted_run
                .map_or(run.started_at, |l| l.max(run.started_at)),
        );
        m.error_count += 1;
        m.last_error = Some(now);
        m.number_of_finished_runs += 1;
        changed.insert(i);
        records.push(RunRecord {
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
        });
    }
    store
        .apply(Batch {
            put: changed.iter().map(|&i| jobs[i].clone()).collect(),
            runs: records,
            keep_runs: config.keep_runs,
            end: ids,
            ..Batch::default()
        })
        .await?;
    Ok(recovered)
}
