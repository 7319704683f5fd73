//! Every scheduling rule, driven by a fake clock the test advances. Waiting
//! happens only for the engine's async work to report back (events), with
//! a real-time timeout as a safety net; no schedule is timed by sleeping.

use super::*;
use kala_job::JobType;
use kala_store::MemoryStore;
use std::sync::atomic::{AtomicU32, Ordering};

const T0: &str = "2030-01-01T00:00:00Z";

fn t0() -> Timestamp {
    T0.parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

fn iso(repeat: &str, start_secs: i64, interval: &str) -> String {
    format!("{repeat}/{}/{interval}", at(start_secs))
}

type Calls = Arc<Mutex<Vec<(String, Timestamp)>>>;

struct H {
    engine: Engine,
    clock: Arc<FakeClock>,
    events: broadcast::Receiver<Event>,
    calls: Calls,
    gate: Arc<Notify>,
}

async fn harness_on(store: Arc<dyn JobStore>, now: Timestamp) -> H {
    let clock = Arc::new(FakeClock::new(now));
    let executor = Executor::new().unwrap();
    let calls: Calls = Arc::default();
    let gate = Arc::new(Notify::new());
    let flaky = Arc::new(AtomicU32::new(0));
    {
        let (calls, clock) = (calls.clone(), clock.clone());
        executor.register("ok", move |job: Job| {
            calls.lock().unwrap().push((job.name.clone(), clock.now()));
            async { Ok("done".to_string()) }
        });
    }
    {
        let (calls, clock) = (calls.clone(), clock.clone());
        executor.register("fail", move |job: Job| {
            calls.lock().unwrap().push((job.name.clone(), clock.now()));
            async { Err("it broke".to_string()) }
        });
    }
    {
        let (calls, clock, flaky) = (calls.clone(), clock.clone(), flaky.clone());
        executor.register("flaky", move |job: Job| {
            calls.lock().unwrap().push((job.name.clone(), clock.now()));
            let n = flaky.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(format!("attempt {n} failed"))
                } else {
                    Ok("finally".to_string())
                }
            }
        });
    }
    {
        let (calls, clock, gate) = (calls.clone(), clock.clone(), gate.clone());
        executor.register("blocking", move |job: Job| {
            calls.lock().unwrap().push((job.name.clone(), clock.now()));
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Ok(String::new())
            }
        });
    }
    let engine = Engine::start(store, executor, clock.clone(), EngineConfig::default())
        .await
        .unwrap();
    let events = engine.subscribe();
    H {
        engine,
        clock,
        events,
        calls,
        gate,
    }
}

async fn harness() -> H {
    harness_on(Arc::new(MemoryStore::new()), t0()).await
}

fn job(name: &str, handler: &str, schedule: &str) -> Job {
    let mut j = Job::new(name, handler);
    j.job_type = JobType::InProcess;
    j.schedule = schedule.to_string();
    j
}

impl H {
    async fn advance(&self, secs: i64) {
        self.clock.advance(SignedDuration::from_secs(secs));
        tokio::task::yield_now().await;
    }

    async fn finished(&mut self) -> RunRecord {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(Event::RunFinished(r))) => return r,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => panic!("event stream: {e}"),
                Err(_) => panic!("no run finished within 10 s"),
            }
        }
    }

    /// Asserts that nothing finishes while the engine is given time to act.
    async fn quiet(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(150), async {
            loop {
                if let Ok(Event::RunFinished(r)) = self.events.recv().await {
                    return r;
                }
            }
        })
        .await;
        if let Ok(r) = got {
            panic!("unexpected run: {r:?}");
        }
    }

    /// Waits until `calls` attempts were made and the engine sleeps on the
    /// fake clock (so advancing it now cannot race the engine).
    async fn wait_for_sleep(&self, calls: usize) {
        for _ in 0..2000 {
            if self.calls.lock().unwrap().len() == calls && self.clock.sleepers() > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the engine did not start waiting");
    }

    fn names(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

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
