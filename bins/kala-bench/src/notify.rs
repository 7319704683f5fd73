//! `notify`: notifications to a webhook receiver in this process, through
//! the engine's outbox on the durable embedded store and the real
//! notifier (HTTP over loopback): how fast a full outbox drains (as after
//! a restart), and the delivery latency (from the notice's creation, with
//! its run's record, to its receipt) at a steady rate of failing runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use kala_engine::kala_notify::{Notifier, NotifierConfig};
use kala_engine::{Engine, EngineConfig, NotifySettings, SystemClock};
use kala_executor::Executor;
use kala_job::{Job, JobType, NotifyOn, NotifyTarget};
use kala_store::{Batch, JobStore, Notice, NoticeState};
use kala_store_redb::RedbStore;

use crate::report::{Measure, measure, percentile};

type Received = Arc<Mutex<Vec<(Timestamp, Timestamp)>>>;

async fn receive(State(got): State<Received>, body: axum::body::Bytes) -> StatusCode {
    let now = Timestamp::now();
    let created = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["created_at"].as_str().and_then(|s| s.parse().ok()));
    if let (Some(c), Ok(mut g)) = (created, got.lock()) {
        g.push((c, now));
    }
    StatusCode::NO_CONTENT
}

fn receiver_config(addr: std::net::SocketAddr, concurrency: usize) -> anyhow::Result<EngineConfig> {
    let _ = addr;
    Ok(EngineConfig {
        keep_runs: Some(10),
        notify: NotifySettings {
            deliver: Some(Notifier::shared(NotifierConfig {
                secret: Some("bench".into()),
                ..NotifierConfig::default()
            })?),
            concurrency,
            ..NotifySettings::default()
        },
        ..EngineConfig::default()
    })
}

async fn start_receiver() -> anyhow::Result<(Received, std::net::SocketAddr)> {
    let got: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((got, addr))
}

async fn wait_for(got: &Received, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 50);
    loop {
        let have = got.lock().map(|g| g.len()).unwrap_or(0);
        if have >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{have} of {n} notifications arrived before the deadline");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `drain`: `notices` pending notices already in the outbox (as after a
/// restart) are delivered; `rate`: failing runs per second for
/// `seconds`, each notified, with the delivery latency measured.
pub async fn bench_notify(
    notices: usize,
    rate: usize,
    seconds: f64,
    concurrency: usize,
) -> anyhow::Result<Vec<Measure>> {
    let mut out = Vec::new();
    // 1. Drain: the outbox holds `notices` due notifications at start.
    {
        let (got, addr) = start_receiver().await?;
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn JobStore> = Arc::new(RedbStore::open_dir(dir.path())?);
        let target = NotifyTarget::webhook(format!("http://{addr}/hook"), &[NotifyOn::Failure]);
        let now = Timestamp::now();
        let job = Job::new("failing", "false");
        let run = kala_job::RunRecord {
            job_id: job.id.clone(),
            ran_at: now,
            scheduled_at: None,
            trigger: kala_job::Trigger::Manual,
            outcome: kala_job::Outcome::Failed,
            number_of_retries: 0,
            execution_duration: 1_000_000,
            exit_code: Some(1),
            error: Some("exit status 1".into()),
            output: "some output\n".into(),
            run_id: None,
            node: None,
        };
        let all: Vec<Notice> = (0..notices)
            .map(|k| Notice {
                id: format!("n{k:08}"),
                job_id: job.id.clone(),
                job_name: job.name.clone(),
                event: NotifyOn::Failure,
                target: target.clone(),
                run: run.clone(),
                node: "bench".into(),
                created_at: now,
                state: NoticeState::Pending,
                attempts: 0,
                next_attempt_at: now,
                last_error: None,
                done_at: None,
            })
            .collect();
        for chunk in all.chunks(1000) {
            store
                .apply(Batch {
                    notices: chunk.to_vec(),
                    ..Batch::default()
                })
                .await?;
        }
        let started = Instant::now();
        let engine = Engine::start(
            store,
            Executor::new()?,
            Arc::new(SystemClock),
            receiver_config(addr, concurrency)?,
        )
        .await?;
        wait_for(&got, notices).await?;
        let took = started.elapsed().as_secs_f64();
        // Every delivery is recorded before the engine stops.
        tokio::time::sleep(Duration::from_millis(500)).await;
        engine.shutdown(Duration::from_secs(5)).await;
        out.push(measure(
            format!("outbox drain ({notices} due at start, {concurrency} at once)"),
            "1/s",
            vec![notices as f64 / took],
        ));
    }
    // 2. Steady: `rate` failing runs a second, spread over each second.
    {
        let (got, addr) = start_receiver().await?;
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn JobStore> = Arc::new(RedbStore::open_dir(dir.path())?);
        let executor = Executor::new()?;
        executor.register("fail", |_job: Job| async {
            Err("failed on purpose".to_string())
        });
        let engine = Engine::start(
            store,
            executor,
            Arc::new(SystemClock),
            receiver_config(addr, concurrency)?,
        )
        .await?;
        let target = NotifyTarget::webhook(format!("http://{addr}/hook"), &[NotifyOn::Failure]);
        let start = Timestamp::now() + SignedDuration::from_secs(2 + (rate / 500) as i64);
        for k in 0..rate {
            let offset = SignedDuration::from_nanos((1_000_000_000 / rate as i64) * k as i64);
            let mut j = Job::new(format!("failing {k}"), "fail");
            j.job_type = JobType::InProcess;
            j.schedule = format!("R/{}/PT1S", start + offset);
            j.notify = vec![target.clone()];
            engine.create(j).await?;
        }
        if Timestamp::now() >= start {
            bail!("creating {rate} jobs took past their start; use a lower --rate");
        }
        let from = start + SignedDuration::from_secs(1);
        let until = from + SignedDuration::from_secs_f64(seconds);
        let wait = until
            .duration_since(Timestamp::now())
            .as_secs_f64()
            .max(0.0);
        tokio::time::sleep(Duration::from_secs_f64(wait + 2.0)).await;
        engine.shutdown(Duration::from_secs(5)).await;
        let got = got.lock().map(|g| g.clone()).unwrap_or_default();
        let mut latency: Vec<f64> = got
            .iter()
            .filter(|(c, _)| *c >= from && *c < until)
            .map(|(c, r)| r.duration_since(*c).as_secs_f64() * 1e3)
            .collect();
        latency.sort_by(f64::total_cmp);
        let label = format!("{rate} failures/s, {concurrency} at once");
        eprintln!("notify: {} notifications measured", latency.len());
        out.extend([
            measure(
                format!("delivery latency p50 ({label})"),
                "ms",
                vec![percentile(&latency, 0.5)],
            ),
            measure(
                format!("delivery latency p99 ({label})"),
                "ms",
                vec![percentile(&latency, 0.99)],
            ),
            measure(
                format!("delivery latency max ({label})"),
                "ms",
                vec![latency.last().copied().unwrap_or(f64::NAN)],
            ),
            measure(
                format!("notifications delivered/s ({label})"),
                "1/s",
                vec![latency.len() as f64 / seconds],
            ),
        ]);
    }
    Ok(out)
}
