//! # kala-store-consul
//!
//! A [`JobStore`](kala_store::JobStore) on Consul's KV store
//! (`--jobdb=consul`), through a thin typed client of the few HTTP
//! endpoints it needs (`client`).
//!
//! Layout, under a key prefix `P` (default `kala`, as Kala):
//!
//! | key | value |
//! |---|---|
//! | `P/jobs/<id>` | the job's JSON — kala's form; a job Kala wrote there (the job as Kala's API renders it) loads too |
//! | `P/runs/<id>/<ns, 31 digits>-<nonce>` | one run record; a job's runs are one key range in time order |
//! | `P/claims/<id>/<occurrence ns>` | `{"owner","expires_at"}`, taken with check-and-set |
//! | `P/open_runs/<run id>` | the run journal's entries |
//! | `P/staged/<batch>/<n>`, `P/committed/<batch>` | a batch larger than one transaction, on its way |
//!
//! Atomicity: a [`Batch`](kala_store::Batch) is one Consul transaction
//! (`/v1/txn`) when it fits one (64 operations, a few hundred KiB). A
//! larger one (a cascade delete of many children, a bulk load) is written
//! first as staged chunks, then made to count by one key (the commit
//! point), then applied and its staging removed; a crash before the commit
//! point leaves nothing, a crash after it is finished when the store
//! connects again. Reads in the process wait while a staged batch is
//! applied, so none sees half of one.
//!
//! Reads of jobs, claims and the journal are consistent (`?consistent`);
//! jobs are read in 16 slices by the first hex digit of their ids, never
//! in one answer. When Consul does not answer, calls fail with
//! [`StoreError::Unavailable`](kala_store::StoreError::Unavailable) (the
//! API answers 503); the next call tries again.
//!
//! Modules: `address` ([`ConsulOptions`]), `client` (HTTP), `store`
//! ([`ConsulStore`]), `test_server` (feature `test-server`: a dev agent on
//! free loopback ports).

mod address;
mod audit;
mod batch;
mod client;
mod cluster;
mod codec;
mod notices;
mod store;

#[cfg(feature = "test-server")]
pub mod test_server;

pub use address::ConsulOptions;
pub use store::ConsulStore;
