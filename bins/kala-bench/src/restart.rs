//! `restart`: time from process start until N stored jobs are loaded
//! and scheduled, and RSS per stored job.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use jiff::{SignedDuration, Timestamp};
use kala_store::JobStore;
use kala_store_redb::RedbStore;

use crate::report::{Measure, measure};
use crate::server::{server_binary, start_server, stop};
use crate::store::fill;

pub async fn bench_restart(
    jobs: &[usize],
    server: Option<PathBuf>,
    server_args: &[String],
    keep_dir: Option<PathBuf>,
    (over_http, no_list): (bool, bool),
    repeat: usize,
) -> anyhow::Result<Vec<Measure>> {
    let bin = server_binary(server)?;
    if keep_dir.is_some() && (jobs.len() != 1 || !server_args.is_empty()) {
        bail!("--dir takes one --jobs value and the embedded store");
    }
    if over_http && (keep_dir.is_some() || !server_args.is_empty()) {
        bail!("--over-http fills a fresh embedded store: no --dir or --server-arg");
    }
    let mut out = Vec::new();
    let base_rss = {
        let dir = tempfile::tempdir()?;
        let server = start_server(&bin, dir.path(), server_args)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.rss_kib()?
    };
    for &n in jobs {
        let temp = tempfile::tempdir()?;
        let dir = keep_dir
            .clone()
            .unwrap_or_else(|| temp.path().to_path_buf());
        let mut created_rss = Vec::new();
        if over_http {
            let server = start_server(&bin, &dir, server_args)?;
            fill_http(&server.base, 0, n).await?;
            let rss = server.rss_kib()?;
            created_rss.push((rss.saturating_sub(base_rss) as f64 * 1024.0) / n as f64);
            stop(server)?;
        } else if server_args.is_empty() {
            std::fs::create_dir_all(&dir)?;
            let store = RedbStore::open_dir(&dir)?;
            let have = store.load_packed().await?.len();
            if have != n {
                store.delete_all(Vec::new()).await?;
                fill(&store, n).await?;
            }
            store.close().await?;
        } else {
            let server = start_server(&bin, &dir, server_args)?;
            fill_http(&server.base, 0, n).await?;
            stop(server)?;
        }
        let mut times = Vec::new();
        let mut per_job = Vec::new();
        let (mut list_times, mut list_rss, mut list_mb) = (Vec::new(), Vec::new(), 0.0);
        let (mut gzip_times, mut gzip_mb) = (Vec::new(), 0.0);
        for _ in 0..repeat {
            // The server prints its listening line only after every job is
            // loaded and scheduled.
            let server = start_server(&bin, &dir, server_args)?;
            let elapsed = server.started_in.as_secs_f64();
            let health = kala_client::Client::new(&server.base)?.health().await?;
            if health.jobs != n as u64 {
                bail!("server reports {} jobs, expected {n}", health.jobs);
            }
            times.push(elapsed);
            let rss = server.rss_kib()?;
            per_job.push((rss.saturating_sub(base_rss) as f64 * 1024.0) / n as f64);
            if no_list {
                stop(server)?;
                continue;
            }
            // The full list, stats included, timed to its last byte; and
            // what it added to the server's resident memory.
            let t = std::time::Instant::now();
            let r = reqwest::get(format!("{}/api/v1/job/", server.base)).await?;
            if !r.status().is_success() {
                bail!("GET /api/v1/job/: HTTP {}", r.status());
            }
            let body = r.bytes().await?;
            list_times.push(t.elapsed().as_secs_f64());
            list_mb = body.len() as f64 / 1e6;
            let plain_len = body.len();
            drop(body);
            // The same list as every common client asks for it (gzip): to
            // its last byte, and whole (gzip's trailer holds the length of
            // what it compressed, mod 2^32).
            let t = std::time::Instant::now();
            let r = reqwest::Client::new()
                .get(format!("{}/api/v1/job/", server.base))
                .header("Accept-Encoding", "gzip")
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("GET /api/v1/job/ (gzip): HTTP {}", r.status());
            }
            let zipped = r.bytes().await?;
            gzip_times.push(t.elapsed().as_secs_f64());
            let isize = zipped
                .len()
                .checked_sub(4)
                .and_then(|at| zipped.get(at..))
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes);
            if isize != Some(plain_len as u32) {
                bail!(
                    "GET /api/v1/job/ (gzip): not whole ({} bytes, trailer {isize:?}, plain {plain_len})",
                    zipped.len()
                );
            }
            gzip_mb = zipped.len() as f64 / 1e6;
            list_rss.push(server.rss_kib()?.saturating_sub(rss) as f64 / 1024.0);
            stop(server)?;
        }
        if !server_args.is_empty() {
            let server = start_server(&bin, &dir, server_args)?;
            if let Err(e) = kala_client::Client::new(&server.base)?.delete_all().await {
                eprintln!("warning: cleaning up: DELETE /api/v1/job/all/: {e}");
            }
            stop(server)?;
        }
        eprintln!("restart: {n} jobs done");
        if !created_rss.is_empty() {
            out.push(measure(
                format!("RSS per job right after creating {n} over HTTP"),
                "bytes",
                created_rss,
            ));
        }
        out.push(measure(
            format!("start until {n} jobs scheduled"),
            "s",
            times,
        ));
        out.push(measure(
            format!("RSS per stored job at {n}"),
            "bytes",
            per_job,
        ));
        if no_list {
            continue;
        }
        out.push(measure(
            format!("GET all {n} jobs ({list_mb:.0} MB)"),
            "s",
            list_times,
        ));
        out.push(measure(
            format!("GET all {n} jobs, gzip ({gzip_mb:.1} MB)"),
            "s",
            gzip_times,
        ));
        out.push(measure(
            format!("RSS growth from that GET at {n}"),
            "MiB",
            list_rss,
        ));
    }
    out.push(measure(
        "RSS of an empty server",
        "KiB",
        vec![base_rss as f64],
    ));
    Ok(out)
}

/// Creates far-future jobs number `from` up to `n` over HTTP with 64
/// connections.
pub(crate) async fn fill_http(base: &str, from: usize, n: usize) -> anyhow::Result<()> {
    let client = kala_client::Client::new(base)?;
    let next = Arc::new(AtomicU64::new(from as u64));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                if k >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let mut job = kala_client::Job::new(format!("restart {k}"), "true");
                job.schedule = format!(
                    "R/{}/PT1H",
                    Timestamp::now() + SignedDuration::from_hours(24 * 365)
                );
                client.create(&job).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
