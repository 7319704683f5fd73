//! Every scheduling rule, driven by a fake clock the test advances. Waiting
//! happens only for the engine's async work to report back (events), with
//! a real-time timeout as a safety net; no schedule is timed by sleeping.

mod audit;
mod cluster;
mod journal;
mod notify;
mod pausing;
mod placement;
mod runs;
mod schedule;
mod start_check;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kala_executor::Executor;
use kala_job::{Job, JobType, Outcome, RunRecord, Trigger};
use kala_store::{Batch, JobStore, MemoryStore};
use tokio::sync::{Notify, broadcast};

use crate::{Clock, Engine, EngineConfig, EngineError, Event, FakeClock};

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
    harness_with(store, now, EngineConfig::default()).await
}

async fn harness_with(store: Arc<dyn JobStore>, now: Timestamp, config: EngineConfig) -> H {
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
    // Kala's immediate retries: the rules below are about counts and
    // order; the engine's minimum delay is retry.rs's to test.
    let config = EngineConfig {
        min_retry_delay: SignedDuration::ZERO,
        ..config
    };
    let engine = Engine::start(store, executor, clock.clone(), config)
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
