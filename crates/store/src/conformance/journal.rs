//! The run journal's checks: entries begun, listed whole, ended with the
//! run record (atomically), left by a job's deletion, surviving a reopen
//! (checked in `reopen`).

use kala_job::{Job, Outcome, Trigger};

use super::{run, ts};
use crate::{Batch, JobStore, OpenRun};

/// A journal entry for tests.
pub fn open_run(run_id: &str, job_id: &str, point_ns: Option<i128>) -> OpenRun {
    OpenRun {
        run_id: run_id.to_string(),
        job_id: job_id.to_string(),
        trigger: if point_ns.is_some() {
            Trigger::Schedule
        } else {
            Trigger::Manual
        },
        scheduled_at: point_ns.map(ts),
        started_at: ts(1_900_000_000_000_000_123),
        node: "node-a".to_string(),
        dispatched_by: None,
    }
}

fn sorted(mut v: Vec<OpenRun>) -> Vec<OpenRun> {
    v.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    v
}

pub(super) async fn run_journal(s: &dyn JobStore) {
    let name = s.name();
    let job = Job::new("journaled", "true");
    let (a, b) = (
        open_run("run-a", &job.id, Some(1_900_000_000_000_000_000)),
        open_run("run-b", &job.id, None),
    );
    s.apply(Batch {
        put: vec![job.clone()],
        begin: vec![a.clone()],
        ..Batch::default()
    })
    .await
    .expect("begin with a put");
    s.apply(Batch {
        begin: vec![b.clone()],
        ..Batch::default()
    })
    .await
    .expect("begin alone");
    assert_eq!(
        sorted(s.open_runs().await.expect("open_runs")),
        vec![a.clone(), b.clone()],
        "[{name}] begun runs are listed whole"
    );
    // Ending is atomic with the run record; unknown ids are ignored.
    s.apply(Batch {
        runs: vec![run(&job.id, 1_900_000_000_000_000_500, Outcome::Succeeded)],
        end: vec!["run-a".into(), "never-begun".into()],
        ..Batch::default()
    })
    .await
    .expect("end with a record");
    assert_eq!(
        s.open_runs().await.expect("open_runs"),
        vec![b.clone()],
        "[{name}] an ended run is no longer open"
    );
    assert_eq!(s.runs(&job.id, None).await.expect("runs").len(), 1);
    // Deleting the job leaves its open run: the run may still be going.
    s.apply(Batch {
        delete: vec![job.id.clone()],
        ..Batch::default()
    })
    .await
    .expect("delete");
    assert_eq!(
        s.open_runs().await.expect("open_runs"),
        vec![b],
        "[{name}] deleting a job leaves its open runs"
    );
    s.apply(Batch {
        end: vec!["run-b".into()],
        ..Batch::default()
    })
    .await
    .expect("end alone");
    assert!(
        s.open_runs().await.expect("open_runs").is_empty(),
        "[{name}] every run ended"
    );
}
