//! What `chaos` prints when the oracle finds something: the timeline of
//! faults and operations around each finding.

use kala_testkit::oracle::{self, Execution};

/// Around each run after a stop and each point without a trace: what
/// happened (faults, operations), the job's partition, and its runs and
/// records nearby.
pub(super) fn explain(
    verdict: &oracle::Verdict,
    runs: &[Execution],
    jobs: &[oracle::JobState],
    events: &[(f64, String)],
) {
    for (id, run_id, after) in &verdict.after_stop {
        let Some(r) = runs.iter().find(|r| &r.run_id == run_id) else {
            continue;
        };
        eprintln!(
            "chaos: run {run_id} of {id} (point {:?}) on {} started {after:.2} s after its job's stop answered (partition {}):",
            r.point,
            r.node,
            kala_store::partition_of(id)
        );
        for (t, what) in events.iter().filter(|(t, _)| (t - r.at).abs() <= 20.0) {
            eprintln!("  {:+7.2} s  {what}", t - r.at);
        }
    }
    for (id, p) in &verdict.untraced {
        let Ok(p) = p.parse::<f64>() else { continue };
        eprintln!(
            "chaos: untraced {id} point {p} (partition {}):",
            kala_store::partition_of(id)
        );
        for (t, what) in events.iter().filter(|(t, _)| (t - p).abs() <= 20.0) {
            eprintln!("  {:+7.2} s  {what}", t - p);
        }
        for r in runs.iter().filter(|r| r.job == *id) {
            if let Some(q) = oracle::point_secs(&r.point)
                && (q - p).abs() <= 5.0
            {
                eprintln!(
                    "  ran {} on {} at {:+.2} s ({})",
                    r.point,
                    r.node,
                    r.at - p,
                    r.run_id
                );
            }
        }
        for j in jobs.iter().filter(|j| j.id == *id) {
            for r in &j.records {
                if let Some(q) = r.point.as_deref().and_then(oracle::point_secs)
                    && (q - p).abs() <= 5.0
                {
                    eprintln!("  record {:?} {} on {:?}", r.point, r.outcome, r.node);
                }
            }
        }
    }
}
