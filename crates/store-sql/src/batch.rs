//! A [`Batch`] encoded once into column vectors, and the retry of a
//! transaction that lost a deadlock or serialisation race.
//!
//! Owns: [`EncodedBatch`], [`retry_transient`]. No database in it.

use std::future::Future;
use std::time::Duration;

use kala_store::json::encode_string;
use kala_store::{Batch, JobChange, Result, ns_i64};

/// A batch with every record encoded, ready to bind. Encoding happens once,
/// before the transaction, so a retried transaction does not repeat it.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    /// Ids to delete (with their runs and claims), sorted.
    pub delete: Vec<String>,
    /// Jobs to upsert: ids in id order (one row per id, the last put
    /// wins), and their JSON at the same index. Id order keeps two
    /// transactions from locking rows in opposite orders.
    pub put_ids: Vec<String>,
    pub put_jobs: Vec<String>,
    /// Run records to insert: job id, start in ns, JSON, index by index.
    pub run_job_ids: Vec<String>,
    pub run_at: Vec<i64>,
    pub runs: Vec<String>,
    /// The jobs that got a run, sorted and unique: what `keep_runs` trims.
    pub touched: Vec<String>,
    pub keep_runs: Option<usize>,
    /// Journal entries to insert: (run id, job id, node, JSON).
    pub begin: Vec<(String, String, String, String)>,
    /// Run ids whose journal entries go.
    pub end: Vec<String>,
    /// Changes to stored jobs, grouped by job, in id order (rows are
    /// locked in that order).
    pub update: Vec<(String, Vec<JobChange>)>,
    /// Jobs other instances must re-read: a change row each.
    pub changed: Vec<String>,
    /// The lease that must still hold: (partition, node, token, now ns).
    pub fence: Option<(i64, String, i64, i64)>,
    /// Notices: (id, job id, pending 0/1, next attempt ns, done ns or
    /// i64::MAX, JSON).
    pub notices: Vec<(String, String, i64, i64, i64, String)>,
    /// Audit entries: (id, at ns, JSON).
    pub audit: Vec<(String, i64, String)>,
    /// When the batch was encoded (ns), for the change rows.
    pub now: i64,
}

/// Audit entries as (id, at ns, JSON) rows.
pub fn encode_audit(audit: &[kala_store::AuditEntry]) -> Result<Vec<(String, i64, String)>> {
    audit
        .iter()
        .map(|e| Ok((e.id.clone(), ns_i64(e.at)?, encode_string(e)?)))
        .collect()
}

impl EncodedBatch {
    pub fn new(batch: &Batch) -> Result<EncodedBatch> {
        let mut delete = batch.delete.clone();
        delete.sort_unstable();
        let mut puts: Vec<_> = batch.put.iter().rev().collect();
        puts.sort_by(|a, b| a.id.cmp(&b.id)); // stable: the last put stays first
        puts.dedup_by(|a, b| a.id == b.id);
        let mut out = EncodedBatch {
            delete,
            put_ids: puts.iter().map(|j| j.id.clone()).collect(),
            put_jobs: puts
                .iter()
                .map(|j| encode_string(*j))
                .collect::<Result<_>>()?,
            keep_runs: batch.keep_runs,
            ..EncodedBatch::default()
        };
        for run in &batch.runs {
            out.run_job_ids.push(run.job_id.clone());
            out.run_at.push(ns_i64(run.ran_at)?);
            out.runs.push(encode_string(run)?);
        }
        for open in &batch.begin {
            out.begin.push((
                open.run_id.clone(),
                open.job_id.clone(),
                open.node.clone(),
                encode_string(open)?,
            ));
        }
        for n in &batch.notices {
            out.notices.push((
                n.id.clone(),
                n.job_id.clone(),
                i64::from(n.is_pending()),
                ns_i64(n.next_attempt_at)?,
                n.done_at.map(ns_i64).transpose()?.unwrap_or(i64::MAX),
                encode_string(n)?,
            ));
        }
        out.audit = encode_audit(&batch.audit)?;
        out.end = batch.end.clone();
        out.end.sort_unstable();
        let mut update: std::collections::BTreeMap<&str, Vec<JobChange>> = Default::default();
        for u in &batch.update {
            update
                .entry(u.job_id.as_str())
                .or_default()
                .push(u.change.clone());
        }
        out.update = update
            .into_iter()
            .map(|(id, c)| (id.to_string(), c))
            .collect();
        out.changed = batch.changed_ids();
        if let Some(f) = &batch.fence {
            out.fence = Some((
                i64::from(f.partition),
                f.node.clone(),
                i64::try_from(f.token).unwrap_or(i64::MAX),
                ns_i64(f.now)?,
            ));
        }
        out.now = ns_i64(jiff::Timestamp::now())?;
        out.touched = out.run_job_ids.clone();
        out.touched.sort_unstable();
        out.touched.dedup();
        Ok(out)
    }
}

/// Runs `op`, and again (at most 5 more times, with a short growing pause)
/// while `retryable` says its error is transient.
pub async fn retry_transient<T, E, F, Fut>(
    retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> std::result::Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
{
    let mut attempt = 0u64;
    loop {
        match op().await {
            Err(e) if attempt < 5 && retryable(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kala_job::Job;

    #[test]
    fn the_last_put_of_an_id_wins_and_ids_are_ordered() {
        let mut a1 = Job::new("first", "true");
        a1.id = "b".into();
        let mut a2 = a1.clone();
        a2.name = "second".into();
        let mut c = Job::new("c", "true");
        c.id = "a".into();
        let e = EncodedBatch::new(&Batch {
            put: vec![a1, c, a2],
            delete: vec!["z".into(), "y".into()],
            ..Batch::default()
        })
        .unwrap();
        assert_eq!(e.put_ids, ["a", "b"]);
        assert!(e.put_jobs[1].contains("\"second\""), "{}", e.put_jobs[1]);
        assert_eq!(e.delete, ["y", "z"]);
    }

    #[tokio::test]
    async fn retries_only_transient_errors() {
        let mut calls = 0;
        let r: std::result::Result<(), &str> = retry_transient(
            |e| *e == "deadlock",
            || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err("deadlock") } else { Err("other") } }
            },
        )
        .await;
        assert_eq!((r, calls), (Err("other"), 3));
    }
}
