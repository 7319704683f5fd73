//! Scheduling: first runs, repeats, epsilon, disable/enable, missed points.

use super::*;

#[tokio::test]
async fn empty_schedule_runs_once_immediately() {
    let mut h = harness().await;
    let id = h.engine.create(job("once", "ok", "")).await.unwrap();
    let r = h.finished().await;
    assert_eq!(
        (r.job_id.as_str(), r.trigger, r.outcome),
        (id.as_str(), Trigger::Once, Outcome::Succeeded)
    );
    let j = h.engine.get(&id).unwrap();
    assert!(j.is_done);
    assert_eq!(j.metadata.success_count, 1);
    assert_eq!(j.metadata.number_of_finished_runs, 1);
    assert_eq!(j.next_run_at, None);
    h.quiet().await;
}

#[tokio::test]
async fn first_run_at_start_then_repeat_count_and_is_done() {
    let mut h = harness().await;
    let id = h
        .engine
        .create(job("r2", "ok", &iso("R2", 10, "PT10S")))
        .await
        .unwrap();
    assert_eq!(h.engine.get(&id).unwrap().next_run_at, Some(at(10)));
    h.advance(9).await;
    h.quiet().await;
    for k in 0..3 {
        h.advance(if k == 0 { 1 } else { 10 }).await;
        let r = h.finished().await;
        assert_eq!(r.scheduled_at, Some(at(10 + 10 * k)));
        assert_eq!(
            r.ran_at,
            at(10 + 10 * k),
            "no drift: runs exactly on the grid"
        );
        assert_eq!(
            h.engine.get(&id).unwrap().is_done,
            k == 2,
            "is_done after run {k}"
        );
    }
    h.advance(10).await;
    h.quiet().await;
    let j = h.engine.get(&id).unwrap();
    assert_eq!((j.scheduled_runs, j.metadata.success_count), (3, 3));
    assert_eq!(h.engine.runs(&id, None).await.unwrap().len(), 3);
}

#[tokio::test]
async fn retries_make_one_record_and_count_every_failure() {
    let mut h = harness().await;
    let mut j = job("fails", "fail", "");
    j.retries = 2;
    let id = h.engine.create(j).await.unwrap();
    let r = h.finished().await;
    assert_eq!((r.outcome, r.number_of_retries), (Outcome::Failed, 2));
    assert_eq!(r.error.as_deref(), Some("it broke"));
    let j = h.engine.get(&id).unwrap();
    assert_eq!(
        (
            j.metadata.error_count,
            j.metadata.number_of_finished_runs,
            j.metadata.success_count
        ),
        (3, 1, 0)
    );
    assert_eq!(h.names().len(), 3);
    assert_eq!(h.engine.runs(&id, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn retry_delay_backs_off_exponentially() {
    let mut h = harness().await;
    let mut j = job("flaky", "flaky", "");
    j.retries = 5;
    j.retry_delay = "PT10S".into();
    h.engine.create(j).await.unwrap();
    // Attempt 1 at t0 fails; attempt 2 waits 10 s; attempt 3 waits 20 s.
    h.wait_for_sleep(1).await;
    h.advance(9).await;
    h.quiet().await;
    assert_eq!(h.calls.lock().unwrap().len(), 1);
    h.advance(1).await;
    h.wait_for_sleep(2).await;
    h.advance(20).await;
    let r = h.finished().await;
    assert_eq!((r.outcome, r.number_of_retries), (Outcome::Succeeded, 2));
    let times: Vec<Timestamp> = h.calls.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert_eq!(times, [at(0), at(10), at(30)]);
}

#[tokio::test]
async fn late_runs_beyond_epsilon_are_skipped_and_recorded() {
    let mut h = harness().await;
    let mut j = job("eps", "ok", &iso("R", 10, "PT10S"));
    j.epsilon = "PT1S".into();
    let id = h.engine.create(j).await.unwrap();
    h.advance(15).await;
    let r = h.finished().await;
    assert_eq!(r.outcome, Outcome::Skipped);
    assert!(r.error.unwrap().contains("later than epsilon PT1S"));
    assert!(h.calls.lock().unwrap().is_empty());
    h.advance(5).await;
    let r = h.finished().await;
    assert_eq!(
        (r.outcome, r.scheduled_at),
        (Outcome::Succeeded, Some(at(20)))
    );
    let j = h.engine.get(&id).unwrap();
    assert_eq!(j.metadata.success_count, 1);
    assert_eq!(j.metadata.error_count, 0, "a skip is not an error");
    // Without epsilon a late run still runs.
    let late = h
        .engine
        .create(job("late", "ok", &iso("R0", 40, "PT1S")))
        .await
        .unwrap();
    h.advance(30).await;
    let mut r = h.finished().await;
    while r.job_id != late {
        r = h.finished().await;
    }
    assert_eq!(
        (r.job_id, r.outcome, r.scheduled_at, r.ran_at),
        (late, Outcome::Succeeded, Some(at(40)), at(50))
    );
}

#[tokio::test]
async fn disabled_jobs_never_run_and_start_runs_nothing() {
    let mut h = harness().await;
    let mut j = job("off", "ok", &iso("R", 10, "PT10S"));
    j.disabled = true;
    let id = h.engine.create(j).await.unwrap();
    h.advance(30).await;
    h.quiet().await;
    assert_eq!(h.engine.run_now(&id).await.unwrap(), None);
    let j = h.engine.get(&id).unwrap();
    assert_eq!(j.metadata.last_attempted_run, None, "nothing changed");
    assert!(!j.is_done);
    assert!(h.calls.lock().unwrap().is_empty());
    // Enabling catches up once for the latest missed point, then follows the grid.
    h.engine.enable(&id).await.unwrap();
    let r = h.finished().await;
    assert_eq!((r.scheduled_at, r.ran_at), (Some(at(30)), at(30)));
    h.advance(10).await;
    assert_eq!(h.finished().await.scheduled_at, Some(at(40)));
}

#[tokio::test]
async fn disable_cancels_the_pending_run() {
    let mut h = harness().await;
    let id = h
        .engine
        .create(job("tick", "ok", &iso("R", 10, "PT10S")))
        .await
        .unwrap();
    h.engine.disable(&id).await.unwrap();
    h.advance(25).await;
    h.quiet().await;
    assert!(h.engine.get(&id).unwrap().disabled);
    assert_eq!(h.engine.app_stats().next_run_at, None);
}

#[tokio::test]
async fn resume_at_next_scheduled_time_skips_missed_points() {
    let mut h = harness().await;
    let mut j = job("resume", "ok", &iso("R", 10, "PT10S"));
    j.resume_at_next_scheduled_time = true;
    let id = h.engine.create(j).await.unwrap();
    h.engine.disable(&id).await.unwrap();
    h.advance(25).await;
    h.engine.enable(&id).await.unwrap();
    h.quiet().await;
    assert_eq!(h.engine.get(&id).unwrap().next_run_at, Some(at(30)));
    h.advance(5).await;
    assert_eq!(h.finished().await.scheduled_at, Some(at(30)));
}
