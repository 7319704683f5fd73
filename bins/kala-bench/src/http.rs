//! `http`: POST create and GET job requests/s and latency at C
//! connections, against a kala-server it starts or any `--url`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use jiff::{SignedDuration, Timestamp};

use crate::report::{Measure, measure, percentile};
use crate::server::{cpu_seconds, server_binary, start_server};

pub async fn bench_http(
    url: Option<String>,
    server: Option<PathBuf>,
    server_args: &[String],
    conns: &[usize],
    seconds: f64,
    repeat: usize,
) -> anyhow::Result<Vec<Measure>> {
    let _server;
    let mut pid: Option<String> = None;
    let owned = url.is_none();
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let dir = tempfile::tempdir()?;
            let s = start_server(&server_binary(server)?, dir.path(), server_args)?;
            let base = s.base.clone();
            pid = Some(s.pid().to_string());
            _server = (s, dir);
            base
        }
    };
    // Creates and the clean-up go through kala-client; GETs are timed on
    // the raw connection, so that the client's decoding of each job (into
    // the job model) does not take CPU from the server it measures on
    // this 2-core machine.
    let kala = kala_client::Client::new(&base)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut out = Vec::new();
    let mut some_ids: Vec<String> = Vec::new();
    for &c in conns {
        let mut rps = Vec::new();
        let (mut p50, mut p99, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeat {
            let before = server_cpu(pid.as_deref());
            let (n, lat, ids) = load(&kala, &base, c, seconds, |kala, _, k| {
                let mut job = kala_client::Job::new(format!("bench {k}"), "true");
                job.schedule = format!(
                    "R/{}/PT1H",
                    Timestamp::now() + SignedDuration::from_hours(24 * 365)
                );
                let kala = kala.clone();
                async move { kala.create(&job).await.ok() }
            })
            .await;
            rps.push(n as f64 / seconds);
            p50.push(percentile(&lat, 0.5) * 1e3);
            p99.push(percentile(&lat, 0.99) * 1e3);
            cpu.extend(per_request(before, server_cpu(pid.as_deref()), n));
            if some_ids.len() < 1000 {
                some_ids.extend(ids.into_iter().take(1000));
            }
        }
        eprintln!("http: create at {c} connections done");
        out.push(measure(format!("POST create, {c} conn"), "req/s", rps));
        out.push(measure(format!("POST create p50, {c} conn"), "ms", p50));
        out.push(measure(format!("POST create p99, {c} conn"), "ms", p99));
        if !cpu.is_empty() {
            out.push(measure(
                format!("server CPU per create, {c} conn"),
                "us",
                cpu,
            ));
        }
    }
    if some_ids.is_empty() {
        bail!("no job was created; is {base} a Kala server?");
    }
    let ids = Arc::new(some_ids);
    for &c in conns {
        let mut rps = Vec::new();
        let (mut p50, mut p99, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeat {
            let before = server_cpu(pid.as_deref());
            let (n, lat) = get_jobs(&client, &base, ids.clone(), c, seconds).await;
            rps.push(n as f64 / seconds);
            p50.push(percentile(&lat, 0.5) * 1e3);
            p99.push(percentile(&lat, 0.99) * 1e3);
            cpu.extend(per_request(before, server_cpu(pid.as_deref()), n));
        }
        eprintln!("http: get at {c} connections done");
        out.push(measure(format!("GET job, {c} conn"), "req/s", rps));
        out.push(measure(format!("GET job p50, {c} conn"), "ms", p50));
        out.push(measure(format!("GET job p99, {c} conn"), "ms", p99));
        if !cpu.is_empty() {
            out.push(measure(format!("server CPU per GET, {c} conn"), "us", cpu));
        }
    }
    // The full list (Kala's `GET /api/v1/job/`, stats included), timed to
    // its last byte.
    let mut took = Vec::new();
    let (mut count, mut size) = (0, 0);
    for _ in 0..repeat {
        let t = Instant::now();
        let r = client.get(format!("{base}/api/v1/job/")).send().await?;
        if !r.status().is_success() {
            bail!("GET /api/v1/job/: HTTP {}", r.status());
        }
        let body = r.bytes().await?;
        took.push(t.elapsed().as_secs_f64());
        size = body.len();
        count = serde_json::from_slice::<serde_json::Value>(&body)?["jobs"]
            .as_object()
            .map_or(0, |m| m.len());
    }
    out.push(measure(
        format!("GET all {count} jobs ({:.1} MB)", size as f64 / 1e6),
        "s",
        took,
    ));
    if owned && !server_args.is_empty() {
        // Leave the remote store as we found it.
        kala.delete_all()
            .await
            .map_err(|e| anyhow::anyhow!("cleaning up: DELETE /api/v1/job/all/: {e}"))?;
    }
    Ok(out)
}

/// The started server's CPU seconds so far (`None` for a server given by
/// `--url`: its process is not known).
fn server_cpu(pid: Option<&str>) -> Option<f64> {
    pid.and_then(|p| cpu_seconds(p).ok())
}

/// Server CPU microseconds per request between two readings: what the
/// server spends on one request, whatever the client on the same cores
/// costs (req/s on this 2-core machine is shared with the load generator).
fn per_request(before: Option<f64>, after: Option<f64>, n: usize) -> Option<f64> {
    Some((after? - before?) / n.max(1) as f64 * 1e6)
}

/// GETs of the jobs `ids` (in turn) at `c` connections for `seconds`:
/// the successes and their sorted latencies (s).
pub(crate) async fn get_jobs(
    client: &reqwest::Client,
    base: &str,
    ids: Arc<Vec<String>>,
    c: usize,
    seconds: f64,
) -> (usize, Vec<f64>) {
    let (n, lat, _) = load(client, base, c, seconds, move |client, base, k| {
        let id = &ids[k.wrapping_mul(7919) % ids.len()];
        let req = client.get(format!("{base}/api/v1/job/{id}/"));
        async move {
            let r = req.send().await.ok()?;
            let ok = r.status().as_u16() == 200;
            r.bytes().await.ok()?;
            ok.then(String::new)
        }
    })
    .await;
    (n, lat)
}

/// Runs `c` loops of requests for `seconds`; returns successes, sorted
/// latencies (s) and what the successes returned.
pub(crate) async fn load<C, F, Fut>(
    client: &C,
    base: &str,
    c: usize,
    seconds: f64,
    make: F,
) -> (usize, Vec<f64>, Vec<String>)
where
    C: Clone + Send + Sync + 'static,
    F: Fn(&C, &str, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Option<String>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (client, base, make, counter) = (
            client.clone(),
            base.to_string(),
            make.clone(),
            counter.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut got = Vec::new();
            while Instant::now() < deadline {
                let k = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let t = Instant::now();
                if let Some(v) = make(&client, &base, k).await {
                    lat.push(t.elapsed().as_secs_f64());
                    if got.len() < 100 {
                        got.push(v);
                    }
                }
            }
            (lat, got)
        }));
    }
    let mut lat = Vec::new();
    let mut got = Vec::new();
    for t in tasks {
        if let Ok((l, g)) = t.await {
            lat.extend(l);
            got.extend(g);
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat.len(), lat, got)
}
