//! # kala-store-mongo
//!
//! A [`JobStore`](kala_store::JobStore) on MongoDB (`--jobdb=mongo`).
//!
//! Layout, in database `kala` (Kala's) unless told otherwise:
//!
//! | collection | one document per | content |
//! |---|---|---|
//! | `jobs` | job | `_id` = job id, then the job's fields as BSON (kala-job's stored form) |
//! | `runs` | run record | `job_id`, `ran_at` (ns since 1970, Int64), `run` (the record); indexes `(job_id, ran_at)`, `(ran_at)` |
//! | `claims` | claimed occurrence | `_id` = `<job id>\|<occurrence ns>`, `owner`, `expires_at` |
//!
//! A save replaces the job's one document (Kala inserts a new one on every
//! save, issue #189). On a replica set or sharded cluster every [`Batch`](kala_store::Batch) is
//! one multi-document transaction; on a standalone server, which has no
//! transactions, a batch is a sequence of single-document-atomic writes
//! (puts, then runs, then deletes) and a failure part-way can leave part of
//! it applied. Writes use write concern `majority` with `j: true`, so an
//! acknowledged write is journaled.
//!
//! When the server goes away calls fail with [`StoreError::Unavailable`](kala_store::StoreError::Unavailable)
//! (HTTP 503) after the server-selection timeout; the driver reconnects by
//! itself.
//!
//! Modules: `address` ([`MongoOptions`]), `error`, `codec` (BSON), `store`
//! ([`MongoStore`] and its queries).

mod address;
mod audit;
mod batch;
mod cluster;
mod codec;
mod error;
mod notices;
mod store;

pub use address::{MongoOptions, Transactions};
pub use store::MongoStore;

#[cfg(feature = "test-server")]
pub mod test_server;
