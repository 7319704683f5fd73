//! `kala-server`: composes the schedule, job, store, executor, engine and
//! API crates into Kala's single binary. Flag names follow Kala's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use kala_api::ApiConfig;
use kala_engine::{Engine, EngineConfig, SystemClock};
use kala_executor::Executor;
use kala_store::{JobStore, MemoryStore};
use kala_store_redb::RedbStore;

#[derive(Parser)]
#[command(
    name = "kala-server",
    version,
    about = "A Kala-compatible job scheduler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the scheduler and its HTTP API.
    Serve(Box<Serve>),
    /// Run a command exactly as a local job would, and report the result.
    Run {
        /// The command line, e.g. "bash -c 'echo hi'".
        command: Vec<String>,
    },
    /// Verify the embedded store offline: every record's checksum and
    /// format; damaged records are listed by id (exit 1), a clean store
    /// exits 0. Stop the server first (the file is locked while it runs).
    Check {
        /// The directory holding kala.redb.
        #[arg(long = "bolt-path", env = "KALA_BOLT_PATH", default_value = ".")]
        bolt_path: PathBuf,
    },
}

/// The backends `--jobdb` accepts.
const JOBDBS: &[&str] = &["boltdb", "redis", "postgres", "mysql", "mariadb", "mongo"];

#[derive(Args, Debug)]
struct Serve {
    /// Port to listen on (Kala's ":8000" form works too).
    #[arg(short, long, env = "KALA_PORT", default_value = "8000")]
    port: String,
    /// Interface to bind. Kala binds every interface; kala binds loopback
    /// unless told otherwise.
    #[arg(short, long, env = "KALA_INTERFACE", default_value = "127.0.0.1")]
    interface: String,
    /// Job store: boltdb (the embedded store), redis, postgres, mysql, mariadb, mongo.
    #[arg(long, env = "KALA_JOBDB", default_value = "boltdb")]
    jobdb: String,
    /// Directory of the embedded store's file (kala.redb).
    #[arg(
        long = "bolt-path",
        alias = "boltpath",
        env = "KALA_BOLT_PATH",
        default_value = "."
    )]
    bolt_path: PathBuf,
    /// Address of the job store's server.
    #[arg(long = "jobdb-address", env = "KALA_JOBDB_ADDRESS", default_value = "")]
    jobdb_address: String,
    #[arg(
        long = "jobdb-username",
        env = "KALA_JOBDB_USERNAME",
        default_value = ""
    )]
    jobdb_username: String,
    #[arg(
        long = "jobdb-password",
        env = "KALA_JOBDB_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    jobdb_password: String,
    #[arg(
        long = "jobdb-tls-capath",
        env = "KALA_JOBDB_TLS_CAPATH",
        default_value = ""
    )]
    jobdb_tls_capath: String,
    #[arg(
        long = "jobdb-tls-certpath",
        env = "KALA_JOBDB_TLS_CERTPATH",
        default_value = ""
    )]
    jobdb_tls_certpath: String,
    #[arg(
        long = "jobdb-tls-keypath",
        env = "KALA_JOBDB_TLS_KEYPATH",
        default_value = ""
    )]
    jobdb_tls_keypath: String,
    #[arg(
        long = "jobdb-tls-servername",
        env = "KALA_JOBDB_TLS_SERVERNAME",
        default_value = ""
    )]
    jobdb_tls_servername: String,
    /// Where in the job store kala keeps its data: the Redis key prefix
    /// (default kala), the PostgreSQL schema (default: the search path),
    /// the MongoDB database (default kala).
    #[arg(long = "jobdb-namespace", env = "KALA_JOBDB_NAMESPACE")]
    jobdb_namespace: Option<String>,
    /// Owner given to jobs created without one.
    #[arg(
        short = 'o',
        long = "default-owner",
        env = "KALA_DEFAULT_OWNER",
        default_value = ""
    )]
    default_owner: String,
    /// Minutes to keep run records; -1 keeps them (up to --keep-runs per job).
    #[arg(long = "jobstat-ttl", env = "KALA_JOBSTAT_TTL", default_value_t = -1, allow_negative_numbers = true)]
    jobstat_ttl: i64,
    /// Run records kept per job (oldest dropped first); 0 keeps all.
    #[arg(long = "keep-runs", env = "KALA_KEEP_RUNS", default_value_t = 1000)]
    keep_runs: usize,
    /// Keep everything in memory; nothing is loaded or saved.
    #[arg(short = 'n', long = "no-persist", env = "KALA_NO_PERSIST")]
    no_persist: bool,
    /// Debug logging.
    #[arg(short, long, env = "KALA_VERBOSE")]
    verbose: bool,
    /// Require `Authorization: Bearer <token>` on every /api/v1 request.
    #[arg(long = "auth-token", env = "KALA_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// A host name clients may use in the Host header besides IP addresses
    /// and localhost (repeatable; `*` allows any, which re-opens DNS
    /// rebinding). See docs/SECURITY.md.
    #[arg(
        long = "allowed-host",
        env = "KALA_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// Largest accepted request body, in bytes.
    #[arg(long = "max-body-bytes", env = "KALA_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Runs executing at once, at most.
    #[arg(
        long = "max-concurrent-runs",
        env = "KALA_MAX_CONCURRENT_RUNS",
        default_value_t = 256
    )]
    max_concurrent_runs: usize,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long = "tls-cert", env = "KALA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long = "tls-key", env = "KALA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds running jobs and open requests get to finish on
    /// SIGTERM/SIGINT; the process exits within it.
    #[arg(long = "grace-period", env = "KALA_GRACE_PERIOD", default_value_t = 30)]
    grace_period: u64,
    /// Seconds a client has to send a request's headers; an idle
    /// keep-alive connection is closed after as long.
    #[arg(
        long = "header-timeout",
        env = "KALA_HEADER_TIMEOUT",
        default_value_t = 10
    )]
    header_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kala-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        Command::Run { command } => runtime.block_on(run(command)),
        Command::Check { bolt_path } => check(&bolt_path),
        Command::Serve(args) => match runtime.block_on(serve(*args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kala-server: {e:#}");
                ExitCode::FAILURE
            }
        },
    };
    // Whatever is still running after the grace period (a connection, a
    // thread reading a command's output) does not hold the process.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

/// `kala-server check`.
fn check(dir: &std::path::Path) -> ExitCode {
    let file = dir.join("kala.redb");
    if !file.exists() {
        eprintln!("kala-server check: no store at {}", file.display());
        return ExitCode::FAILURE;
    }
    let report = RedbStore::open_dir(dir).and_then(|s| s.verify());
    match report {
        Err(e) => {
            eprintln!("kala-server check: {e}");
            ExitCode::FAILURE
        }
        Ok(r) if r.damaged.is_empty() => {
            println!(
                "{}: {} jobs and {} run records, all intact",
                file.display(),
                r.jobs,
                r.runs
            );
            ExitCode::SUCCESS
        }
        Ok(r) => {
            for d in &r.damaged {
                println!("damaged: {d}");
            }
            println!(
                "{}: {} of {} jobs and {} run records are damaged",
                file.display(),
                r.damaged.len(),
                r.jobs,
                r.runs
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Vec<String>) -> ExitCode {
    match command.as_slice() {
        [] => {
            eprintln!("Must include a command");
            ExitCode::FAILURE
        }
        [cmd] => {
            let attempt = kala_executor::run_command(cmd, None).await;
            if attempt.success {
                println!("Command Succeeded!");
                println!("Output:  {}", attempt.output.trim());
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "Command Failed with err: {}",
                    attempt.error.unwrap_or_default()
                );
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("Must only include a command (quote it: kala-server run \"echo hi\")");
            ExitCode::FAILURE
        }
    }
}

fn listen_addr(interface: &str, port: &str) -> anyhow::Result<SocketAddr> {
    let port = port.strip_prefix(':').unwrap_or(port);
    let port: u16 = port
        .parse()
        .with_context(|| format!("--port {port:?} is not a port number"))?;
    let ip: std::net::IpAddr = interface
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .with_context(|| format!("--interface {interface:?} is not an IP address"))?;
    Ok(SocketAddr::new(ip, port))
}

async fn open_store(args: &Serve) -> anyhow::Result<Arc<dyn JobStore>> {
    if args.no_persist {
        tracing::warn!(
            "--no-persist: jobs are kept in memory only and are lost when the server stops"
        );
        return Ok(Arc::new(MemoryStore::new()));
    }
    let namespace = args.jobdb_namespace.clone().filter(|n| !n.is_empty());
    let store: Arc<dyn JobStore> = match args.jobdb.as_str() {
        "boltdb" => {
            if let Some(ns) = &namespace {
                tracing::warn!(namespace = %ns, "--jobdb-namespace does not apply to the embedded store (--bolt-path picks its directory); ignored");
            }
            let store = RedbStore::open_dir(&args.bolt_path)?;
            tracing::info!(path = %store.path().display(), "embedded store opened");
            Arc::new(store)
        }
        #[cfg(feature = "redis")]
        "redis" => {
            let options = kala_store_redis::RedisOptions {
                address: args.jobdb_address.clone(),
                password: args.jobdb_password.clone(),
                prefix: namespace.unwrap_or_else(|| "kala".into()),
                ..Default::default()
            };
            Arc::new(
                kala_store_redis::RedisStore::connect(&options)
                    .await
                    .context("--jobdb=redis")?,
            )
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let options = kala_store_postgres::PostgresOptions {
                connect: kala_store_postgres::ConnectOptions {
                    address: args.jobdb_address.clone(),
                    username: args.jobdb_username.clone(),
                    password: args.jobdb_password.clone(),
                    ..Default::default()
                },
                schema: namespace,
            };
            Arc::new(
                kala_store_postgres::PostgresStore::connect(&options)
                    .await
                    .context("--jobdb=postgres")?,
            )
        }
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => {
            if namespace.is_some() {
                bail!(
                    "--jobdb-namespace does not apply to {}: name the database in --jobdb-address",
                    args.jobdb
                );
            }
            let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
            let options = kala_store_mysql::MySqlOptions {
                connect: kala_store_mysql::ConnectOptions {
                    address: args.jobdb_address.clone(),
                    username: args.jobdb_username.clone(),
                    password: args.jobdb_password.clone(),
                    ..Default::default()
                },
                tls_ca: path(&args.jobdb_tls_capath),
                tls_cert: path(&args.jobdb_tls_certpath),
                tls_key: path(&args.jobdb_tls_keypath),
                tls_servername: Some(args.jobdb_tls_servername.clone()),
            };
            Arc::new(
                kala_store_mysql::MySqlStore::connect(&options)
                    .await
                    .with_context(|| format!("--jobdb={}", args.jobdb))?,
            )
        }
        #[cfg(feature = "mongo")]
        "mongo" => {
            let options = kala_store_mongo::MongoOptions {
                address: args.jobdb_address.clone(),
                username: args.jobdb_username.clone(),
                password: args.jobdb_password.clone(),
                database: namespace.unwrap_or_else(|| "kala".into()),
                ..Default::default()
            };
            Arc::new(
                kala_store_mongo::MongoStore::connect(&options)
                    .await
                    .context("--jobdb=mongo")?,
            )
        }
        other if JOBDBS.contains(&other) => bail!(
            "--jobdb={other} is not built into this binary (cargo feature {:?} of kala-server is off)",
            if other == "mariadb" { "mysql" } else { other }
        ),
        other => bail!(
            "unknown --jobdb {other:?}; valid values: {}",
            JOBDBS.join(", ")
        ),
    };
    if args.jobdb != "boltdb" {
        tracing::info!(store = store.name(), "job store connected");
    }
    Ok(store)
}

async fn serve(args: Serve) -> anyhow::Result<()> {
    let filter = if args.verbose { "debug" } else { "info" };
    let env_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .init();

    let addr = listen_addr(&args.interface, &args.port)?;
    let store = open_store(&args).await?;
    let executor = Executor::new()?;
    let config = EngineConfig {
        max_concurrent_runs: args.max_concurrent_runs.max(1),
        keep_runs: (args.keep_runs > 0).then_some(args.keep_runs),
        run_ttl: (args.jobstat_ttl > 0).then(|| jiff::SignedDuration::from_mins(args.jobstat_ttl)),
        ..EngineConfig::default()
    };
    let started = std::time::Instant::now();
    let engine = Engine::start(store.clone(), executor, Arc::new(SystemClock), config).await?;
    tracing::info!(
        jobs = engine.len(),
        scheduled = engine.scheduled_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "jobs loaded and scheduled"
    );

    let api = ApiConfig {
        default_owner: args.default_owner.clone(),
        max_body_bytes: args.max_body_bytes,
        auth_token: args.auth_token.clone().filter(|t| !t.is_empty()),
        allowed_hosts: args.allowed_hosts.clone(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Machine-readable: tests and scripts wait for this line.
    println!("kala-server listening on {scheme}://{bound}");
    tracing::info!(%bound, store = store.name(), tls = tls.is_some(), "serving the API");
    let app = kala_api::app(engine.clone(), api);
    let grace = Duration::from_secs(args.grace_period);
    let connections = serve_connections(
        listener,
        tls,
        app,
        Duration::from_secs(args.header_timeout.max(1)),
        shutdown_signal(),
    )
    .await;
    // From here no connection is accepted and no run starts; open requests
    // and running jobs get the grace period, together.
    tracing::info!("stopping: finishing open requests and running jobs");
    let (requests, runs) = tokio::join!(
        tokio::time::timeout(grace, connections.shutdown()),
        engine.shutdown(grace)
    );
    if requests.is_err() {
        tracing::warn!(
            grace_seconds = args.grace_period,
            "some connections were still open after the grace period; closed"
        );
    }
    if !runs {
        tracing::warn!(
            grace_seconds = args.grace_period,
            "some runs did not finish within the grace period"
        );
    }
    store.close().await?;
    tracing::info!("store closed; bye");
    Ok(())
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert {}: not a PEM certificate chain", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key {}: not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("--tls-cert/--tls-key do not form a usable certificate and key")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections (HTTPS when `tls` is given) and serves each with
/// hyper until `stop` completes; returns the open connections so that the
/// caller can give them a bounded time to finish. Headers must arrive
/// within `header_timeout`, which also closes idle keep-alive connections
/// (and bounds a TLS handshake).
async fn serve_connections(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: kala_api::App,
    header_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> hyper_util::server::graceful::GracefulShutdown {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut stop => return graceful,
        };
        let (tls, app, builder, watcher) = (
            tls.clone(),
            app.clone(),
            builder.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            let svc = TowerToHyperService::new(app.map_request(
                |req: hyper::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
            ));
            let served = match tls {
                None => {
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .into_owned();
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .into_owned();
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
