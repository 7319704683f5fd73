//! # kala
//!
//! kala's job scheduler as a library: schedule jobs (ISO 8601 repeating
//! intervals or cron, in any time zone) inside your own tokio service, run
//! them as shell commands, HTTP requests or async functions of your
//! program, with retries, dependent jobs, run history and durable storage.
//! This crate gathers the parts — [`Engine`] and its builder, the [`Job`]
//! model, [`Schedule`], and the stores — so an embedder depends on `kala`
//! alone. The HTTP server is the separate `kala-server` binary.
//!
//! Stores are cargo features: `redb` (the embedded file store, on by
//! default), `redis`, `postgres`, `mysql`, `mongo`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kala::{Engine, Event, Job, JobType};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = Arc::new(kala::store::redb::RedbStore::open_dir(dir.path())?);
//! let engine = Engine::builder().store(store).build().await?;
//!
//! // An async function of this program, run as a job.
//! engine.register_handler("greet", |job: Job| async move {
//!     Ok(format!("hello from {}", job.name))
//! });
//! let mut events = engine.subscribe();
//! let mut job = Job::new("greeter", "greet");
//! job.job_type = JobType::InProcess;
//! // No schedule: it runs once, now. `job.schedule = "R/2030-01-01T09:00:00Z/P1D"`
//! // or `"0 9 * * 1-5"` would repeat it.
//! engine.create(job).await?;
//!
//! loop {
//!     if let Event::RunFinished(run) = events.recv().await? {
//!         assert_eq!(run.output, "hello from greeter");
//!         break;
//!     }
//! }
//! engine.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub use kala_engine::{
    Actor, AuditSettings, Clock, Engine, EngineBuilder, EngineConfig, EngineError, Event,
    FakeClock, MetricsSnapshot, MissedRuns, SystemClock,
};
pub use kala_executor::{Executor, HandlerResult};
pub use kala_job::{
    Job, JobError, JobId, JobType, Metadata, Outcome, Overlap, Plan, RemoteProperties, RunRecord,
    Trigger,
};
pub use kala_schedule::{Schedule, ScheduleError, Zone};

/// Time as the job model and the engine use it (from `jiff`).
pub use jiff::{self, SignedDuration, Timestamp};

/// Storage: the [`JobStore`](store::JobStore) trait, the in-memory store,
/// and each backend enabled by its cargo feature.
pub mod store {
    pub use kala_store::{AuditEntry, Batch, Claim, JobStore, MemoryStore, Retention, StoreError};

    /// The embedded file store (feature `redb`, on by default).
    #[cfg(feature = "redb")]
    pub use kala_store_redb as redb;

    /// Redis (feature `redis`).
    #[cfg(feature = "redis")]
    pub use kala_store_redis as redis;

    /// PostgreSQL (feature `postgres`).
    #[cfg(feature = "postgres")]
    pub use kala_store_postgres as postgres;

    /// MySQL and MariaDB (feature `mysql`).
    #[cfg(feature = "mysql")]
    pub use kala_store_mysql as mysql;

    /// MongoDB (feature `mongo`).
    #[cfg(feature = "mongo")]
    pub use kala_store_mongo as mongo;

    /// Consul's KV store (feature `consul`).
    #[cfg(feature = "consul")]
    pub use kala_store_consul as consul;
}

/// The parts, for what the re-exports above leave out.
pub mod parts {
    pub use kala_engine as engine;
    pub use kala_executor as executor;
    pub use kala_job as job;
    pub use kala_schedule as schedule;
}
