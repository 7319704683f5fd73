//! Kala's JSON, both ways.
//!
//! Output keeps Kala's key names and order (kala-api.md §2.1), renders
//! "never" as Go's zero time `0001-01-01T00:00:00Z`, and has exactly Kala's
//! keys: none of the README's spellings (strict clients reject unknown
//! keys), and kala's own fields only when a job uses them.
//!
//! Input follows Go's decoder: keys match case-insensitively (we also
//! ignore `_`, so README spellings work), unknown keys are ignored, `null`
//! keeps the default, and types are strict. Server-controlled keys (`id`,
//! `next_run_at`, `metadata`, `stats`, `is_done`, `dependent_jobs`) are
//! accepted and ignored. Errors name the field.
//!
//! Modules: `output` (what the server sends), `input` (what it reads),
//! `rendered` (what it sent, read back: for clients and for stores Kala wrote).

mod input;
mod output;
mod rendered;

pub use input::{job_from_json, job_from_value, notify_from_value};
pub use output::{AppStats, JobOut, MetadataOut, RemoteOut, StatOut, ZERO_TIME, ser_time};
pub use rendered::{job_from_rendered, parse_kala_time};
