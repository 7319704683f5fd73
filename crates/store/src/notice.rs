//! The notification outbox: a [`Notice`] is written in the batch of the
//! run record (or failed attempt) that causes it, so that a run that is
//! stored is also a notification that will be delivered, across crashes.
//! The deliverer updates it (attempts, next try, outcome) by writing it
//! again with the same id.

use jiff::Timestamp;
use kala_job::{JobId, NotifyOn, NotifyTarget, RunRecord};
use serde::{Deserialize, Serialize};

/// Where a notice is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeState {
    /// Waiting for its (next) attempt at `next_attempt_at`.
    Pending,
    /// An email over the job's rate limit, held for the summary sent at
    /// `next_attempt_at`.
    Held,
    Delivered,
    /// Delivered as part of a summary email (rate limit).
    Summarized,
    /// Given up after its last retry (or undeliverable).
    Dropped,
}

impl NoticeState {
    /// Still to be delivered.
    pub fn is_pending(self) -> bool {
        matches!(self, NoticeState::Pending | NoticeState::Held)
    }
}

/// One notification of one event to one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Unique (a UUID).
    pub id: String,
    pub job_id: JobId,
    pub job_name: String,
    pub event: NotifyOn,
    pub target: NotifyTarget,
    /// The run it is about (for `retry`: the failed attempt so far).
    pub run: RunRecord,
    /// The instance that ran it.
    pub node: String,
    pub created_at: Timestamp,
    pub state: NoticeState,
    /// Delivery attempts made.
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was delivered, summarized or dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<Timestamp>,
}

impl Notice {
    pub fn is_pending(&self) -> bool {
        self.state.is_pending()
    }
}

/// The `limit` soonest of `notices` (for backends that read every pending
/// notice and order them in memory).
pub fn soonest(mut notices: Vec<Notice>, limit: usize) -> Vec<Notice> {
    notices.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
    notices.truncate(limit);
    notices
}

/// Oldest first (by creation, then id): the order of [`crate::JobStore::notices`].
pub fn oldest_first(notices: &mut [Notice]) {
    notices.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}
