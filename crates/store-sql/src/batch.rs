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

impl EncodedBatch {
    /// The batches of one group commit as one: what applying them one
    /// after the other in this order writes. Their fences are left out
    /// (the group checked them); every batch must have the same
    /// `keep_runs` (the first's is kept).
    ///
    /// Batches are only grouped while they are all in flight at once, so
    /// no order among them was promised to anyone; within that, the
    /// merge keeps arrival order where it shows: the last put of a job
    /// wins, a job's changes apply in arrival order, and of two versions
    /// of one notice the later is stored.
    pub fn merge(parts: &[&EncodedBatch]) -> EncodedBatch {
        let Some(first) = parts.first() else {
            return EncodedBatch::default();
        };
        let mut out = EncodedBatch {
            keep_runs: first.keep_runs,
            now: parts.iter().map(|b| b.now).max().unwrap_or(first.now),
            ..EncodedBatch::default()
        };
        // Puts: latest arrival first, then a stable sort by id keeps it.
        let mut puts: Vec<(&String, &String)> = parts
            .iter()
            .rev()
            .flat_map(|b| b.put_ids.iter().zip(&b.put_jobs))
            .collect();
        puts.sort_by(|a, b| a.0.cmp(b.0));
        puts.dedup_by(|a, b| a.0 == b.0);
        for (id, job) in puts {
            out.put_ids.push(id.clone());
            out.put_jobs.push(job.clone());
        }
        let mut update: std::collections::BTreeMap<&str, Vec<JobChange>> = Default::default();
        let mut notices: std::collections::HashMap<&str, usize> = Default::default();
        for b in parts {
            out.delete.extend(b.delete.iter().cloned());
            out.run_job_ids.extend(b.run_job_ids.iter().cloned());
            out.run_at.extend(b.run_at.iter().copied());
            out.runs.extend(b.runs.iter().cloned());
            out.touched.extend(b.touched.iter().cloned());
            out.begin.extend(b.begin.iter().cloned());
            out.end.extend(b.end.iter().cloned());
            out.changed.extend(b.changed.iter().cloned());
            out.audit.extend(b.audit.iter().cloned());
            for (id, changes) in &b.update {
                update
                    .entry(id.as_str())
                    .or_default()
                    .extend(changes.iter().cloned());
            }
            for n in &b.notices {
                match notices.get(n.0.as_str()) {
                    Some(&at) => out.notices[at] = n.clone(),
                    None => {
                        notices.insert(n.0.as_str(), out.notices.len());
                        out.notices.push(n.clone());
                    }
                }
            }
        }
        out.update = update
            .into_iter()
            .map(|(id, c)| (id.to_string(), c))
            .collect();
        for ids in [
            &mut out.delete,
            &mut out.touched,
            &mut out.end,
            &mut out.changed,
        ] {
            ids.sort_unstable();
            ids.dedup();
        }
        out
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

    fn encoded(b: Batch) -> EncodedBatch {
        EncodedBatch::new(&b).unwrap()
    }

    #[test]
    fn a_merged_group_writes_what_its_batches_write_in_order() {
        let mut a1 = Job::new("first", "true");
        a1.id = "a".into();
        let mut a2 = a1.clone();
        a2.name = "second".into();
        let mut b = Job::new("b", "true");
        b.id = "b".into();
        let run = |job: &str, secs: i64| kala_job::RunRecord {
            job_id: job.into(),
            ran_at: jiff::Timestamp::from_second(secs).unwrap(),
            scheduled_at: None,
            trigger: kala_job::Trigger::Manual,
            outcome: kala_job::Outcome::Succeeded,
            number_of_retries: 0,
            execution_duration: 0,
            exit_code: Some(0),
            error: None,
            output: String::new(),
            run_id: None,
            node: None,
        };
        let change = |id: &str, n: u64| kala_store::JobUpdate {
            job_id: id.into(),
            change: JobChange::Ran(kala_store::RunDelta {
                successes: n,
                ..kala_store::RunDelta::default()
            }),
        };
        let one = encoded(Batch {
            put: vec![a1, b],
            runs: vec![run("b", 1)],
            update: vec![change("b", 1)],
            end: vec!["r2".into()],
            keep_runs: Some(5),
            ..Batch::default()
        });
        let two = encoded(Batch {
            put: vec![a2],
            delete: vec!["z".into()],
            runs: vec![run("b", 2), run("c", 3)],
            update: vec![change("b", 2), change("a", 7)],
            end: vec!["r1".into(), "r2".into()],
            keep_runs: Some(5),
            ..Batch::default()
        });
        let m = EncodedBatch::merge(&[&one, &two]);
        assert_eq!(m.put_ids, ["a", "b"]);
        assert!(m.put_jobs[0].contains("\"second\""), "the later put wins");
        assert_eq!(m.delete, ["z"]);
        assert_eq!(m.run_job_ids, ["b", "b", "c"]);
        assert_eq!(m.touched, ["b", "c"]);
        assert_eq!(m.end, ["r1", "r2"]);
        assert_eq!(m.keep_runs, Some(5));
        let ids: Vec<&str> = m.update.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "rows locked in id order");
        let JobChange::Ran(d) = &m.update[1].1[1] else {
            panic!("{:?}", m.update)
        };
        assert_eq!((m.update[1].1.len(), d.successes), (2, 2), "arrival order");
        assert_eq!(m.changed, ["a", "b", "z"]);
        assert!(m.fence.is_none());
        assert!(EncodedBatch::merge(&[]).put_ids.is_empty());
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
