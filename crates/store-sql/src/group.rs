//! Group commit's queue: batches applied while others are being written
//! wait here, and the next free writer takes them all into one
//! transaction (see `SqlStore::apply`); job reads likewise become one
//! statement (`SqlStore::get`).
//!
//! Owns: [`Queue`] (the waiting items and how many workers drain it),
//! [`Write`], [`Lookup`]. Must not: touch the database; the store's
//! workers do.
//!
//! Why: on a cluster every run is two batches (its journal entry, then
//! its record), each a transaction of several round trips and a WAL
//! flush. Written one by one they bound a PostgreSQL cluster at about
//! 1,150 runs/s on two cores; taken together, a group pays the round
//! trips and the flush once.

use std::collections::VecDeque;
use std::sync::Mutex;

use kala_store::Result;
use tokio::sync::oneshot;

use crate::batch::EncodedBatch;

/// Workers (statements or transactions at once) per queue. Each holds
/// one pooled connection while it works; the rest of the pool serves
/// everything else.
pub(crate) const WORKERS: usize = 4;

/// The most items folded into one statement or transaction.
pub(crate) const MAX_GROUP: usize = 512;

/// A batch waiting for a writer, and where its outcome goes.
pub(crate) struct Write {
    pub batch: EncodedBatch,
    pub reply: oneshot::Sender<Result<()>>,
}

/// A job read waiting for a reader (`JobStore::get`): the reads waiting
/// together become one `SELECT … WHERE id IN (…)`.
pub(crate) struct Lookup {
    pub id: String,
    pub reply: oneshot::Sender<Result<Option<kala_job::Job>>>,
}

struct State<T> {
    waiting: VecDeque<T>,
    /// Workers draining the queue now (at most [`WORKERS`]).
    workers: usize,
}

/// Items waiting for a worker.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                workers: 0,
            }),
        }
    }
}

impl<T> Queue<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // Nothing panics while holding it; a poisoned lock still holds
        // consistent data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `item`; `true` when the caller must start a worker (fewer
    /// than [`WORKERS`] are draining), which then calls [`Queue::take`]
    /// until it answers `None`.
    pub(crate) fn push(&self, item: T) -> bool {
        let mut s = self.state();
        s.waiting.push_back(item);
        if s.workers < WORKERS {
            s.workers += 1;
            true
        } else {
            false
        }
    }

    /// The next group: the oldest item and every later one that goes
    /// `together` with it (up to [`MAX_GROUP`]), in arrival order; the
    /// others keep their places. `None` when nothing waits: the worker
    /// then stops (counted out under the same lock, so an item pushed
    /// meanwhile starts a new worker).
    pub(crate) fn take(&self, together: impl Fn(&T, &T) -> bool) -> Option<Vec<T>> {
        let mut s = self.state();
        let Some(first) = s.waiting.pop_front() else {
            s.workers -= 1;
            return None;
        };
        let mut group = Vec::new();
        let mut rest = VecDeque::new();
        while let Some(item) = s.waiting.pop_front() {
            if group.len() + 1 < MAX_GROUP && together(&first, &item) {
                group.push(item);
            } else {
                rest.push_back(item);
            }
        }
        group.insert(0, first);
        s.waiting = rest;
        Some(group)
    }

    /// A worker that ended without [`Queue::take`] answering `None` (it
    /// panicked): counted out, so the queue is drained again.
    fn worker_lost(&self) {
        let mut s = self.state();
        s.workers = s.workers.saturating_sub(1);
    }
}

/// Counts its worker out of the queue if the worker's task ends by a
/// panic (normally [`Queue::take`] does it).
pub(crate) struct WorkerGuard<'a, T> {
    pub queue: &'a Queue<T>,
    pub done: bool,
}

impl<T> Drop for WorkerGuard<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.queue.worker_lost();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(keep: Option<usize>) -> (Write, oneshot::Receiver<Result<()>>) {
        let (reply, rx) = oneshot::channel();
        let batch = EncodedBatch {
            keep_runs: keep,
            ..EncodedBatch::default()
        };
        (Write { batch, reply }, rx)
    }

    fn same_keep(a: &Write, b: &Write) -> bool {
        a.batch.keep_runs == b.batch.keep_runs
    }

    #[test]
    fn workers_are_bounded_and_counted_out_when_the_queue_is_empty() {
        let q = Queue::default();
        let mut started = 0;
        let mut rxs = Vec::new();
        for _ in 0..10 {
            let (p, rx) = pending(Some(5));
            rxs.push(rx);
            if q.push(p) {
                started += 1;
            }
        }
        assert_eq!(started, WORKERS);
        let group = q.take(same_keep).unwrap();
        assert_eq!(group.len(), 10, "one worker takes everything waiting");
        for _ in 0..WORKERS {
            assert!(q.take(same_keep).is_none());
        }
        // Every worker stopped: the next batch starts one again.
        let (p, _rx) = pending(None);
        assert!(q.push(p));
    }

    #[test]
    fn a_group_shares_one_keep_runs_and_the_others_keep_their_order() {
        let q = Queue::default();
        let mut rxs = Vec::new();
        for keep in [Some(5), None, Some(5), Some(7), None] {
            let (p, rx) = pending(keep);
            rxs.push(rx);
            q.push(p);
        }
        let keeps = |g: Vec<Write>| g.iter().map(|p| p.batch.keep_runs).collect::<Vec<_>>();
        assert_eq!(keeps(q.take(same_keep).unwrap()), [Some(5), Some(5)]);
        assert_eq!(keeps(q.take(same_keep).unwrap()), [None, None]);
        assert_eq!(keeps(q.take(same_keep).unwrap()), [Some(7)]);
    }

    #[test]
    fn a_lost_worker_is_counted_out() {
        let q = Queue::default();
        let (p, _rx) = pending(None);
        assert!(q.push(p));
        {
            let _guard = WorkerGuard {
                queue: &q,
                done: false,
            };
        }
        // The lost worker's slot is free again.
        let mut rxs = Vec::new();
        for _ in 0..WORKERS - 1 {
            let (p, rx) = pending(None);
            rxs.push(rx);
            q.push(p);
        }
        let (p, _rx) = pending(None);
        assert!(q.push(p), "the lost worker's slot was given back");
    }
}
