//! The deliverer with a fake clock: retries at the backoff's times, a
//! drop after the last attempt, retry events, and one delivery per notice
//! in a cluster. (Real webhooks and SMTP: tests/notify.rs.)

use kala_job::{NotifyOn, NotifyTarget};
use kala_notify::{BoxFut, Deliver, DeliveryError};
use kala_store::{Notice, NoticeState};

use super::*;
use crate::NotifySettings;

/// Records each attempt (notice id, event, the time it was due); fails
/// the first `fail` of them.
struct Recorder {
    calls: Mutex<Vec<(String, NotifyOn, Timestamp)>>,
    fail: u32,
}

impl Recorder {
    fn new(fail: u32) -> Arc<Recorder> {
        Arc::new(Recorder {
            calls: Mutex::default(),
            fail,
        })
    }

    fn calls(&self) -> Vec<(String, NotifyOn, Timestamp)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Deliver for Recorder {
    fn deliver<'a>(&'a self, n: &'a Notice) -> BoxFut<'a, Result<(), DeliveryError>> {
        let mut calls = self.calls.lock().unwrap();
        calls.push((n.id.clone(), n.event, n.next_attempt_at));
        let failed = calls.len() as u32 <= self.fail;
        Box::pin(async move {
            if failed {
                Err(DeliveryError::retry("HTTP 503"))
            } else {
                Ok(())
            }
        })
    }

    fn summarize<'a>(&'a self, _: &'a [Notice]) -> BoxFut<'a, Result<(), DeliveryError>> {
        Box::pin(async { Ok(()) })
    }

    fn can_email(&self) -> bool {
        true
    }
}

fn settings(deliver: Arc<Recorder>, max_attempts: u32) -> NotifySettings {
    NotifySettings {
        deliver: Some(deliver),
        max_attempts,
        ..NotifySettings::default()
    }
}

async fn wait_calls(r: &Recorder, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.calls().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} attempts, expected {n}",
            r.calls().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn notifying(mut j: Job, on: &[NotifyOn]) -> Job {
    j.notify = vec![NotifyTarget::webhook("http://127.0.0.1:9/hook", on)];
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_back_off_and_the_last_attempt_drops() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let rec = Recorder::new(u32::MAX);
    let config = EngineConfig {
        notify: settings(rec.clone(), 3),
        ..EngineConfig::default()
    };
    let mut h = harness_with(store.clone(), t0(), config).await;
    let j = notifying(
        job("nightly", "fail", &iso("R1", 10, "PT1M")),
        &[NotifyOn::Failure],
    );
    let id = h.engine.create(j).await.unwrap();
    h.advance(10).await;
    assert_eq!(h.finished().await.outcome, Outcome::Failed);
    wait_calls(&rec, 1).await;
    h.advance(1).await;
    wait_calls(&rec, 2).await;
    h.advance(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.calls().len(), 2, "the third attempt waits 2 s, not 1");
    h.advance(1).await;
    wait_calls(&rec, 3).await;
    let times: Vec<Timestamp> = rec.calls().iter().map(|c| c.2).collect();
    assert_eq!(
        times,
        [at(10), at(11), at(13)],
        "due 1 s, then 2 s after a failure"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let n = loop {
        let n = store.notices(&id).await.unwrap();
        if n.first().is_some_and(|n| n.state == NoticeState::Dropped) {
            break n;
        }
        assert!(std::time::Instant::now() < deadline, "not dropped: {n:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((n.len(), n[0].attempts), (1, 3));
    assert_eq!(n[0].last_error.as_deref(), Some("HTTP 503"));
    let m = h.engine.metrics().snapshot();
    assert_eq!(
        (m.notifications_dropped, m.notification_attempts_failed),
        (1, 2)
    );
    h.advance(600).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = rec.calls().iter().filter(|c| c.0 == n[0].id).count();
    assert_eq!(
        again,
        3,
        "a dropped notice is not sent again: {:?}",
        rec.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attempt_notifies_retry_and_success() {
    let rec = Recorder::new(0);
    let config = EngineConfig {
        notify: settings(rec.clone(), 3),
        ..EngineConfig::default()
    };
    let mut h = harness_with(Arc::new(MemoryStore::new()), t0(), config).await;
    let mut j = notifying(
        job("flaky", "flaky", &iso("R1", 5, "PT1M")),
        &[NotifyOn::Retry, NotifyOn::Success],
    );
    j.retries = 2;
    h.engine.create(j).await.unwrap();
    h.advance(5).await;
    assert_eq!(h.finished().await.outcome, Outcome::Succeeded);
    wait_calls(&rec, 3).await;
    let events: Vec<NotifyOn> = rec.calls().iter().map(|c| c.1).collect();
    let count = |ev| events.iter().filter(|e| **e == ev).count();
    assert_eq!(
        (count(NotifyOn::Retry), count(NotifyOn::Success)),
        (2, 1),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_one_instance_delivers_each_notice() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let mut engines = Vec::new();
    let mut recorders = Vec::new();
    for node in ["a", "b"] {
        let rec = Recorder::new(0);
        let executor = Executor::new().unwrap();
        executor.register("fail", |_job: Job| async { Err("it broke".to_string()) });
        let config = EngineConfig {
            node_id: node.into(),
            notify: settings(rec.clone(), 3),
            ..EngineConfig::default()
        };
        engines.push(
            Engine::start(store.clone(), executor, clock.clone(), config)
                .await
                .unwrap(),
        );
        recorders.push(rec);
    }
    let mut ids = Vec::new();
    for k in 0..8 {
        let j = notifying(
            job(&format!("j{k}"), "fail", &iso("R1", 8, "PT1M")),
            &[NotifyOn::Failure],
        );
        ids.push(engines[k % 2].create(j).await.unwrap());
    }
    // Both instances learn of every job (the change follower).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..20 {
        clock.advance(SignedDuration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut delivered = 0;
    for id in &ids {
        let n = store.notices(id).await.unwrap();
        let runs = store.runs(id, None).await.unwrap();
        assert_eq!(n.len(), 1, "one notice per failed run: {n:?} {runs:?}");
        if n[0].state == NoticeState::Delivered {
            delivered += 1;
        }
    }
    assert_eq!(delivered, ids.len(), "every notice delivered");
    let mut sent: Vec<String> = recorders
        .iter()
        .flat_map(|r| r.calls().into_iter().map(|c| c.0))
        .collect();
    let total = sent.len();
    sent.sort();
    sent.dedup();
    assert_eq!(total, sent.len(), "no notice sent by both instances");
    assert_eq!(total, ids.len());
    assert!(
        recorders.iter().all(|r| !r.calls().is_empty()),
        "both instances deliver (each its partitions' notices)"
    );
}
