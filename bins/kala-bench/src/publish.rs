//! `publish`: publish jobs (type 3) at a rate on the embedded store
//! (redb, every run recorded durably), against this machine's brokers:
//! confirmed publishes per second, lateness (start minus schedule point),
//! and the broker's confirmation latency (each attempt's duration).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};
use kala_engine::{Engine, EngineConfig, Event, SystemClock};
use kala_executor::Executor;
use kala_job::{Job, JobType, Outcome, Publish};
use kala_publish::{BrokerConfig, Brokers};
use kala_store::JobStore;
use kala_store_redb::RedbStore;

use crate::report::{Measure, measure, percentile};

/// The broker URL and destination for `kind`, set up (a JetStream stream
/// or an AMQP queue) so that every publish is accepted.
async fn prepare(kind: &str, tag: &str) -> anyhow::Result<(String, String)> {
    Ok(match kind {
        "nats" => ("nats://127.0.0.1:4222".into(), format!("kala.bench.{tag}")),
        "jetstream" => {
            let js = async_nats::jetstream::new(
                async_nats::connect("127.0.0.1:4222")
                    .await
                    .context("NATS on 127.0.0.1:4222")?,
            );
            js.create_stream(async_nats::jetstream::stream::Config {
                name: format!("KALA_BENCH_{tag}"),
                subjects: vec![format!("kala.bench.{tag}")],
                max_messages: 1_000_000,
                // A bench cut short (timeout, ^C) leaves no stream behind
                // for long.
                max_age: Duration::from_secs(15 * 60),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("JetStream stream: {e}"))?;
            (
                "nats://127.0.0.1:4222?jetstream=true".into(),
                format!("kala.bench.{tag}"),
            )
        }
        "amqp" => {
            let conn = lapin::Connection::connect(
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                lapin::ConnectionProperties::default(),
            )
            .await
            .context("RabbitMQ on 127.0.0.1:5672")?;
            let ch = conn.create_channel().await?;
            let queue = format!("kala-bench-{tag}");
            ch.queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                // A bench cut short (timeout, ^C) leaves no queue filling
                // RabbitMQ's memory behind: it goes 15 minutes after its
                // last use.
                lapin::types::FieldTable::from(std::collections::BTreeMap::from([(
                    "x-expires".into(),
                    lapin::types::AMQPValue::LongUInt(15 * 60 * 1000),
                )])),
            )
            .await?;
            ("amqp://guest:guest@127.0.0.1:5672/%2f".into(), queue)
        }
        "mqtt" => ("mqtt://127.0.0.1:1883".into(), format!("kala/bench/{tag}")),
        other => bail!("--kind {other:?}: use nats, jetstream, amqp or mqtt"),
    })
}

/// Removes what [`prepare`] made.
async fn clean(kind: &str, tag: &str) -> anyhow::Result<()> {
    match kind {
        "jetstream" => {
            let js = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
            js.delete_stream(format!("KALA_BENCH_{tag}"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        "amqp" => {
            let conn = lapin::Connection::connect(
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                lapin::ConnectionProperties::default(),
            )
            .await?;
            conn.create_channel()
                .await?
                .queue_delete(
                    format!("kala-bench-{tag}").as_str().into(),
                    Default::default(),
                )
                .await?;
        }
        _ => {}
    }
    Ok(())
}

pub async fn bench_publish(kind: &str, rate: usize, seconds: f64) -> anyhow::Result<Vec<Measure>> {
    let tag = format!("{:x}", std::process::id());
    let (url, to) = prepare(kind, &tag).await?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn JobStore> = Arc::new(RedbStore::open_dir(dir.path())?);
    let brokers = Arc::new(Brokers::new(
        vec![BrokerConfig {
            name: "bench".into(),
            url,
            ca_file: None,
        }],
        "bench",
    )?);
    let executor = Executor::new()?;
    executor.set_publisher(kala_publish::publisher(brokers.clone()));
    let config = EngineConfig {
        keep_runs: Some(10),
        max_concurrent_runs: 4096,
        ..EngineConfig::default()
    };
    let engine = Engine::start(store, executor, Arc::new(SystemClock), config).await?;
    let mut events = engine.subscribe();
    let start = Timestamp::now() + SignedDuration::from_secs(2 + (rate / 500) as i64);
    let mut ticks = Vec::with_capacity(rate);
    for k in 0..rate {
        let offset = SignedDuration::from_nanos((1_000_000_000 / rate as i64) * k as i64);
        let mut j = Job::new(format!("publish {k}"), "");
        j.job_type = JobType::Publish;
        j.publish = Some(Box::new(Publish {
            broker: "bench".into(),
            to: to.clone(),
            payload: "{\"point\":\"{{.Run.ScheduledAt}}\"}".into(),
            ..Publish::default()
        }));
        j.schedule = format!("R/{}/PT1S", start + offset);
        ticks.push(engine.create(j).await?);
    }
    let measure_from = start + SignedDuration::from_secs(1);
    let measure_to = measure_from + SignedDuration::from_secs_f64(seconds);
    let wait = measure_to
        .duration_since(Timestamp::now())
        .as_secs_f64()
        .max(0.0);
    let until = Instant::now() + Duration::from_secs_f64(wait + 3.0);
    let (mut late, mut confirm) = (Vec::new(), Vec::new());
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut first_error = None;
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Ok(Event::RunStarted {
                at,
                scheduled_at: Some(s),
                ..
            })) if s >= measure_from && s < measure_to => {
                late.push(at.duration_since(s).as_secs_f64() * 1e3);
            }
            Ok(Ok(Event::RunFinished(r)))
                if r.scheduled_at
                    .is_some_and(|s| s >= measure_from && s < measure_to) =>
            {
                if r.outcome == Outcome::Succeeded {
                    ok += 1;
                    confirm.push(r.execution_duration as f64 / 1e6);
                } else {
                    failed += 1;
                    first_error.get_or_insert(r.error.clone());
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                bail!("event stream lagged by {n}; the measurement is incomplete")
            }
            _ => {}
        }
    }
    // The store is a temporary directory: stopping the engine is enough.
    // (Deleting 5,000 jobs one by one while their runs fall behind took
    // minutes.)
    drop(ticks);
    engine.shutdown(Duration::from_secs(5)).await;
    brokers.close().await;
    clean(kind, &tag).await?;
    if let Some(e) = first_error {
        eprintln!("publish: {failed} failed runs; the first: {e:?}");
    }
    let label = format!("{kind}, {rate} jobs each once a second, embedded store");
    Ok(report(&label, seconds, ok, failed, late, confirm))
}

/// The same across three kala-server instances on one PostgreSQL schema,
/// each with the broker: confirmed publishes per second (from the run
/// records), lateness and confirmation latency.
pub async fn bench_publish_cluster(
    server: Option<std::path::PathBuf>,
    kind: &str,
    rate: usize,
    seconds: f64,
) -> anyhow::Result<Vec<Measure>> {
    use sqlx::Connection;
    let bin = crate::server::server_binary(server)?;
    let tag = format!("{:x}", std::process::id());
    let (url, to) = prepare(kind, &tag).await?;
    let pg_url = "postgres://postgres@127.0.0.1:5432/test";
    let ns = format!("kala_publish_{tag}");
    let mut dirs = Vec::new();
    let mut servers = Vec::new();
    for i in 0..3 {
        let dir = tempfile::tempdir()?;
        let args: Vec<String> = [
            "--jobdb",
            "postgres",
            "--jobdb-address",
            pg_url,
            "--jobdb-namespace",
            &ns,
            "--node-name",
            &format!("p{i}"),
            "--max-concurrent-runs",
            "4096",
            "--broker",
            &format!("bench={url}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        servers.push(kala_testkit::ServerProcess::start(&bin, dir.path(), &args)?);
        dirs.push(dir);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let clients: Vec<kala_client::Client> = servers
        .iter()
        .map(|s| kala_client::Client::new(&s.base))
        .collect::<Result<_, _>>()?;
    let start = Timestamp::now() + SignedDuration::from_secs(4 + (rate / 300) as i64);
    let mut ids = Vec::with_capacity(rate);
    for k in 0..rate {
        let offset = SignedDuration::from_nanos((1_000_000_000 / rate as i64) * k as i64);
        let body = serde_json::json!({
            "name": format!("publish {k}"),
            "type": 3,
            "schedule": format!("R/{}/PT1S", start + offset),
            "publish": {"broker": "bench", "to": to, "payload": "{\"point\":\"{{.Run.ScheduledAt}}\"}"},
        });
        ids.push(clients[k % 3].create_json(&body).await?);
    }
    let from = start + SignedDuration::from_secs(1);
    let to_t = from + SignedDuration::from_secs_f64(seconds);
    let wait = to_t.duration_since(Timestamp::now()).as_secs_f64().max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(wait + 3.0)).await;
    for (k, id) in ids.iter().enumerate() {
        clients[k % 3].disable(id).await?;
    }
    let (mut late, mut confirm) = (Vec::new(), Vec::new());
    let (mut ok, mut failed) = (0u64, 0u64);
    for (k, id) in ids.iter().enumerate() {
        for r in clients[k % 3].runs(id, None).await? {
            let Some(p) = r.scheduled_at.filter(|p| *p >= from && *p < to_t) else {
                continue;
            };
            if r.outcome == Outcome::Succeeded {
                ok += 1;
                late.push(r.ran_at.duration_since(p).as_secs_f64() * 1e3);
                confirm.push(r.execution_duration as f64 / 1e6);
            } else {
                failed += 1;
                if failed == 1 {
                    eprintln!(
                        "publish: first run not succeeded: {:?} {:?}",
                        r.outcome, r.error
                    );
                }
            }
        }
    }
    for s in servers {
        s.stop()?;
    }
    let mut pg = sqlx::PgConnection::connect(pg_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {ns} CASCADE"
    )))
    .execute(&mut pg)
    .await?;
    clean(kind, &tag).await?;
    let label = format!("{kind}, {rate} jobs each once a second, 3 instances on PostgreSQL");
    Ok(report(&label, seconds, ok, failed, late, confirm))
}

/// The figures of a publish measurement.
fn report(
    label: &str,
    seconds: f64,
    ok: u64,
    failed: u64,
    mut late: Vec<f64>,
    mut confirm: Vec<f64>,
) -> Vec<Measure> {
    late.sort_by(f64::total_cmp);
    confirm.sort_by(f64::total_cmp);
    vec![
        measure(
            format!("confirmed publishes per second, every run recorded ({label})"),
            "msg/s",
            vec![ok as f64 / seconds],
        ),
        measure(
            format!("failed publishes ({label})"),
            "runs",
            vec![failed as f64],
        ),
        measure(
            format!("lateness p50 ({label})"),
            "ms",
            vec![percentile(&late, 0.5)],
        ),
        measure(
            format!("lateness p99 ({label})"),
            "ms",
            vec![percentile(&late, 0.99)],
        ),
        measure(
            format!("broker confirmation p50 ({label})"),
            "ms",
            vec![percentile(&confirm, 0.5)],
        ),
        measure(
            format!("broker confirmation p99 ({label})"),
            "ms",
            vec![percentile(&confirm, 0.99)],
        ),
    ]
}
