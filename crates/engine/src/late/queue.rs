//! The late records' queue: bounded, in memory, shared by the runner
//! (which pushes) and the late writer (which pops).
//!
//! Owns: [`Late`], [`LateRecord`]. Must not: import the engine's shared
//! state (`state.rs` holds a [`Late`]).

use std::collections::VecDeque;

use kala_job::RunRecord;
use kala_store::{Notice, RunDelta};

/// At most this many records wait; beyond, the oldest is dropped (and
/// counted in `kala_run_records_dropped_total`).
pub(crate) const LATE_MAX: usize = 10_000;

/// A run record that could not be written when its run ended.
#[derive(Debug, Clone)]
pub(crate) struct LateRecord {
    pub job_id: String,
    pub record: RunRecord,
    /// The run's journal entry, ended by the write.
    pub run_id: Option<String>,
    /// What the run adds to its job (the schedule point included).
    pub delta: RunDelta,
    pub notices: Vec<Notice>,
}

/// The queue of late records (a std mutex: never held across an await).
#[derive(Default)]
pub(crate) struct Late {
    queue: std::sync::Mutex<VecDeque<LateRecord>>,
    pub wake: tokio::sync::Notify,
}

impl Late {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LateRecord>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `r`; the oldest record when full (returned, to be counted).
    pub fn push(&self, r: LateRecord) -> Option<LateRecord> {
        let mut q = self.lock();
        let dropped = (q.len() >= LATE_MAX).then(|| q.pop_front()).flatten();
        q.push_back(r);
        dropped
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn front(&self) -> Option<LateRecord> {
        self.lock().front().cloned()
    }

    pub fn pop(&self) {
        self.lock().pop_front();
    }
}
