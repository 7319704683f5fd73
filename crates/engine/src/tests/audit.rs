//! The audit log through the engine's API for embedders: each change
//! by an actor the caller names is one entry in the store, in the batch
//! of the change; the methods without an actor are audited as `engine`;
//! a change the store refuses leaves no entry; with the log off, none.

use super::*;
use crate::{Actor, AuditSettings};

fn alice() -> Actor {
    Actor {
        name: "alice".into(),
        source: "billing-service".into(),
        request_id: "r-1".into(),
    }
}

#[tokio::test]
async fn each_change_is_one_entry_by_its_actor() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let h = harness_on(store.clone(), t0()).await;
    let id = h
        .engine
        .create_as(job("a", "ok", &iso("R", 3600, "PT1H")), &alice())
        .await
        .unwrap();
    h.engine.disable_as(&id, &alice()).await.unwrap();
    h.engine.enable(&id).await.unwrap();
    h.engine.run_now_as(&id, &alice()).await.unwrap();
    h.engine.delete_as(&id, &alice()).await.unwrap();
    let log = store.audit(None, 100).await.unwrap();
    let seen: Vec<(&str, &str)> = log
        .iter()
        .rev()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("create", "alice"),
            ("disable", "alice"),
            ("enable", "engine"),
            ("start", "alice"),
            ("delete", "alice"),
        ]
    );
    let created = log.last().unwrap();
    assert_eq!(created.job_id, id);
    assert_eq!(created.source, "billing-service");
    assert_eq!(created.request_id, "r-1");
    assert_eq!(created.at, t0(), "the entry's time is the engine's clock");
    assert_eq!(created.diff.to_value()["name"]["after"], "a");
    assert_eq!(h.engine.audit_log(None, 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_refused_change_leaves_no_entry_and_the_log_can_be_off() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let h = harness_on(store.clone(), t0()).await;
    let mut bad = job("bad", "ok", "R/not-a-time/PT1H");
    bad.schedule = "R/not-a-time/PT1H".into();
    assert!(h.engine.create_as(bad, &alice()).await.is_err());
    assert!(h.engine.delete_as("nope", &alice()).await.is_err());
    assert!(store.audit(None, 10).await.unwrap().is_empty());

    let quiet: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let config = EngineConfig {
        audit: AuditSettings {
            enabled: false,
            ..AuditSettings::default()
        },
        ..EngineConfig::default()
    };
    let h = harness_with(quiet.clone(), t0(), config).await;
    let id = h
        .engine
        .create_as(job("a", "ok", &iso("R", 3600, "PT1H")), &alice())
        .await
        .unwrap();
    h.engine.delete_all_as(&alice()).await.unwrap();
    assert!(quiet.audit(None, 10).await.unwrap().is_empty(), "{id}");
    // With the log off, no diff is computed either.
    let entry = h.engine.inner.audit_entry(&alice(), "create", None, || {
        panic!("a diff computed with the log off")
    });
    assert!(entry.is_none());
}

#[tokio::test]
async fn entries_older_than_their_retention_are_pruned_at_start() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let h = harness_on(store.clone(), t0()).await;
    h.engine
        .create_as(job("a", "ok", &iso("R", 3600, "PT1H")), &alice())
        .await
        .unwrap();
    h.engine.shutdown(Duration::from_secs(1)).await;
    assert_eq!(store.audit(None, 10).await.unwrap().len(), 1);
    // Two days later, with one day of retention.
    let config = EngineConfig {
        audit: AuditSettings {
            keep: Some(SignedDuration::from_hours(24)),
            ..AuditSettings::default()
        },
        ..EngineConfig::default()
    };
    let h = harness_with(store.clone(), at(2 * 86_400), config).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !store.audit(None, 10).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old entry was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(h);
}

/// What the audit log costs a create on the durable embedded store, in
/// this process (no HTTP): CPU per create and creates/s with the log on
/// and off, 16 creates at a time (`KALA_AUDIT_COST_AT_ONCE`), alternated. A measurement, not a
/// check: `cargo test --release -p kala-engine --lib
/// audit_cost_on_the_embedded_store -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn audit_cost_on_the_embedded_store() {
    fn cpu() -> Duration {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }
    let n = 40_000usize;
    let at_once: usize = std::env::var("KALA_AUDIT_COST_AT_ONCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let n = if at_once < 4 { n / 8 } else { n };
    let modes: Vec<bool> = match std::env::var("KALA_AUDIT_COST").as_deref() {
        Ok("on") => vec![true],
        Ok("off") => vec![false],
        _ => vec![true, false],
    };
    for round in 0..3 {
        for &on in &modes {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn JobStore> =
                Arc::new(kala_store_redb::RedbStore::open_dir(dir.path()).unwrap());
            let config = EngineConfig {
                audit: AuditSettings {
                    enabled: on,
                    ..AuditSettings::default()
                },
                ..EngineConfig::default()
            };
            let engine = Engine::start(
                store,
                Executor::new().unwrap(),
                Arc::new(crate::clock::SystemClock),
                config,
            )
            .await
            .unwrap();
            let (t, c) = (std::time::Instant::now(), cpu());
            let tasks: Vec<_> = (0..at_once)
                .map(|k| {
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        for i in 0..n / at_once {
                            let mut j = Job::new(format!("bench {k}-{i}"), "true");
                            j.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
                            engine.create(j).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let (wall, used) = (t.elapsed(), cpu() - c);
            eprintln!(
                "round {round} audit {}: {:.0} creates/s, {:.1} µs CPU per create",
                if on { "on " } else { "off" },
                n as f64 / wall.as_secs_f64(),
                used.as_secs_f64() * 1e6 / n as f64
            );
            engine.shutdown(Duration::from_secs(5)).await;
        }
    }
}
