//! The deliverer's memory, apart from its behaviour: `state.rs` holds an
//! [`Outbox`] and must not import the deliverer that uses it.
//!
//! Owns: [`Outbox`]. Must not: import the engine's shared state.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use jiff::Timestamp;
use kala_job::JobId;
use tokio::sync::Notify;

/// The deliverer's memory: what is being delivered now, and the email
/// rate limit's windows.
#[derive(Default)]
pub(crate) struct Outbox {
    /// Wakes the deliverer (a notice was written).
    pub wake: Notify,
    state: Mutex<OutboxState>,
}

#[derive(Default)]
pub(super) struct OutboxState {
    pub(super) in_flight: HashSet<String>,
    /// (job, address) → (window start, emails sent in it).
    pub(super) windows: HashMap<(JobId, String), (Timestamp, u32)>,
    pub(super) last_prune: Option<Timestamp>,
    /// Counts the deliveries recorded; `recent` maps a notice recorded
    /// to the count after its write. A round whose read of the outbox
    /// began before that write has a stale copy of it (still pending)
    /// and must not send it again.
    pub(super) epoch: u64,
    pub(super) recent: HashMap<String, u64>,
    /// The last read of the outbox was cut at [`READ_LIMIT`]: more are
    /// due, so the deliverer looks again as soon as few are in flight
    /// (not at the next poll).
    pub(super) more: bool,
}

/// Notices read from the outbox per look.
pub(super) const READ_LIMIT: usize = 2_000;
/// With more due, the deliverer looks again when fewer are in flight.
pub(super) const LOW_WATER: usize = READ_LIMIT / 4;

impl Outbox {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}
