//! `compare`: the same measurements against two (or more) Kala-compatible
//! servers at the same number of stored jobs, for a side-by-side table
//! anyone can reproduce: each is first filled to `--jobs` (far-future
//! jobs created over HTTP, timed), then GET one job at C connections,
//! then the full list.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::http::get_jobs;
use crate::report::{Measure, measure, percentile};
use crate::restart::fill_http;

/// The ids of every job `base` lists, and the time the list took.
async fn list(client: &reqwest::Client, base: &str) -> anyhow::Result<(Vec<String>, f64, usize)> {
    let t = Instant::now();
    let r = client
        .get(format!("{base}/api/v1/job/"))
        .send()
        .await
        .with_context(|| format!("GET {base}/api/v1/job/"))?;
    if !r.status().is_success() {
        bail!("GET {base}/api/v1/job/: HTTP {}", r.status());
    }
    let body = r.bytes().await?;
    let took = t.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("{base}: the job list is not JSON"))?;
    let ids = v["jobs"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    Ok((ids, took, body.len()))
}

/// Creates jobs until `base` holds `n`; returns creates per second.
async fn fill(base: &str, have: usize, n: usize) -> anyhow::Result<Option<f64>> {
    if have >= n {
        return Ok(None);
    }
    let t = Instant::now();
    fill_http(base, have, n).await?;
    Ok(Some((n - have) as f64 / t.elapsed().as_secs_f64()))
}

pub async fn bench_compare(
    urls: &[String],
    jobs: usize,
    connections: usize,
    seconds: f64,
    repeat: usize,
) -> anyhow::Result<Vec<Measure>> {
    if urls.len() < 2 {
        bail!("give two servers: --url A --url B");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut out = Vec::new();
    for (k, url) in urls.iter().enumerate() {
        let base = url.trim_end_matches('/').to_string();
        let label = char::from(b'A' + (k as u8).min(25));
        eprintln!("compare: {label} = {base}");
        let (ids, _, _) = list(&client, &base).await?;
        if let Some(rate) = fill(&base, ids.len(), jobs).await? {
            out.push(measure(
                format!("[{label}] POST create while filling to {jobs}, 64 conn"),
                "req/s",
                vec![rate],
            ));
        }
        let (ids, _, _) = list(&client, &base).await?;
        if ids.len() < jobs {
            bail!("{base} lists {} jobs after the fill, not {jobs}", ids.len());
        }
        let ids = Arc::new(ids);
        let (mut rps, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeat {
            let (n, lat) = get_jobs(&client, &base, ids.clone(), connections, seconds).await;
            rps.push(n as f64 / seconds);
            p50.push(percentile(&lat, 0.5) * 1e3);
            p99.push(percentile(&lat, 0.99) * 1e3);
        }
        out.push(measure(
            format!(
                "[{label}] GET job at {} jobs, {connections} conn",
                ids.len()
            ),
            "req/s",
            rps,
        ));
        out.push(measure(format!("[{label}] GET job p50"), "ms", p50));
        out.push(measure(format!("[{label}] GET job p99"), "ms", p99));
        let mut took = Vec::new();
        let mut size = 0;
        for _ in 0..repeat {
            let (_, t, s) = list(&client, &base).await?;
            took.push(t);
            size = s;
        }
        out.push(measure(
            format!(
                "[{label}] GET all {} jobs ({:.1} MB)",
                ids.len(),
                size as f64 / 1e6
            ),
            "s",
            took,
        ));
    }
    Ok(out)
}
