//! # kala-engine
//!
//! The scheduler: decides when each job runs, runs it through the
//! executor, retries it, chains its dependents, and records what happened —
//! embeddable in any tokio service.
//!
//! Shape (after mini-redis's purge task): **one timer task** over an
//! ordered queue of `(fire at, job id)`; it sleeps until the earliest entry
//! and is woken early when an earlier entry arrives. Due runs execute on a
//! **bounded worker pool** (a semaphore), so a burst of due jobs cannot
//! exhaust processes or sockets. Insert, remove and next-due are O(log n).
//!
//! State: the engine owns the in-memory map of jobs (a cache of the store)
//! and the queue. Every change a caller is told about (create, delete,
//! enable, disable, a finished run) is written to the store first; writes
//! of one job are serialised by a striped lock so an older snapshot can
//! never overwrite a newer one.
//!
//! Where things are (each module starts with what it owns and must not
//! touch):
//!
//! | module | owns |
//! |---|---|
//! | `facade` | [`Engine`]: create, get, list, delete, enable/disable, run now, stats, shutdown |
//! | `audit` | [`Actor`], [`AuditSettings`], the diff, the `--audit-log` file (`model.rs`, below everything); audit entries in the batch of each change (`mod.rs`) |
//! | `builder` | [`EngineBuilder`] |
//! | `startup` | [`Engine::start`]: load, parse plans, catch up, build the queue |
//! | `config` | [`EngineConfig`], [`MissedRuns`], [`EngineError`], [`Event`] |
//! | `state` | the job map, the queue, the locks, every field documented |
//! | `timer` | the next run of a job (computed in one place), arming, the timer loop |
//! | `runner` | epsilon, overlap, claim, the journal entry, the attempts of one run |
//! | `cluster` | several instances on one database: membership, partition leases, takeover, the change follower, hand-over |
//! | `journal` | start-up: open runs recorded as interrupted, their orphans killed |
//! | `retry` | the retry policy (a pure function) |
//! | `chain` | children and on-failure jobs, with the cycle guard |
//! | `record` | run records and counters written to the store |
//! | `maintenance` | pruning of old run records |
//! | `outbox` | notifications: notices made with their run, delivered at least once |
//! | [`clock`] | injectable time ([`SystemClock`], [`FakeClock`]) |
//! | `metrics` | counters for `/metrics` |

mod audit;
mod builder;
mod chain;
pub mod clock;
mod cluster;
mod config;
mod facade;
mod jobs;
mod journal;
mod late;
mod maintenance;
mod metrics;
mod outbox;
mod record;
mod retry;
mod runner;
mod startup;
mod state;
mod timer;

pub use audit::model::{Actor, AuditSettings, diff as audit_diff, mask as audit_mask};
pub use builder::EngineBuilder;
pub use clock::{Clock, FakeClock, SystemClock};
pub use cluster::{ClusterStatus, NodeStatus};
pub use config::NotifySettings;
pub use config::{EngineConfig, EngineError, Event, MissedRuns, default_node_id};
pub use facade::Engine;
pub use jobs::{IdKey, JobRef};
pub use kala_notify;
pub use metrics::{LATENESS_BUCKETS, Metrics, MetricsSnapshot};

#[cfg(test)]
mod tests;
