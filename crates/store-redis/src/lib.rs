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
//!
//! Every [`Batch`](kala_store::Batch) is one `MULTI … EXEC` transaction, so other clients see
//! all of it or none of it. A claim is one Lua script (read, compare,
//! write). Listing uses `HSCAN`, never `KEYS`.
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
mod error;
mod store;

pub use address::RedisOptions;
pub use store::RedisStore;
