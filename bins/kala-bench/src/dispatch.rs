//! `dispatch`: the latency `run_on` adds. Three kala-server instances on
//! one database (PostgreSQL or Redis): two schedule (`role=web`), the
//! third is a `--role worker` tagged `role=etl`. Half the jobs run where
//! their partition is held (no `run_on`), half carry `run_on {role: etl}`
//! and are dispatched to the worker through the run journal. Lateness is
//! each run record's start minus its schedule point, per kind.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};

use crate::report::{Measure, measure, percentile};
use crate::server::server_binary;

pub struct DispatchArgs {
    pub server: Option<PathBuf>,
    pub backend: String,
    pub jobs: usize,
    pub seconds: f64,
}

pub async fn bench_dispatch(a: &DispatchArgs) -> anyhow::Result<Vec<Measure>> {
    let bin = server_binary(a.server.clone())?;
    let ns = format!("kala_dispatch_{:x}", std::process::id());
    let backend: Vec<String> = match a.backend.as_str() {
        "postgres" => vec![
            "--jobdb".into(),
            "postgres".into(),
            "--jobdb-address".into(),
            "postgres://postgres@127.0.0.1:5432/test".into(),
            "--jobdb-namespace".into(),
            ns.clone(),
        ],
        "redis" => vec![
            "--jobdb".into(),
            "redis".into(),
            "--jobdb-address".into(),
            "127.0.0.1:6379".into(),
            "--jobdb-namespace".into(),
            ns.clone(),
        ],
        other => anyhow::bail!("--backend {other:?}: postgres or redis"),
    };
    let mut dirs = Vec::new();
    let mut servers = Vec::new();
    for (i, (tag, worker)) in [("web", false), ("web", false), ("etl", true)]
        .iter()
        .enumerate()
    {
        let dir = tempfile::tempdir()?;
        let mut args = backend.clone();
        args.extend([
            "--node-name".into(),
            format!("d{i}"),
            "--tag".into(),
            format!("role={tag}"),
            "--max-concurrent-runs".into(),
            "1024".into(),
        ]);
        if *worker {
            args.extend(["--role".into(), "worker".into()]);
        }
        servers.push(kala_testkit::ServerProcess::start(&bin, dir.path(), &args)?);
        dirs.push(dir);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let kala = kala_client::Client::new(&servers[0].base)?;
    let start = Timestamp::now() + SignedDuration::from_secs(3 + (a.jobs / 200) as i64);
    let mut ids = Vec::new();
    for k in 0..a.jobs {
        let dispatched = k % 2 == 1;
        let offset = SignedDuration::from_nanos((1_000_000_000 / a.jobs as i64) * k as i64);
        let mut body = serde_json::json!({
            "name": format!("dispatch bench {k}"),
            "command": "true",
            "schedule": format!("R/{}/PT1S", start + offset),
        });
        if dispatched {
            body["run_on"] = serde_json::json!({"tags": {"role": "etl"}});
        }
        ids.push((dispatched, kala.create_json(&body).await?));
    }
    let settle = start
        .duration_since(Timestamp::now())
        .as_secs_f64()
        .max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(settle + 1.0 + a.seconds)).await;
    for (_, id) in &ids {
        kala.disable(id).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let from = start + SignedDuration::from_secs(1);
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let mut misplaced = 0u64;
    for (dispatched, id) in &ids {
        for r in kala.runs(id, None).await.context("runs")? {
            let Some(p) = r.scheduled_at.filter(|p| *p >= from) else {
                continue;
            };
            let late = r.ran_at.duration_since(p).as_secs_f64() * 1e3;
            if *dispatched {
                if r.node.as_deref() != Some("d2") {
                    misplaced += 1;
                }
                remote.push(late);
            } else {
                local.push(late);
            }
        }
    }
    for s in servers {
        s.stop()?;
    }
    if a.backend == "postgres" {
        use sqlx::Connection;
        let mut pg = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test").await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {ns} CASCADE"
        )))
        .execute(&mut pg)
        .await?;
    }
    local.sort_by(f64::total_cmp);
    remote.sort_by(f64::total_cmp);
    let label = format!(
        "{}, {} jobs each once a second, 3 instances",
        a.backend, a.jobs
    );
    Ok(vec![
        measure(
            format!("run start after its point p50, held here ({label})"),
            "ms",
            vec![percentile(&local, 0.5)],
        ),
        measure(
            format!("run start after its point p99, held here ({label})"),
            "ms",
            vec![percentile(&local, 0.99)],
        ),
        measure(
            format!("run start after its point p50, dispatched to a worker ({label})"),
            "ms",
            vec![percentile(&remote, 0.5)],
        ),
        measure(
            format!("run start after its point p99, dispatched to a worker ({label})"),
            "ms",
            vec![percentile(&remote, 0.99)],
        ),
        measure(
            format!("dispatched runs measured ({label})"),
            "runs",
            vec![remote.len() as f64],
        ),
        measure(
            format!("dispatched runs not on the worker ({label})"),
            "runs",
            vec![misplaced as f64],
        ),
    ])
}
