//! Several engines on one shared store (a `MemoryStore::shared`, standing
//! for the database) with one fake clock: each schedule point runs on
//! exactly one instance, partitions rebalance when an instance joins, and
//! a halted instance's jobs are taken over and their missed points run.

use std::collections::HashMap;

use super::pausing::PausingStore;
use super::*;

pub(super) type Ran = Arc<Mutex<Vec<(String, String, Timestamp)>>>;

pub(super) async fn instance(
    store: Arc<dyn JobStore>,
    clock: Arc<FakeClock>,
    node: &str,
    ran: Ran,
) -> Engine {
    instance_with(store, clock, node, ran, 256, Arc::new(Notify::new())).await
}

/// An instance with `workers` run slots and a `block` handler that waits
/// for `gate`.
async fn instance_with(
    store: Arc<dyn JobStore>,
    clock: Arc<FakeClock>,
    node: &str,
    ran: Ran,
    workers: usize,
    gate: Arc<Notify>,
) -> Engine {
    let executor = Executor::new().unwrap();
    {
        let gate = gate.clone();
        executor.register("block", move |_job: Job| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Ok(String::new())
            }
        });
    }
    {
        // Logs its start (like "ok"), then waits for the gate.
        let (ran, clock, node) = (ran.clone(), clock.clone(), node.to_string());
        executor.register("log-block", move |job: Job| {
            ran.lock()
                .unwrap()
                .push((node.clone(), job.name.clone(), clock.now()));
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Ok(String::new())
            }
        });
    }
    {
        let (ran, clock, node) = (ran.clone(), clock.clone(), node.to_string());
        executor.register("ok", move |job: Job| {
            ran.lock()
                .unwrap()
                .push((node.clone(), job.name.clone(), clock.now()));
            async { Ok(String::new()) }
        });
    }
    let config = EngineConfig {
        node_id: node.to_string(),
        max_concurrent_runs: workers,
        ..EngineConfig::default()
    };
    Engine::start(store, executor, clock, config).await.unwrap()
}

/// Advances the fake clock one second at a time, letting the engines'
/// tasks (rounds, runs, records) catch up after each step.
pub(super) async fn tick(clock: &FakeClock, secs: i64) {
    for _ in 0..secs {
        clock.advance(SignedDuration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// Checks that every recorded point of `ids` is recorded once and that
/// the executions (the handler's own log) equal the records; returns the
/// points per job name.
async fn points(store: &Arc<dyn JobStore>, ids: &[String], ran: &Ran) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for id in ids {
        let Some(job) = store.get(id).await.unwrap() else {
            continue;
        };
        let runs = store.runs(id, None).await.unwrap();
        let mut seen = std::collections::HashSet::new();
        for r in &runs {
            assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
            let p = r.scheduled_at.expect("scheduled");
            assert!(
                seen.insert(p),
                "{} point {p} recorded twice: {runs:?}",
                job.name
            );
        }
        let executions = ran
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.1 == job.name)
            .count();
        assert_eq!(executions, runs.len(), "{}: executions = records", job.name);
        assert_eq!(
            job.metadata.success_count as usize,
            runs.len(),
            "{}: counter",
            job.name
        );
        out.insert(job.name.clone(), seen.len());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_point_runs_once_across_instances_and_a_halted_ones_jobs_are_taken_over() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let a = instance(store.clone(), clock.clone(), "a", ran.clone()).await;
    let b = instance(store.clone(), clock.clone(), "b", ran.clone()).await;
    assert!(a.is_clustered() && b.is_clustered());
    let mut ids = Vec::new();
    for i in 0..16 {
        let e = if i % 2 == 0 { &a } else { &b };
        ids.push(
            e.create(job(&format!("j{i}"), "ok", &iso("R", 2, "PT1S")))
                .await
                .unwrap(),
        );
    }
    // Both instances know every job (created through either).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!((a.len(), b.len()), (16, 16));
    tick(&clock, 12).await;
    let status = a.cluster_status().await.unwrap().expect("clustered");
    let owned: Vec<usize> = status.nodes.iter().map(|n| n.partitions.len()).collect();
    assert_eq!(
        owned,
        [32, 32],
        "two instances share the partitions: {status:?}"
    );
    // Points 2..=12 s: 11 each, none lost through the rebalancing.
    let p = points(&store, &ids, &ran).await;
    for i in 0..16 {
        assert_eq!(p[&format!("j{i}")], 11, "j{i}: {p:?}");
    }
    let ran_on_b = ran.lock().unwrap().iter().filter(|r| r.0 == "b").count();
    assert!(ran_on_b > 0, "b runs its share");

    // a stops without handing over (as if killed): b takes its partitions
    // once their leases run out and runs the points missed meanwhile.
    a.inner.shutdown.send_replace(true);
    a.inner.wake.notify_one();
    tick(&clock, 10).await;
    let p = points(&store, &ids, &ran).await;
    for i in 0..16 {
        assert_eq!(p[&format!("j{i}")], 21, "j{i} after takeover: {p:?}");
    }
    let status = b.cluster_status().await.unwrap().expect("clustered");
    let b_parts = status
        .nodes
        .iter()
        .find(|n| n.name == "b")
        .map(|n| n.partitions.len());
    assert_eq!(b_parts, Some(64), "{status:?}");
    // A job disabled through b stops; deleted through b is gone from b.
    b.disable(&ids[0]).await.unwrap();
    b.delete(&ids[1]).await.unwrap();
    tick(&clock, 3).await;
    let p = points(&store, &ids, &ran).await;
    assert_eq!(p["j0"], 21, "disabled: no more runs");
    assert!(!p.contains_key("j1"), "deleted");
    assert_eq!(p["j2"], 24);
    let j1 = ran.lock().unwrap().iter().filter(|r| r.1 == "j1").count();
    assert_eq!(j1, 21, "nothing ran after the delete");
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_off_job_waiting_for_a_worker_is_not_started_twice() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let gate = Arc::new(Notify::new());
    // One worker, taken by a run that waits: the one-off jobs wait for
    // it, while the change follower finds them pending and not running.
    let a = instance_with(
        store.clone(),
        clock.clone(),
        "a",
        ran.clone(),
        1,
        gate.clone(),
    )
    .await;
    a.create(job("blocker", "block", "")).await.unwrap();
    for i in 0..5 {
        a.create(job(&format!("once {i}"), "ok", "")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gate.notify_one();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..5 {
        let name = format!("once {i}");
        let n = ran.lock().unwrap().iter().filter(|r| r.1 == name).count();
        assert_eq!(n, 1, "{name} ran {n} times");
    }
    a.shutdown(Duration::from_secs(1)).await;
}

/// Issue 29, defect 4: an instance paused between a run's journal entry
/// and its process start, while another took its partition over (and
/// recorded the run `interrupted`), does not start the process when it
/// resumes: the lease is proven on its monotonic clock right before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_does_not_start_a_run_after_losing_its_lease() {
    let inner = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let paused = Arc::new(PausingStore::new(inner.clone(), clock.clone()));
    let a = instance(paused.clone(), clock.clone(), "a", ran.clone()).await;
    // a alone holds every partition; its job's first point is at 2 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = a
        .create(job("paused", "ok", &iso("R0", 2, "PT1H")))
        .await
        .unwrap();
    let store: Arc<dyn JobStore> = inner.clone();
    paused.armed.store(true, Ordering::SeqCst);
    tick(&clock, 2).await;
    // a journaled the point and is paused; b starts and finds a dead.
    while !paused.paused.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = instance(store.clone(), clock.clone(), "b", ran.clone()).await;
    // The journal write "paused" a until b took over; give a time to
    // resume, fail the proof and give up.
    tokio::time::sleep(Duration::from_millis(2800)).await;
    tick(&clock, 2).await;
    let executions: Vec<_> = ran
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.1 == "paused")
        .cloned()
        .collect();
    assert!(
        executions.is_empty(),
        "the point ran although a lost its lease during the pause: {executions:?}"
    );
    // a records the run "not started" (through the late writer, which
    // finds b's `interrupted` record of it and supersedes it).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while a.late_records() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a did not record the run"
        );
        tick(&clock, 1).await;
    }
    let mut runs = store.runs(&id, None).await.unwrap();
    kala_store::settle_runs(&mut runs);
    assert_eq!(runs.len(), 1, "one record for the point: {runs:?}");
    assert_eq!(runs[0].outcome, Outcome::Skipped, "{runs:?}");
    assert!(
        runs[0]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("not started")),
        "{runs:?}"
    );
    assert_eq!(runs[0].scheduled_at, Some(at(2)));
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            job.metadata.error_count,
            job.metadata.number_of_finished_runs
        ),
        (0, 0),
        "a run that never started counts as nothing"
    );
    assert!(store.open_runs().await.unwrap().is_empty());
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}

/// Issue 29, defect 5: the points that fell while a job was disabled are
/// not run by the instance that takes its partition over after the
/// enable (the owner was gone when the job was enabled elsewhere): one
/// catch-up run, as Kala does at enable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_after_an_enable_does_not_run_the_disabled_points() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let a = instance(store.clone(), clock.clone(), "a", ran.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = a
        .create(job("j", "ok", &iso("R", 2, "PT1S")))
        .await
        .unwrap();
    tick(&clock, 5).await;
    a.disable(&id).await.unwrap();
    tick(&clock, 6).await;
    // a stops without handing over; b enables the job at 11 s.
    a.inner.shutdown.send_replace(true);
    a.inner.wake.notify_one();
    let b = instance(store.clone(), clock.clone(), "b", ran.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.enable(&id).await.unwrap();
    tick(&clock, 8).await;
    let points: Vec<Timestamp> = store
        .runs(&id, None)
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.scheduled_at)
        .collect();
    let disabled: Vec<_> = points
        .iter()
        .filter(|p| **p >= at(6) && **p <= at(10))
        .collect();
    assert!(
        disabled.is_empty(),
        "points that fell while the job was disabled ran after the takeover: {disabled:?} (all: {points:?})"
    );
    assert!(
        points.contains(&at(11)),
        "the catch-up point runs: {points:?}"
    );
    assert!(
        points.iter().any(|p| *p >= at(14)),
        "and the schedule goes on: {points:?}"
    );
    b.shutdown(Duration::from_secs(1)).await;
}

/// Issue 29, points without a trace: a job's owner goes silent; two
/// points fall; the job is disabled through another instance before
/// anyone has taken the partition over. Those two points fell while the
/// job was enabled: the instance that takes over records them `skipped`
/// (the disable has answered, so they must not run) instead of passing
/// them over in silence; after the enable only the catch-up point of the
/// disabled stretch runs, and the schedule goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_owed_from_before_a_disable_are_recorded_not_lost() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let a = instance(store.clone(), clock.clone(), "a", ran.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = a
        .create(job("j", "ok", &iso("R", 2, "PT1S")))
        .await
        .unwrap();
    tick(&clock, 4).await;
    // a goes silent (no hand-over): its lease runs out 3 s after its
    // last round.
    a.inner.shutdown.send_replace(true);
    a.inner.wake.notify_one();
    let b = instance(store.clone(), clock.clone(), "b", ran.clone()).await;
    tick(&clock, 2).await;
    clock.advance(SignedDuration::from_millis(500));
    b.disable(&id).await.unwrap();
    tick(&clock, 6).await;
    b.enable(&id).await.unwrap();
    tick(&clock, 4).await;
    let records = store.runs(&id, None).await.unwrap();
    let outcome = |p: Timestamp| {
        records
            .iter()
            .filter(|r| r.scheduled_at == Some(p))
            .map(|r| r.outcome)
            .collect::<Vec<_>>()
    };
    for p in 2..=4 {
        assert_eq!(outcome(at(p)), [Outcome::Succeeded], "point {p}");
    }
    for p in 5..=6 {
        assert_eq!(
            outcome(at(p)),
            [Outcome::Skipped],
            "point {p} fell before the disable while its owner was silent: recorded, not run, not lost"
        );
    }
    let enabled = b.get(&id).unwrap().disabled_stretch();
    let Some((_, Some(until))) = enabled else {
        panic!("a stretch that ended: {enabled:?}");
    };
    let catch_up = at(until.as_second() - t0().as_second());
    for p in 7..(until.as_second() - t0().as_second()) {
        assert!(outcome(at(p)).is_empty(), "point {p} fell while disabled");
    }
    assert_eq!(outcome(catch_up), [Outcome::Succeeded], "the catch-up");
    assert!(
        records
            .iter()
            .any(|r| r.scheduled_at.is_some_and(|p| p > catch_up)),
        "and the schedule goes on"
    );
    b.shutdown(Duration::from_secs(1)).await;
}

/// Issue 29: a run still going on an instance that loses its job's
/// partition (another instance joins) and takes it back (that one leaves)
/// is not started again by the taking back: its own open journal entry
/// counts as taken, like another live instance's. (Its record, refused
/// under the old lease, waits in the late writer meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_taken_back_does_not_start_its_own_run_again() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let gate = Arc::new(Notify::new());
    let a = instance_with(
        store.clone(),
        clock.clone(),
        "a",
        ran.clone(),
        256,
        gate.clone(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = Vec::new();
    for k in 0..16 {
        let id = a
            .create(job(&format!("slow {k}"), "log-block", &iso("R", 2, "PT1H")))
            .await
            .unwrap();
        ids.push(id);
    }
    tick(&clock, 3).await;
    assert_eq!(ran.lock().unwrap().len(), 16, "every job's point 2 started");
    let b = instance_with(
        store.clone(),
        clock.clone(),
        "b",
        ran.clone(),
        256,
        gate.clone(),
    )
    .await;
    tick(&clock, 5).await;
    let moved = match b.cluster_status().await.unwrap() {
        Some(s) => s
            .nodes
            .iter()
            .filter(|n| n.name == "b")
            .flat_map(|n| n.partitions.clone())
            .collect::<Vec<u32>>(),
        None => Vec::new(),
    };
    assert!(
        ids.iter()
            .any(|id| moved.contains(&kala_store::partition_of(id))),
        "some job's partition went to b: {moved:?}"
    );
    b.shutdown(Duration::from_secs(1)).await;
    tick(&clock, 5).await;
    gate.notify_waiters();
    tick(&clock, 2).await;
    let runs = ran.lock().unwrap().clone();
    assert_eq!(
        runs.len(),
        16,
        "a point still running was started again when its partition came back: {runs:?}"
    );
    gate.notify_waiters();
    a.shutdown(Duration::from_secs(1)).await;
}

/// Issue 29, defect 6: read-your-writes across instances. An enable
/// through `b` right after a disable through `a` answered is written,
/// although `b`'s memory has not heard of the disable yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enable_right_after_another_instances_disable_is_not_lost() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let a = instance(store.clone(), clock.clone(), "a", ran.clone()).await;
    let b = instance(store.clone(), clock.clone(), "b", ran.clone()).await;
    let id = a
        .create(job("flip", "ok", &iso("R", 3600, "PT1H")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(b.get(&id).is_some(), "b knows the job");
    for round in 0..5 {
        a.disable(&id).await.unwrap();
        b.enable(&id).await.unwrap();
        let stored = store.get(&id).await.unwrap().unwrap();
        assert!(
            !stored.disabled,
            "round {round}: the enable through b was lost"
        );
        b.disable(&id).await.unwrap();
        a.enable(&id).await.unwrap();
        let stored = store.get(&id).await.unwrap().unwrap();
        assert!(
            !stored.disabled,
            "round {round}: the enable through a was lost"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}

/// Issue 29, defect 3: a run that succeeds on an instance cut off from
/// the database is not lost. Its record waits in memory; meanwhile the
/// instance that took the partition over records the run `interrupted`;
/// once the database answers again, the real record supersedes it and
/// the counters follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ended_while_cut_off_is_recorded_late_and_supersedes_interrupted() {
    let inner = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let gate = Arc::new(Notify::new());
    let a_store = Arc::new(PausingStore::new(inner.clone(), clock.clone()));
    let a = instance_with(
        a_store.clone(),
        clock.clone(),
        "a",
        ran.clone(),
        16,
        gate.clone(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = a
        .create(job("long", "block", &iso("R0", 2, "PT1H")))
        .await
        .unwrap();
    tick(&clock, 2).await;
    // The run is going on a; a is cut off; b starts and, a's lease run
    // out, takes the partition over and records the run interrupted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        inner.open_runs().await.unwrap().len(),
        1,
        "the run is journaled"
    );
    a_store.cut.store(true, Ordering::SeqCst);
    let store: Arc<dyn JobStore> = inner.clone();
    let b = instance(store.clone(), clock.clone(), "b", ran.clone()).await;
    tick(&clock, 6).await;
    let runs = store.runs(&id, None).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].outcome,
        Outcome::Interrupted,
        "b recorded it: {runs:?}"
    );
    // The run ends on a (successfully), while a is still cut off.
    gate.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.late_records(), 1, "the record waits in memory");
    // a reaches the database again: the late record is written.
    a_store.cut.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while a.late_records() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the late record was not written"
        );
        tick(&clock, 1).await;
    }
    let mut runs = store.runs(&id, None).await.unwrap();
    kala_store::settle_runs(&mut runs);
    assert_eq!(runs.len(), 1, "the run is seen once: {runs:?}");
    assert_eq!(
        runs[0].outcome,
        Outcome::Succeeded,
        "as it really ended: {runs:?}"
    );
    assert_eq!(runs[0].node.as_deref(), Some("a"));
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            job.metadata.success_count,
            job.metadata.error_count,
            job.metadata.number_of_finished_runs
        ),
        (1, 0, 1),
        "the counters follow the real outcome"
    );
    assert!(store.open_runs().await.unwrap().is_empty());
    assert_eq!(a.metrics().snapshot().records_written_late, 1);
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}
