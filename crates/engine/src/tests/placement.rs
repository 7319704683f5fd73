//! `run_on` in a cluster (three engines on one shared store, one fake
//! clock): each point runs on the chosen matching instances, each once,
//! dispatched through the run journal; fewer matches than asked are
//! recorded `skipped` with the reason; a worker runs what is dispatched
//! to it and holds no partition.

use std::collections::{BTreeMap, HashMap};

use kala_job::RunOn;
use kala_store::NodeRole;

use super::cluster::{Ran, tick};
use super::*;

async fn node(
    store: &Arc<dyn JobStore>,
    clock: &Arc<FakeClock>,
    name: &str,
    tags: &[(&str, &str)],
    role: NodeRole,
    ran: &Ran,
) -> Engine {
    let executor = Executor::new().unwrap();
    let (r, c, n) = (ran.clone(), clock.clone(), name.to_string());
    executor.register("ok", move |job: Job| {
        r.lock()
            .unwrap()
            .push((n.clone(), job.name.clone(), c.now()));
        async { Ok(String::new()) }
    });
    let config = EngineConfig {
        node_id: name.to_string(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        role,
        ..EngineConfig::default()
    };
    Engine::start(store.clone(), executor, clock.clone(), config)
        .await
        .unwrap()
}

fn placed(name: &str, run_on: RunOn) -> Job {
    let mut j = job(name, "ok", &iso("R", 3, "PT1S"));
    j.run_on = Some(Box::new(run_on));
    j
}

fn etl(count: Option<u32>, every: bool) -> RunOn {
    RunOn {
        tags: BTreeMap::from([("role".to_string(), "etl".to_string())]),
        count,
        every,
    }
}

/// The nodes of each (job name, schedule point), from the succeeded run
/// records (each names its node and point); checks that executions (the
/// handler's own log) equal those records, per job.
async fn by_point(
    store: &Arc<dyn JobStore>,
    jobs: &[(&str, &str)],
    ran: &Ran,
) -> HashMap<(String, Timestamp), Vec<String>> {
    let mut out: HashMap<(String, Timestamp), Vec<String>> = HashMap::new();
    for (name, id) in jobs {
        let records = store.runs(id, None).await.unwrap();
        let ok: Vec<_> = records
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded)
            .collect();
        let executions = ran.lock().unwrap().iter().filter(|r| r.1 == *name).count();
        assert_eq!(executions, ok.len(), "{name}: executions = records");
        for r in ok {
            out.entry((name.to_string(), r.scheduled_at.expect("point")))
                .or_default()
                .push(r.node.clone().expect("node"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_places_each_point_on_matching_instances_exactly_once() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let a = node(
        &store,
        &clock,
        "a",
        &[("role", "web")],
        NodeRole::Both,
        &ran,
    )
    .await;
    let b = node(
        &store,
        &clock,
        "b",
        &[("role", "etl")],
        NodeRole::Both,
        &ran,
    )
    .await;
    // c is a worker: it holds no partition, and runs what it is sent.
    let c = node(
        &store,
        &clock,
        "c",
        &[("role", "etl")],
        NodeRole::Worker,
        &ran,
    )
    .await;
    tick(&clock, 2).await;
    // Which matching instance runs a point of `one` hashes its id and the
    // point: a random id would put all six points on one instance once in
    // ~30 runs, and the spread checked below would fail by chance. A fixed
    // id (the points are fixed by the fake clock) makes it a check.
    let mut first = placed("one", etl(None, false));
    first.id = "00000000-0000-4000-8000-000000000001".into();
    let one = a.create(first).await.unwrap();
    assert_eq!(one, "00000000-0000-4000-8000-000000000001", "the id kept");
    let two = a.create(placed("two", etl(Some(2), false))).await.unwrap();
    let every = a
        .create(placed(
            "every",
            RunOn {
                every: true,
                ..RunOn::default()
            },
        ))
        .await
        .unwrap();
    let gpu = a
        .create(placed(
            "gpu",
            RunOn {
                tags: BTreeMap::from([("role".to_string(), "gpu".to_string())]),
                ..RunOn::default()
            },
        ))
        .await
        .unwrap();
    let three = a
        .create(placed("three", etl(Some(3), false)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Points at 3..=8 s.
    tick(&clock, 6).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let status = a.cluster_status().await.unwrap().expect("clustered");
    let c_parts = status
        .nodes
        .iter()
        .find(|n| n.name == "c")
        .map(|n| n.partitions.len());
    assert_eq!(c_parts, Some(0), "a worker holds no partition: {status:?}");

    let points = by_point(
        &store,
        &[
            ("one", &one),
            ("two", &two),
            ("three", &three),
            ("every", &every),
            ("gpu", &gpu),
        ],
        &ran,
    )
    .await;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for ((name, at), nodes) in &points {
        *seen.entry(name.as_str()).or_default() += 1;
        let mut sorted = nodes.clone();
        sorted.sort();
        match name.as_str() {
            "one" => {
                assert_eq!(nodes.len(), 1, "one at {at}: {nodes:?}");
                assert!(nodes[0] == "b" || nodes[0] == "c", "one at {at}: {nodes:?}");
            }
            "two" | "three" => assert_eq!(sorted, ["b", "c"], "{name} at {at}"),
            "every" => assert_eq!(sorted, ["a", "b", "c"], "every at {at}"),
            other => panic!("{other} ran at {at} on {nodes:?}"),
        }
    }
    for name in ["one", "two", "three", "every"] {
        assert!(
            seen.get(name).copied().unwrap_or(0) >= 5,
            "{name}: {seen:?}"
        );
    }
    // Spread: "one" ran on both matching instances over the points.
    let one_nodes: std::collections::HashSet<&String> = points
        .iter()
        .filter(|((n, _), _)| n == "one")
        .flat_map(|(_, v)| v)
        .collect();
    assert_eq!(one_nodes.len(), 2, "points of `one` spread over b and c");

    // Records: one per run, each naming its node; none left open.
    let records = store.runs(&one, None).await.unwrap();
    assert!(records.iter().all(|r| r.outcome == Outcome::Succeeded));
    assert!(records.iter().any(|r| r.node.as_deref() == Some("c")));
    let two_records = store.runs(&two, None).await.unwrap();
    let ran_two = ran.lock().unwrap().iter().filter(|r| r.1 == "two").count();
    assert_eq!(two_records.len(), ran_two, "a record per instance's run");
    let stored = store.get(&two).await.unwrap().unwrap();
    assert_eq!(stored.metadata.success_count as usize, ran_two);
    assert!(
        stored.next_run_at.is_some() && !stored.is_done,
        "the workers' records leave the schedule to the holder: {stored:?}"
    );
    let every_records = store.runs(&every, None).await.unwrap();
    assert!(every_records.iter().any(|r| r.node.as_deref() == Some("a")));

    // No match: each point skipped, with why; nothing ran.
    let gpu_records = store.runs(&gpu, None).await.unwrap();
    assert!(gpu_records.len() >= 5, "{gpu_records:?}");
    assert!(gpu_records.iter().all(|r| {
        r.outcome == Outcome::Skipped
            && r.error
                .as_deref()
                .is_some_and(|e| e.contains("no live instance matches run_on {role: gpu}"))
    }));
    // Three asked, two match: two runs and a skipped record per point.
    let three_records = store.runs(&three, None).await.unwrap();
    let skipped = three_records
        .iter()
        .filter(|r| r.outcome == Outcome::Skipped)
        .count();
    let ok = three_records
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .count();
    assert!(skipped >= 5 && ok == 2 * skipped, "{three_records:?}");
    assert!(three_records.iter().any(|r| {
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("asks for 3, 2 live instances match (b, c)"))
    }));
    assert!(
        a.metrics().snapshot().placement_skipped + b.metrics().snapshot().placement_skipped > 0
    );
    assert!(
        store
            .open_runs()
            .await
            .unwrap()
            .iter()
            .all(|o| o.dispatched_by.is_none()),
        "every dispatched run ended"
    );
    for e in [a, b, c] {
        e.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn alone_run_on_must_match_this_instance() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let a = node(
        &store,
        &clock,
        "a",
        &[("role", "etl")],
        NodeRole::Both,
        &ran,
    )
    .await;
    assert!(a.create(placed("fits", etl(None, false))).await.is_ok());
    assert!(a.create(placed("all", etl(None, true))).await.is_ok());
    let e = a
        .create(placed("two", etl(Some(2), false)))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("run_on.count"), "{e}");
    let mut web = etl(None, false);
    web.tags.insert("role".into(), "web".into());
    let e = a.create(placed("web", web)).await.unwrap_err().to_string();
    assert!(
        e.contains("does not match this instance (tags {role: etl})"),
        "{e}"
    );
    a.shutdown(Duration::from_secs(1)).await;
}

/// A one-off job with `run_on` runs once on a matching instance, and is
/// done from its dispatch on: a later look at it (a follower's re-read,
/// a takeover) does not find it pending and place it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatched_one_off_runs_once_and_is_done() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let a = node(
        &store,
        &clock,
        "a",
        &[("role", "web")],
        NodeRole::Both,
        &ran,
    )
    .await;
    let b = node(
        &store,
        &clock,
        "b",
        &[("role", "etl")],
        NodeRole::Worker,
        &ran,
    )
    .await;
    tick(&clock, 2).await;
    let mut once = job("once", "ok", "");
    once.run_on = Some(Box::new(etl(None, false)));
    let id = a.create(once).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tick(&clock, 6).await;
    let runs: Vec<_> = ran.lock().unwrap().clone();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, "b", "{runs:?}");
    let stored = store.get(&id).await.unwrap().unwrap();
    assert!(stored.is_done, "{stored:?}");
    let records = store.runs(&id, None).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].node.as_deref(), Some("b"));
    for e in [a, b] {
        e.shutdown(Duration::from_secs(1)).await;
    }
}
