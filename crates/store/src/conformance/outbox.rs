//! The notification outbox: notices written with the run that causes
//! them, listed while pending, replaced by id, deleted with their job,
//! pruned when done.

use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, NotifyOn, NotifyTarget, Outcome, RunRecord, Trigger};

use crate::{Batch, JobStore, Notice, NoticeState};

pub(super) fn run_of(job: &Job, at: Timestamp) -> RunRecord {
    RunRecord {
        job_id: job.id.clone(),
        ran_at: at,
        scheduled_at: None,
        trigger: Trigger::Manual,
        outcome: Outcome::Failed,
        number_of_retries: 0,
        execution_duration: 5,
        exit_code: Some(3),
        error: Some("exit status 3".into()),
        output: "bad\n".into(),
        run_id: None,
        node: None,
    }
}

pub fn notice(job: &Job, n: u32, at: Timestamp) -> Notice {
    Notice {
        id: format!("{}-notice-{n}", job.id),
        job_id: job.id.clone(),
        job_name: job.name.clone(),
        event: NotifyOn::Failure,
        target: NotifyTarget::webhook("http://127.0.0.1:9/hook", &[NotifyOn::Failure]),
        run: run_of(job, at),
        node: "conformance".into(),
        created_at: at,
        state: NoticeState::Pending,
        attempts: 0,
        next_attempt_at: at + SignedDuration::from_secs(i64::from(n)),
        last_error: None,
        done_at: None,
    }
}

pub async fn outbox(store: &dyn JobStore) {
    let name = store.name();
    let t0: Timestamp = "2030-01-01T00:00:00Z".parse().expect("time");
    let a = Job::new("outbox a", "false");
    let b = Job::new("outbox b", "false");
    let (a1, a2, b1) = (notice(&a, 1, t0), notice(&a, 2, t0), notice(&b, 3, t0));
    store
        .apply(Batch {
            put: vec![a.clone(), b.clone()],
            runs: vec![a1.run.clone(), b1.run.clone()],
            notices: vec![a2.clone(), a1.clone(), b1.clone()],
            ..Batch::default()
        })
        .await
        .expect("notices with their runs");
    let pending = store.pending_notices(10).await.expect("pending_notices");
    assert_eq!(
        pending,
        vec![a1.clone(), a2.clone(), b1.clone()],
        "{name}: pending notices, soonest first, every field kept"
    );
    let first = store.pending_notices(1).await.expect("pending_notices");
    assert_eq!(
        first,
        vec![a1.clone()],
        "{name}: the limit keeps the soonest"
    );
    // A delivery updates the notice in place.
    let mut done = a1.clone();
    done.state = NoticeState::Delivered;
    done.attempts = 2;
    done.last_error = Some("HTTP 500".into());
    done.done_at = Some(t0 + SignedDuration::from_secs(10));
    let mut held = a2.clone();
    held.state = NoticeState::Held;
    held.next_attempt_at = t0 + SignedDuration::from_secs(600);
    store
        .apply(Batch {
            notices: vec![done.clone(), held.clone()],
            ..Batch::default()
        })
        .await
        .expect("update notices");
    let pending = store.pending_notices(10).await.expect("pending_notices");
    assert_eq!(
        pending,
        vec![b1.clone(), held.clone()],
        "{name}: a delivered notice is no longer pending; a held one is"
    );
    let of_a = store.notices(&a.id).await.expect("notices");
    let mut want = vec![done.clone(), held.clone()];
    crate::oldest_first(&mut want);
    assert_eq!(of_a, want, "{name}: a job's notices, done ones included");
    // Pruning drops done notices older than the cut, never pending ones.
    let dropped = store
        .prune_notices(t0 + SignedDuration::from_secs(5))
        .await
        .expect("prune_notices");
    assert_eq!(dropped, 0, "{name}: a notice done after the cut stays");
    let dropped = store
        .prune_notices(t0 + SignedDuration::from_secs(3600))
        .await
        .expect("prune_notices");
    assert_eq!(dropped, 1, "{name}: the done notice before the cut goes");
    assert_eq!(
        store.notices(&a.id).await.expect("notices"),
        vec![held.clone()],
        "{name}: pending notices are never pruned"
    );
    // Deleting a job deletes its notices.
    store
        .apply(Batch {
            delete: vec![a.id.clone()],
            ..Batch::default()
        })
        .await
        .expect("delete");
    assert!(
        store.notices(&a.id).await.expect("notices").is_empty(),
        "{name}: a deleted job's notices go with it"
    );
    assert_eq!(
        store.pending_notices(10).await.expect("pending_notices"),
        vec![b1.clone()],
        "{name}: other jobs' notices stay"
    );
    store.delete_all(Vec::new()).await.expect("delete_all");
    assert!(
        store
            .pending_notices(10)
            .await
            .expect("pending_notices")
            .is_empty(),
        "{name}: delete_all leaves no notice"
    );
}
