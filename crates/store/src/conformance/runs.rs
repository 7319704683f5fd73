//! Run history's checks: records appended, read newest last with a limit,
//! trimmed by a batch's `keep_runs`, pruned by age and count
//! ([`JobStore::prune_runs`]).

use jiff::SignedDuration;
use kala_job::{Job, Outcome};

use super::{run, ts};
use crate::{Batch, JobStore, Retention};

pub(super) async fn run_records(s: &dyn JobStore) {
    let j = Job::new("runs", "true");
    s.apply(Batch::put(j.clone())).await.expect("put");
    let base = 1_900_000_000_000_000_000i128;
    // Appended out of order, read back in time order.
    for k in [3i128, 1, 2, 0, 4] {
        let outcome = if k % 2 == 0 {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        s.apply(Batch {
            runs: vec![run(&j.id, base + k * 1_000_000_000, outcome)],
            ..Batch::default()
        })
        .await
        .expect("append");
    }
    let all = s.runs(&j.id, None).await.expect("runs");
    assert_eq!(all.len(), 5);
    assert!(
        all.windows(2).all(|w| w[0].ran_at < w[1].ran_at),
        "[{}] runs oldest first",
        s.name()
    );
    assert_eq!(
        all[0],
        run(&j.id, base, Outcome::Succeeded),
        "[{}] run fields round-trip",
        s.name()
    );
    let last2 = s.runs(&j.id, Some(2)).await.expect("runs");
    assert_eq!(
        last2,
        all[3..].to_vec(),
        "[{}] limit keeps the newest",
        s.name()
    );
    // keep_runs trims as it appends.
    s.apply(Batch {
        runs: vec![run(&j.id, base + 10_000_000_000, Outcome::Succeeded)],
        keep_runs: Some(3),
        ..Batch::default()
    })
    .await
    .expect("append with keep");
    let kept = s.runs(&j.id, None).await.expect("runs");
    assert_eq!(kept.len(), 3, "[{}] keep_runs", s.name());
    assert_eq!(kept[2].ran_at, ts(base + 10_000_000_000));
    // Several jobs in one batch: each trimmed on its own, a job under the
    // limit untouched.
    let other = Job::new("other", "true");
    let same = base + 20_000_000_000;
    s.apply(Batch {
        runs: vec![
            run(&j.id, same, Outcome::Succeeded),
            run(&other.id, same, Outcome::Failed),
            run(&other.id, same + 1, Outcome::Succeeded),
        ],
        keep_runs: Some(3),
        ..Batch::default()
    })
    .await
    .expect("append for two jobs with keep");
    let kept = s.runs(&j.id, None).await.expect("runs");
    assert_eq!(kept.len(), 3, "[{}] keep_runs, two jobs", s.name());
    assert_eq!(
        kept[0].ran_at,
        ts(base + 4_000_000_000),
        "[{}] oldest dropped",
        s.name()
    );
    assert_eq!(kept[2].ran_at, ts(same));
    let others = s.runs(&other.id, None).await.expect("runs");
    assert_eq!(
        others.len(),
        2,
        "[{}] a job under the limit keeps every run",
        s.name()
    );
    assert!(s.runs("no-such-id", None).await.expect("runs").is_empty());
    s.delete_all(Vec::new()).await.expect("delete_all");
}

pub(super) async fn retention(s: &dyn JobStore) {
    let j = Job::new("retention", "true");
    let now = ts(1_900_000_100_000_000_000);
    let runs = (0..10)
        .map(|k| {
            run(
                &j.id,
                now.as_nanosecond() - (10 - k) * 60_000_000_000,
                Outcome::Succeeded,
            )
        })
        .collect();
    s.apply(Batch {
        put: vec![j.clone()],
        runs,
        ..Batch::default()
    })
    .await
    .expect("put");
    // Runs are 10, 9, … 1 minutes old: a 5.5-minute age keeps 5.
    let dropped = s
        .prune_runs(
            Retention {
                max_per_job: None,
                max_age: Some(SignedDuration::from_secs(330)),
            },
            now,
        )
        .await
        .expect("prune");
    assert_eq!(dropped, 5, "[{}] prune by age", s.name());
    let dropped = s
        .prune_runs(
            Retention {
                max_per_job: Some(2),
                max_age: None,
            },
            now,
        )
        .await
        .expect("prune");
    assert_eq!(dropped, 3, "[{}] prune by count", s.name());
    let left = s.runs(&j.id, None).await.expect("runs");
    assert_eq!(left.len(), 2);
    assert_eq!(
        left[1].ran_at,
        ts(now.as_nanosecond() - 60_000_000_000),
        "[{}] the newest stay",
        s.name()
    );
    s.delete_all(Vec::new()).await.expect("delete_all");
}
