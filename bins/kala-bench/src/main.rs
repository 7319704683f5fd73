//! `kala-bench`: the instrument behind docs/BENCHMARKS.md. Every number is
//! measured, never asserted; each run prints a table and can write JSON.
//!
//! * `store`    — durable saves/s on the embedded store with 1..N writers,
//!   bulk load time, file size per job.
//! * `http`     — POST create and GET job requests/s and latency at C
//!   connections, against a kala-server it starts (fresh data dir, loopback)
//!   or any Kala-compatible server given by `--url`.
//! * `restart`  — time from process start until N stored jobs are loaded and
//!   scheduled, and RSS per stored job.
//! * `dispatch` — the latency `run_on` adds (runs dispatched to a worker).
//! * `publish` — publish jobs against NATS/JetStream, RabbitMQ or MQTT:
//!   confirmed publishes per second, lateness, confirmation latency.
//! * `lateness` — actual start minus scheduled time of in-process or `true`
//!   jobs at a given rate, with extra idle jobs in the queue.
//!
//! One module per benchmark; `server` starts kala-server through
//! kala-testkit (the integration tests' helper), `report` summarises.

mod chaos;
mod cluster;
mod compare;
mod dispatch;
mod embedded;
mod http;
mod lateness;
mod notify;
mod publish;
mod report;
mod restart;
mod server;
mod store;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use jiff::Timestamp;
use serde_json::json;

use chaos::{ChaosArgs, bench_chaos};
use cluster::{ClusterArgs, bench_cluster};
use compare::bench_compare;
use dispatch::{DispatchArgs, bench_dispatch};
use embedded::bench_embedded;
use http::bench_http;
use lateness::bench_lateness;
use notify::bench_notify;
use publish::{bench_publish, bench_publish_cluster};
use restart::bench_restart;
use store::bench_store;

#[derive(Parser)]
#[command(
    name = "kala-bench",
    about = "Measure kala or any Kala-compatible server"
)]
struct Cli {
    /// Write the results as JSON here too.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Repeat each measurement and report min/median/max.
    #[arg(long, global = true, default_value_t = 1)]
    repeat: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Embedded store: durable saves/s, bulk load, file size.
    Store {
        #[arg(long, default_value_t = 5000)]
        saves: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        writers: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "100000")]
        bulk: Vec<usize>,
    },
    /// HTTP create and get at C connections.
    Http {
        /// A running Kala-compatible server; without it kala-server is started.
        #[arg(long)]
        url: Option<String>,
        /// The kala-server binary to start (default: next to this binary).
        #[arg(long)]
        server: Option<PathBuf>,
        /// Extra arguments for the started kala-server, e.g.
        /// `--server-arg=--jobdb=postgres`.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        connections: Vec<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Restart time and RSS per stored job.
    Restart {
        #[arg(long, value_delimiter = ',', default_value = "100000")]
        jobs: Vec<usize>,
        #[arg(long)]
        server: Option<PathBuf>,
        /// Extra arguments for kala-server (another --jobdb). With them the
        /// jobs are created over HTTP instead of written to a redb file, and
        /// deleted afterwards.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// Keep the filled embedded store in this directory (one --jobs
        /// value): reused when it already holds that many jobs, so a
        /// profiler can be pointed at the same start-up again.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Create the jobs over HTTP on the embedded store (not written to
        /// its file directly) and also report the RSS per job right after
        /// creating them, before any restart.
        #[arg(long)]
        over_http: bool,
        /// Leave out the full list (at 10M jobs it is ~7 GB of JSON).
        #[arg(long)]
        no_list: bool,
    },
    /// The fault suite's long version: N instances on one database under
    /// SIGKILL, SIGSTOP pauses, partitions from the database and clock
    /// skew, judged by the jobs' own side effects.
    Chaos {
        #[arg(long)]
        server: Option<PathBuf>,
        /// postgres, redis, mariadb or consul.
        #[arg(long, default_value = "postgres")]
        backend: String,
        /// The database's host:port (default: the local server of the
        /// backend; required for consul).
        #[arg(long)]
        address: Option<String>,
        #[arg(long, default_value_t = 3)]
        instances: usize,
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
        /// Fault kinds, drawn in turn.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "kill,pause,partition,skew"
        )]
        faults: Vec<String>,
        /// Jobs running every second.
        #[arg(long, default_value_t = 30)]
        jobs: usize,
        /// Seed of the fault draw (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Several instances on one PostgreSQL database: runs/s with 1, 2, 3
    /// instances, transactions per run, duplicates, takeover after
    /// SIGKILL, time until a change is visible through another instance.
    Cluster {
        #[arg(long)]
        server: Option<PathBuf>,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        pg_url: String,
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        instances: Vec<usize>,
        /// Jobs running `true` every second.
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
        /// Seconds of sustained running measured per instance count.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// SIGKILLs (each followed by a restart) per instance count ≥ 2.
        #[arg(long, default_value_t = 20)]
        kills: usize,
    },
    /// The latency `run_on` adds: runs dispatched to a worker instance
    /// against runs where their partition is held (3 instances).
    Dispatch {
        #[arg(long)]
        server: Option<PathBuf>,
        /// postgres or redis.
        #[arg(long, default_value = "postgres")]
        backend: String,
        /// Jobs each once a second (half of them dispatched).
        #[arg(long, default_value_t = 200)]
        jobs: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Publish jobs (type 3) at a rate on the embedded store against this
    /// machine's brokers: confirmed publishes/s, lateness, confirmation
    /// latency.
    Publish {
        /// nats, jetstream, amqp or mqtt.
        #[arg(long, default_value = "jetstream")]
        kind: String,
        /// Publishes per second (as many jobs, each once a second).
        #[arg(long, default_value_t = 1000)]
        rate: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Three kala-server processes on PostgreSQL instead of the
        /// embedded engine.
        #[arg(long)]
        cluster: bool,
        #[arg(long)]
        server: Option<PathBuf>,
    },
    /// Lateness of scheduled runs at a rate, with idle jobs queued.
    Lateness {
        /// Runs per second.
        #[arg(long, default_value_t = 1000)]
        rate: usize,
        /// Idle jobs scheduled far in the future, besides the running ones.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// `inprocess` (a no-op handler) or `true` (the command).
        #[arg(long, default_value = "inprocess")]
        kind: String,
        /// `redb` (durable, default) or `memory`.
        #[arg(long, default_value = "redb")]
        store: String,
        /// Keep the embedded store with the idle jobs in this directory:
        /// reused when it holds exactly --idle jobs (the ticking jobs are
        /// deleted at the end), so 10M idle jobs are written once.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The same measurements against two Kala-compatible servers at the
    /// same number of jobs (each is filled to --jobs first): creates/s
    /// while filling, GET one job, the full list.
    Compare {
        /// A server's base URL; give it twice or more (`--url A --url B`).
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Seconds per GET measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// The embedded engine against tokio-cron-scheduler, in this process:
    /// memory per idle job, idle CPU, lateness with jobs due each second.
    /// Run once per scheduler.
    Embedded {
        /// `kala` or `tokio-cron-scheduler`.
        #[arg(long)]
        scheduler: String,
        /// kala's store: `redb` (durable: every run journaled and recorded
        /// with an fsync) or `memory` (like tokio-cron-scheduler's default).
        #[arg(long, default_value = "redb")]
        store: String,
        /// Idle jobs (due in a year).
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// Jobs due at every whole second.
        #[arg(long, default_value_t = 1000)]
        rate: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Notifications of failed runs to a webhook in this process: delivery
    /// latency and notifications/s (durable outbox, real HTTP).
    Notify {
        /// Notifications due in the outbox at start (the drain).
        #[arg(long, default_value_t = 10_000)]
        notices: usize,
        /// Failing runs per second, one notification each (the latency).
        #[arg(long, default_value_t = 500)]
        rate: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Deliveries in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(async {
        match &cli.cmd {
            Cmd::Store {
                saves,
                writers,
                bulk,
            } => bench_store(*saves, writers, bulk, cli.repeat).await,
            Cmd::Http {
                url,
                server,
                server_args,
                connections,
                seconds,
            } => {
                bench_http(
                    url.clone(),
                    server.clone(),
                    server_args,
                    connections,
                    *seconds,
                    cli.repeat,
                )
                .await
            }
            Cmd::Restart {
                jobs,
                server,
                server_args,
                dir,
                over_http,
                no_list,
            } => {
                bench_restart(
                    jobs,
                    server.clone(),
                    server_args,
                    dir.clone(),
                    (*over_http, *no_list),
                    cli.repeat,
                )
                .await
            }
            Cmd::Dispatch {
                server,
                backend,
                jobs,
                seconds,
            } => {
                bench_dispatch(&DispatchArgs {
                    server: server.clone(),
                    backend: backend.clone(),
                    jobs: *jobs,
                    seconds: *seconds,
                })
                .await
            }
            Cmd::Publish {
                kind,
                rate,
                seconds,
                cluster,
                server,
            } => {
                if *cluster {
                    bench_publish_cluster(server.clone(), kind, *rate, *seconds).await
                } else {
                    bench_publish(kind, *rate, *seconds).await
                }
            }
            Cmd::Lateness {
                rate,
                idle,
                seconds,
                kind,
                store,
                dir,
            } => bench_lateness(*rate, *idle, *seconds, kind, store, dir.clone()).await,
            Cmd::Compare {
                urls,
                jobs,
                connections,
                seconds,
            } => bench_compare(urls, *jobs, *connections, *seconds, cli.repeat).await,
            Cmd::Embedded {
                scheduler,
                store,
                jobs,
                rate,
                seconds,
            } => bench_embedded(scheduler, store, *jobs, *rate, *seconds).await,
            Cmd::Notify {
                notices,
                rate,
                seconds,
                concurrency,
            } => bench_notify(*notices, *rate, *seconds, *concurrency).await,
            Cmd::Chaos {
                server,
                backend,
                address,
                instances,
                minutes,
                faults,
                jobs,
                seed,
            } => {
                bench_chaos(&ChaosArgs {
                    server: server.clone(),
                    backend: backend.clone(),
                    address: address.clone(),
                    instances: *instances,
                    minutes: *minutes,
                    faults: faults.clone(),
                    jobs: *jobs,
                    seed: *seed,
                })
                .await
            }
            Cmd::Cluster {
                server,
                pg_url,
                instances,
                jobs,
                seconds,
                kills,
            } => {
                bench_cluster(&ClusterArgs {
                    server: server.clone(),
                    pg_url: pg_url.clone(),
                    instances: instances.clone(),
                    jobs: *jobs,
                    seconds: *seconds,
                    kills: *kills,
                })
                .await
            }
        }
    })?;
    println!();
    println!(
        "{:<48} {:>14} {:>14} {:>14}  unit",
        "measurement", "min", "median", "max"
    );
    for r in &results {
        println!(
            "{:<48} {:>14.3} {:>14.3} {:>14.3}  {}",
            r.name, r.min, r.median, r.max, r.unit
        );
    }
    if let Some(path) = &cli.json {
        let v: Vec<_> = results
            .iter()
            .map(|r| json!({"name": r.name, "unit": r.unit, "min": r.min, "median": r.median, "max": r.max, "samples": r.samples}))
            .collect();
        std::fs::write(
            path,
            serde_json::to_vec_pretty(
                &json!({"date": Timestamp::now().to_string(), "results": v}),
            )?,
        )?;
    }
    Ok(())
}
