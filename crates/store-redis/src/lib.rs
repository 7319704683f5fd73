//! # kala-store-redis
//!
//! A [`JobStore`](kala_store::JobStore) on Redis (`--jobdb=redis`).
//!
//! Layout, under a key prefix `P` (default `kala`, so jobs sit in Kala's
//! own `kala:jobs` hash — with JSON values, not Kala's gob):
//!
//! | key | type | content |
//! |---|---|---|
//! | `P:jobs` | hash | job id → job JSON |
//! | `P:runs:<id>` | sorted set | one member per run record; score = start time in µs, member = a fixed-width nanosecond key + nonce + the record's JSON, so ties sort by nanosecond |
//! | `P:runjobs` | set | ids that have a `P:runs:<id>` key (so nothing needs `KEYS`/`SCAN` over the keyspace) |
//! | `P:claims` | hash | `<id>\|<occurrence ns>` → `<expiry ns, 31 digits>\|<owner>` |
//! | `P:open_runs` | hash | run id → journal entry JSON |
//! | `P:nodes` | hash | instance name → its heartbeat (cluster) |
//! | `P:leases` | hash | partition → `token\|expiry ns\|owner` (cluster) |
//! | `P:changes`, `P:changeseq` | sorted set, counter | `seq\|time ns\|job id` scored by sequence: jobs whose definition changed; `P:changed` is the pub/sub channel that wakes the other instances |
//!
//! Every [`Batch`](kala_store::Batch) is one Lua script, so other clients see
//! all of it or none of it, and its guards (a lease's fencing token, the
//! stored bytes of each job it changes in place) are checked in the same
//! atomic step; a job changed meanwhile is read again and the batch
//! retried. A claim and a lease round are one script each. Listing uses
//! `HSCAN`, never `KEYS`.
//!
//! Durability is Redis's: an acknowledged write is in Redis's memory and
//! reaches disk per its `appendonly`/`appendfsync` settings. Run Redis with
//! `appendonly yes` and `appendfsync always` for kala's "no acknowledged
//! change is lost" promise to survive a Redis crash.
//!
//! The connection is a [`ConnectionManager`](redis::aio::ConnectionManager): when Redis goes away, calls
//! fail with [`StoreError::Unavailable`](kala_store::StoreError::Unavailable) (the API answers 503) and the
//! manager reconnects by itself when Redis is back.
//!
//! Modules: `address` ([`RedisOptions`]), `error`, `store` ([`RedisStore`]
//! and its commands).

mod address;
mod audit;
mod batch;
mod changes;
mod cluster;
mod error;
mod keys;
mod notices;
mod scripts;
mod store;

pub use address::RedisOptions;
pub use store::RedisStore;
