//! Runs: manual starts, chains, overlap, deletes, validation, stats, events, restart.

use super::*;

#[tokio::test]
async fn manual_start_runs_now_and_keeps_the_schedule() {
    let mut h = harness().await;
    let id = h
        .engine
        .create(job("manual", "ok", &iso("R", 10, "PT10S")))
        .await
        .unwrap();
    let r = h.engine.run_now(&id).await.unwrap().unwrap();
    assert_eq!((r.trigger, r.ran_at), (Trigger::Manual, at(0)));
    h.finished().await;
    assert_eq!(h.engine.get(&id).unwrap().next_run_at, Some(at(10)));
    h.advance(10).await;
    let r = h.finished().await;
    assert_eq!(
        (r.trigger, r.scheduled_at),
        (Trigger::Schedule, Some(at(10)))
    );
    assert!(matches!(
        h.engine.run_now("nope").await,
        Err(EngineError::NotFound(_))
    ));
}

#[tokio::test]
async fn children_run_fifo_depth_first_after_success_and_skip_when_disabled() {
    let mut h = harness().await;
    let far = iso("R", 86_400, "P1D");
    let p = h.engine.create(job("parent", "ok", &far)).await.unwrap();
    let child = |name: &str, handler: &str, parent: &str| {
        let mut j = job(name, handler, "");
        j.parent_jobs = Some(vec![parent.to_string()]);
        j
    };
    let a = h.engine.create(child("a", "ok", &p)).await.unwrap();
    let mut b = child("b", "ok", &p);
    b.disabled = true;
    h.engine.create(b).await.unwrap();
    h.engine.create(child("c", "ok", &p)).await.unwrap();
    h.engine.create(child("a1", "ok", &a)).await.unwrap();
    h.quiet().await;
    assert!(
        h.calls.lock().unwrap().is_empty(),
        "children do not run on creation"
    );
    assert_eq!(h.engine.get(&p).unwrap().children().len(), 3);
    h.engine.run_now(&p).await.unwrap();
    assert_eq!(h.names(), ["parent", "a", "a1", "c"]);
    // A failing parent does not run its children.
    let f = h.engine.create(job("fparent", "fail", &far)).await.unwrap();
    h.engine.create(child("never", "ok", &f)).await.unwrap();
    h.engine.run_now(&f).await.unwrap();
    assert!(!h.names().contains(&"never".to_string()));
    // Deleting the parent deletes its only-parent children, recursively.
    h.engine.delete(&p).await.unwrap();
    assert_eq!(
        h.engine.len(),
        2,
        "parent, a, a1, b and c are gone; fparent and never stay"
    );
    assert!(h.engine.get(&a).is_none());
}

#[tokio::test]
async fn on_failure_job_runs_after_the_last_retry() {
    let h = harness().await;
    let far = iso("R", 86_400, "P1D");
    let handler = h
        .engine
        .create(job("on-failure", "ok", &far))
        .await
        .unwrap();
    let mut failing = job("failing", "fail", &far);
    failing.retries = 2;
    failing.on_failure_job = handler.clone();
    let fid = h.engine.create(failing).await.unwrap();
    let mut fine = job("fine", "ok", &far);
    fine.on_failure_job = handler.clone();
    let ok = h.engine.create(fine).await.unwrap();
    h.engine.run_now(&fid).await.unwrap();
    h.engine.run_now(&ok).await.unwrap();
    assert_eq!(
        h.names(),
        ["failing", "failing", "failing", "on-failure", "fine"]
    );
    assert_eq!(h.engine.get(&handler).unwrap().metadata.success_count, 1);
}

#[tokio::test]
async fn overlap_skip_skips_while_the_previous_run_goes_on() {
    let mut h = harness().await;
    let mut j = job("slow", "blocking", &iso("R", 10, "PT10S"));
    j.overlap = kala_job::Overlap::Skip;
    let id = h.engine.create(j).await.unwrap();
    h.advance(10).await;
    for _ in 0..100 {
        if !h.calls.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.advance(10).await;
    let r = h.finished().await;
    assert_eq!(
        (r.outcome, r.scheduled_at),
        (Outcome::Skipped, Some(at(20)))
    );
    h.gate.notify_one();
    let r = h.finished().await;
    assert_eq!(
        (r.outcome, r.scheduled_at),
        (Outcome::Succeeded, Some(at(10)))
    );
    assert_eq!(h.engine.runs(&id, None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn deleted_jobs_never_run_again() {
    let mut h = harness().await;
    let id = h
        .engine
        .create(job("gone", "ok", &iso("R", 10, "PT10S")))
        .await
        .unwrap();
    h.engine.delete(&id).await.unwrap();
    h.advance(30).await;
    h.quiet().await;
    assert!(h.engine.get(&id).is_none());
    assert!(matches!(
        h.engine.delete(&id).await,
        Err(EngineError::NotFound(_))
    ));
    assert_eq!(h.engine.scheduled_count(), 0);
}

#[tokio::test]
async fn invalid_jobs_are_rejected_and_nothing_is_stored() {
    let h = harness().await;
    let mut j = job("child", "ok", "");
    j.parent_jobs = Some(vec!["missing".into()]);
    let e = h.engine.create(j).await.unwrap_err();
    assert_eq!(e.to_string(), "parent_jobs: job missing does not exist");
    let e = h
        .engine
        .create(job("past", "ok", &iso("R", -10, "PT1S")))
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("schedule: start"));
    assert!(h.engine.is_empty());
    assert!(h.engine.store().load_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn app_stats_count_jobs_and_runs() {
    let mut h = harness().await;
    for k in 0..3 {
        let id = h
            .engine
            .create(job(&format!("j{k}"), "ok", &iso("R", 100 + k, "PT100S")))
            .await
            .unwrap();
        if k == 2 {
            h.engine.disable(&id).await.unwrap();
        }
    }
    h.engine.create(job("once", "ok", "")).await.unwrap();
    h.finished().await;
    let s = h.engine.app_stats();
    assert_eq!(
        (
            s.jobs,
            s.active_jobs,
            s.disabled_jobs,
            s.success_count,
            s.error_count
        ),
        (4, 3, 1, 1, 0)
    );
    assert_eq!(s.next_run_at, Some(at(100)));
    assert_eq!(s.last_attempted_run, Some(at(0)));
}

#[tokio::test]
async fn events_report_start_then_finish() {
    let mut h = harness().await;
    let mut rx = h.engine.subscribe();
    h.engine.create(job("ev", "ok", "")).await.unwrap();
    h.finished().await;
    assert!(matches!(
        rx.recv().await.unwrap(),
        Event::RunStarted {
            trigger: Trigger::Once,
            ..
        }
    ));
    assert!(matches!(rx.recv().await.unwrap(), Event::RunFinished(_)));
}

#[tokio::test]
async fn restart_catches_up_once_and_keeps_one_offs_and_children() {
    let dir = tempfile::tempdir().unwrap();
    let open =
        || Arc::new(kala_store_redb::RedbStore::open_dir(dir.path()).unwrap()) as Arc<dyn JobStore>;
    let store = open();
    let mut h = harness_on(store.clone(), t0()).await;
    let rep = h
        .engine
        .create(job("repeating", "ok", &iso("R", 10, "PT10S")))
        .await
        .unwrap();
    let parent = h
        .engine
        .create(job("parent", "ok", &iso("R", 86_400, "P1D")))
        .await
        .unwrap();
    let mut kid = job("kid", "ok", "");
    kid.parent_jobs = Some(vec![parent.clone()]);
    let kid = h.engine.create(kid).await.unwrap();
    h.advance(10).await;
    h.finished().await;
    assert!(h.engine.shutdown(Duration::from_secs(5)).await);
    store.close().await.unwrap();
    drop(h);
    drop(store);
    // A one-off stored but never run (as if the process died right after
    // acknowledging it).
    {
        let s = open();
        s.apply(Batch::put(job("pending once", "ok", "")))
            .await
            .unwrap();
        s.close().await.unwrap();
    }
    // Down for 35 s: points 20, 30 and 40 were missed.
    let mut h = harness_on(open(), at(45)).await;
    let mut seen = [h.finished().await, h.finished().await];
    seen.sort_by_key(|r| r.trigger == Trigger::Once);
    assert_eq!(
        (
            seen[0].job_id.as_str(),
            seen[0].scheduled_at,
            seen[0].ran_at
        ),
        (rep.as_str(), Some(at(40)), at(45))
    );
    assert_eq!(seen[1].trigger, Trigger::Once);
    h.quiet().await;
    assert_eq!(h.engine.get(&rep).unwrap().next_run_at, Some(at(50)));
    h.advance(5).await;
    assert_eq!(h.finished().await.scheduled_at, Some(at(50)));
    assert_eq!(
        h.engine.get(&parent).unwrap().children(),
        std::slice::from_ref(&kid)
    );
    h.engine.run_now(&parent).await.unwrap();
    assert!(
        h.names().contains(&"kid".to_string()),
        "children survive a restart"
    );
    assert_eq!(
        h.engine.runs(&rep, None).await.unwrap().len(),
        3,
        "history survives a restart"
    );
}

#[tokio::test]
async fn a_stored_job_whose_timing_does_not_parse_is_reported_and_never_scheduled() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let mut bad = job("bad epsilon", "ok", &iso("R", 10, "PT10S"));
    bad.epsilon = "not a duration".into();
    let mut good = job("good", "ok", &iso("R", 10, "PT10S"));
    good.epsilon = "PT1S".into();
    store
        .apply(Batch {
            put: vec![bad.clone(), good.clone()],
            ..Batch::default()
        })
        .await
        .unwrap();
    let mut h = harness_on(store, t0()).await;
    assert_eq!(h.engine.metrics().snapshot().invalid_jobs, 1);
    assert_eq!(h.engine.scheduled_count(), 1, "only the good job is queued");
    assert_eq!(h.engine.get(&bad.id).unwrap().next_run_at, None);
    h.advance(10).await;
    let r = h.finished().await;
    assert_eq!(
        (r.job_id.as_str(), r.outcome),
        (good.id.as_str(), Outcome::Succeeded)
    );
    // A run asked of it fails with the reason instead of running without
    // its epsilon.
    let r = h.engine.run_now(&bad.id).await.unwrap().unwrap();
    assert_eq!(r.outcome, Outcome::Failed);
    let why = r.error.unwrap_or_default();
    assert!(why.contains("epsilon"), "{why}");
    assert!(!h.names().contains(&"bad epsilon".to_string()));
    // It can still be deleted.
    h.engine.delete(&bad.id).await.unwrap();
}

/// A panic inside a run (here an in-process handler's) is a failed run
/// record, and the job's running count is released: an `overlap: skip`
/// job is not skipped for ever as "still going".
#[tokio::test]
async fn a_panic_in_a_run_is_a_failed_run_and_releases_the_job() {
    let mut h = harness().await;
    h.engine.register_handler("panics", |_job: Job| async {
        if true {
            panic!("handler blew up");
        }
        Ok(String::new())
    });
    let mut j = job("panicky", "panics", &iso("R", 10, "PT10S"));
    j.overlap = kala_job::Overlap::Skip;
    let id = h.engine.create(j).await.unwrap();
    h.advance(10).await;
    let r = h.finished().await;
    assert_eq!((r.outcome, r.scheduled_at), (Outcome::Failed, Some(at(10))));
    let why = r.error.unwrap_or_default();
    assert!(why.contains("the run panicked: handler blew up"), "{why}");
    h.advance(10).await;
    let r = h.finished().await;
    assert_eq!(
        (r.outcome, r.scheduled_at),
        (Outcome::Failed, Some(at(20))),
        "ran again, not skipped as still going"
    );
    assert_eq!(h.engine.get(&id).unwrap().metadata.error_count, 2);
}
