//! `kala-server`: composes the schedule, job, store, executor, engine and
//! API crates into Kala's single binary. Flag names follow Kala's.

mod auth;
mod brokers;
mod check;
mod config;
mod import;
mod net;
mod notify;
mod run;
mod store;
mod tags;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::net::{serve_connections, shutdown_signal, tls_acceptor};
use crate::store::open_store;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kala_api::ApiConfig;
use kala_engine::{Engine, EngineConfig, SystemClock};
use kala_executor::Executor;

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
    /// Make API tokens (`kala-server token new --name ci --role operator`).
    Token {
        #[command(subcommand)]
        cmd: auth::TokenCmd,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell) for kala-server.
    Completions { shell: clap_complete::Shell },
    /// Print kala-server's manual page (roff), made from this command
    /// line's own definition.
    Man,
    /// Print the effective configuration of `serve` (flags, `KALA_*`
    /// variables, the config file, defaults) as TOML, secrets masked.
    Config {
        #[command(flatten)]
        serve: Box<Serve>,
    },
    /// Copy every job of a running Kala (or kala) into this server's store
    /// (the store flags of `serve`), keeping ids, parents before children.
    /// Stop the server first; ids that exist are skipped. `--auth-token`
    /// is the source's token here.
    Import {
        /// The source server, e.g. http://old-kala:8000.
        #[arg(long)]
        from: String,
        /// Say what would be imported; write nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        #[command(flatten)]
        store: Box<Serve>,
    },
}

/// How the server writes its log (to stderr).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Lines for people; coloured only on a terminal without `NO_COLOR`.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Args, Debug)]
struct Serve {
    /// A TOML file whose keys are these flags' long names; its values are
    /// the defaults (a flag beats its KALA_* variable beats the file).
    /// Default: /etc/kala/kala.toml when it exists.
    #[arg(long, env = "KALA_CONFIG")]
    config: Option<PathBuf>,
    /// Port to listen on (Kala's ":8000" form works too).
    #[arg(short, long, env = "KALA_PORT", default_value = "8000")]
    port: String,
    /// Interface to bind. Kala binds every interface; kala binds loopback
    /// unless told otherwise.
    #[arg(short, long, env = "KALA_INTERFACE", default_value = "127.0.0.1")]
    interface: String,
    /// Job store: boltdb (the embedded store), redis, postgres, mysql, mariadb, mongo, consul.
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
    /// User name for the job store (PostgreSQL, MySQL/MariaDB, MongoDB;
    /// HTTP basic auth in front of Consul).
    #[arg(
        long = "jobdb-username",
        env = "KALA_JOBDB_USERNAME",
        default_value = ""
    )]
    jobdb_username: String,
    /// Password for the job store (Redis AUTH, PostgreSQL, MySQL/MariaDB,
    /// MongoDB, Consul basic auth).
    #[arg(
        long = "jobdb-password",
        env = "KALA_JOBDB_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    jobdb_password: String,
    /// PEM file of the CA that signed the job store's certificate (MySQL,
    /// Consul).
    #[arg(
        long = "jobdb-tls-capath",
        env = "KALA_JOBDB_TLS_CAPATH",
        default_value = ""
    )]
    jobdb_tls_capath: String,
    /// PEM client certificate for the job store (MySQL, Consul).
    #[arg(
        long = "jobdb-tls-certpath",
        env = "KALA_JOBDB_TLS_CERTPATH",
        default_value = ""
    )]
    jobdb_tls_certpath: String,
    /// PEM key of --jobdb-tls-certpath.
    #[arg(
        long = "jobdb-tls-keypath",
        env = "KALA_JOBDB_TLS_KEYPATH",
        default_value = ""
    )]
    jobdb_tls_keypath: String,
    /// The name to verify in the job store's certificate instead of the
    /// address's host (Consul; MySQL refuses it).
    #[arg(
        long = "jobdb-tls-servername",
        env = "KALA_JOBDB_TLS_SERVERNAME",
        default_value = ""
    )]
    jobdb_tls_servername: String,
    /// Where in the job store kala keeps its data: the Redis key prefix
    /// (default kala), the PostgreSQL schema (default: the search path),
    /// the MongoDB database (default kala), the Consul key prefix (default
    /// kala).
    #[arg(long = "jobdb-namespace", env = "KALA_JOBDB_NAMESPACE")]
    jobdb_namespace: Option<String>,
    /// Consul's ACL token (default: CONSUL_HTTP_TOKEN).
    #[arg(long = "jobdb-token", env = "KALA_JOBDB_TOKEN", default_value = "")]
    jobdb_token: String,
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
    /// This instance's name: in the cluster (several instances on one
    /// database), in the run journal (runs a crash interrupted are
    /// recorded at the next start under it) and in `KALA_NODE`. Keep it
    /// stable across restarts and unique among instances; default: the
    /// host name and the port (`host:8000`).
    #[arg(long = "node-name", alias = "node-id", env = "KALA_NODE_NAME")]
    node_id: Option<String>,
    /// A tag of this instance, `key=value` (repeatable; `KALA_TAGS` takes
    /// `k=v,k2=v2`, the config file `tags = { role = "etl" }`): shown in
    /// `/api/v1/cluster/` and the web UI's cluster page.
    #[arg(
        long = "tag",
        env = "KALA_TAGS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    tags: Vec<String>,
    /// What this instance does on a shared database: `both` (schedules
    /// and runs), `worker` (runs only what other instances dispatch to it
    /// through `run_on`), `scheduler` (dispatches every run, runs none).
    #[arg(long = "role", env = "KALA_ROLE", value_enum, default_value = "both")]
    role: tags::Role,
    /// Log format: text, or json (one object per line with the job id,
    /// run id, node and outcome of each run). Levels and targets:
    /// RUST_LOG (e.g. `RUST_LOG=kala_engine=debug`).
    #[arg(
        long = "log-format",
        env = "KALA_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(flatten)]
    notify: notify::NotifyArgs,
    #[command(flatten)]
    brokers: brokers::BrokerArgs,
    #[command(flatten)]
    auth: auth::AuthArgs,
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmd = match config::apply(<Cli as clap::CommandFactory>::command(), &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kala-server: {e}");
            return ExitCode::from(2);
        }
    };
    let matches = cmd.clone().get_matches_from(&args);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
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
        Command::Run { command } => runtime.block_on(run::run(command)),
        Command::Token {
            cmd: auth::TokenCmd::New { name, role, owner },
        } => auth::token_new(&name, role, owner),
        Command::Check { bolt_path } => check::check(&bolt_path),
        Command::Import {
            from,
            dry_run,
            store,
        } => runtime.block_on(import::import(
            &from,
            store.auth_token.as_deref(),
            dry_run,
            &store,
        )),
        Command::Config { .. } => {
            if let Some(m) = matches.subcommand_matches("config") {
                config::print(&cmd, m);
            }
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "kala-server", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kala-server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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

async fn serve(args: Serve) -> anyhow::Result<()> {
    let filter = if args.verbose { "debug" } else { "info" };
    let env_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
    }
    // Every panic in the server is caught where it happens (a library's
    // bug on hostile input becomes a 400 or a failed run): log one line
    // and capture no backtrace, which costs ~60 ms of CPU per panic with
    // RUST_BACKTRACE=1 (measured on the fuzz corpus).
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "caught a panic; see the error it became");
    }));

    let addr = net::listen_addr(&args.interface, &args.port)?;
    // Bound before the engine starts so that the instance's default name
    // has the real port (also with `--port 0`); requests wait in the
    // backlog until the engine is ready.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    // Bad notification flags or tags stop the start before any store is
    // opened.
    let notify = args.notify.settings()?;
    let tags = tags::parse(&args.tags)?;
    let node_id = args
        .node_id
        .clone()
        .or_else(|| std::env::var("KALA_NODE_ID").ok())
        .unwrap_or_else(|| format!("{}:{}", kala_engine::default_node_id(), addr.port()));
    let brokers = args.brokers.open(&node_id)?;
    let role = tags::node_role(args.role, &args.jobdb, args.no_persist)?;
    let store = open_store(&args).await?;
    let executor = Executor::new()?;
    brokers::install(brokers.as_ref(), &executor);
    let config = EngineConfig {
        max_concurrent_runs: args.max_concurrent_runs.max(1),
        keep_runs: (args.keep_runs > 0).then_some(args.keep_runs),
        run_ttl: (args.jobstat_ttl > 0).then(|| jiff::SignedDuration::from_mins(args.jobstat_ttl)),
        node_id,
        address: addr.to_string(),
        tags,
        role,
        notify,
        audit: args.auth.audit(),
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

    let config_file = config::effective(args.config.as_deref());
    let auth = args.auth.build(config_file.as_deref()).await?;
    auth::reload_on_sighup(auth.clone(), config_file, engine.clone());
    let api = ApiConfig {
        default_owner: args.default_owner.clone(),
        max_body_bytes: args.max_body_bytes,
        auth_token: args.auth_token.clone().filter(|t| !t.is_empty()),
        auth,
        allow_commands: args.auth.allow_commands,
        allowed_hosts: args.allowed_hosts.clone(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
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
    // A store that does not close within 10 s (a server gone away) must
    // not keep the process from exiting: every write was awaited before.
    match tokio::time::timeout(Duration::from_secs(10), store.close()).await {
        Ok(closed) => closed?,
        Err(_) => tracing::warn!("the store did not close within 10 s; exiting anyway"),
    }
    if let Some(b) = &brokers {
        b.close().await;
    }
    tracing::info!("store closed; bye");
    Ok(())
}
