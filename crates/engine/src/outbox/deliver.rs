//! The deliverer: reads the outbox every `poll` or when woken, sends the
//! due notices of the partitions this instance holds through
//! `kala_notify::Deliver` (bounded concurrency), and records each
//! attempt: delivered, retried after a doubling wait, or dropped. Emails
//! over a job's rate limit are held and sent as one summary when its
//! window ends. Done notices are pruned after `keep_done`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kala_job::JobId;
use kala_notify::{Deliver, DeliveryError};
use kala_store::{Batch, Notice, NoticeState};
use tokio::sync::Semaphore;

use crate::config::NotifySettings;
use crate::state::Inner;

use super::memory::{LOW_WATER, READ_LIMIT};

/// The wait after `attempts` failed attempts.
fn backoff(s: &NotifySettings, attempts: u32) -> SignedDuration {
    let shift = attempts.saturating_sub(1).min(30);
    s.first_backoff
        .checked_mul(1i32 << shift)
        .unwrap_or(s.max_backoff)
        .min(s.max_backoff)
}

/// `n` after one attempt that ended with `result` at `now`.
fn settle(
    s: &NotifySettings,
    mut n: Notice,
    result: &Result<(), DeliveryError>,
    done: NoticeState,
    now: Timestamp,
) -> Notice {
    n.attempts += 1;
    match result {
        Ok(()) => {
            n.state = done;
            n.done_at = Some(now);
        }
        Err(e) => {
            n.last_error = Some(e.message.clone());
            if e.permanent || n.attempts >= s.max_attempts {
                n.state = NoticeState::Dropped;
                n.done_at = Some(now);
            } else {
                n.next_attempt_at = now + backoff(s, n.attempts);
            }
        }
    }
    n
}

impl Inner {
    /// Is this instance the one to deliver notices of `job_id`?
    fn delivers(&self, held: Option<&HashSet<u32>>, job_id: &str) -> bool {
        held.is_none_or(|h| h.contains(&kala_store::partition_of(job_id)))
    }

    pub(crate) async fn outbox_loop(self: Arc<Self>) {
        let Some(deliver) = self.notify_settings().deliver.clone() else {
            return;
        };
        let slots = Arc::new(Semaphore::new(self.notify_settings().concurrency.max(1)));
        let mut shutdown = self.shutdown.subscribe();
        loop {
            self.outbox_round(&deliver, &slots).await;
            self.prune_notices().await;
            let wake = self.clock.now() + self.notify_settings().poll;
            tokio::select! {
                _ = self.clock.sleep_until(wake) => {}
                _ = self.outbox.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn prune_notices(&self) {
        let now = self.clock.now();
        {
            let mut o = self.outbox.lock();
            if o.last_prune
                .is_some_and(|t| now.duration_since(t) < SignedDuration::from_hours(1))
            {
                return;
            }
            o.last_prune = Some(now);
        }
        let before = now - self.notify_settings().keep_done;
        match self.store.prune_notices(before).await {
            Ok(n) if n > 0 => tracing::debug!(notices = n, "done notices pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning done notices failed"),
        }
    }

    /// One look at the outbox: every due notice this instance delivers is
    /// started (emails within their rate limit; held ones as summaries).
    async fn outbox_round(self: &Arc<Self>, deliver: &Arc<dyn Deliver>, slots: &Arc<Semaphore>) {
        let read_at = self.outbox.lock().epoch;
        let pending = match self.store.pending_notices(READ_LIMIT).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification outbox");
                return;
            }
        };
        self.metrics.notices_pending(pending.len());
        let full = pending.len() >= READ_LIMIT;
        let held: Option<HashSet<u32>> = self
            .cluster
            .as_ref()
            .map(|c| c.held_partitions().into_iter().collect());
        let s = self.notify_settings().clone();
        let now = self.clock.now();
        let mut singles = Vec::new();
        let mut summaries: HashMap<(JobId, String), Vec<Notice>> = HashMap::new();
        let mut to_hold = Vec::new();
        {
            let mut o = self.outbox.lock();
            // Writes before this read are in it; later ones are not.
            o.recent.retain(|_, e| *e > read_at);
            o.more = full;
            for n in pending {
                if n.next_attempt_at > now
                    || o.in_flight.contains(&n.id)
                    || o.recent.contains_key(&n.id)
                    || !self.delivers(held.as_ref(), &n.job_id)
                {
                    continue;
                }
                if n.target.email.is_empty() {
                    o.in_flight.insert(n.id.clone());
                    singles.push(n);
                    continue;
                }
                let key = (n.job_id.clone(), n.target.email.clone());
                if n.state == NoticeState::Held {
                    o.in_flight.insert(n.id.clone());
                    summaries.entry(key).or_default().push(n);
                    continue;
                }
                let w = o.windows.entry(key).or_insert((now, 0));
                if now >= w.0 + s.email_window {
                    *w = (now, 0);
                }
                if w.1 < s.email_burst {
                    w.1 += 1;
                    o.in_flight.insert(n.id.clone());
                    singles.push(n);
                } else {
                    let mut n = n;
                    n.state = NoticeState::Held;
                    n.next_attempt_at = w.0 + s.email_window;
                    to_hold.push(n);
                }
            }
            // A summary counts as one email of the window it starts.
            for key in summaries.keys() {
                let w = o.windows.entry(key.clone()).or_insert((now, 0));
                if now >= w.0 + s.email_window {
                    *w = (now, 0);
                }
                w.1 += 1;
            }
        }
        if !to_hold.is_empty() {
            let held_n = to_hold.len();
            if let Err(e) = self
                .store
                .apply(Batch {
                    notices: to_hold,
                    ..Batch::default()
                })
                .await
            {
                tracing::warn!(error = %e, "cannot hold notices over the email rate limit");
            } else {
                tracing::info!(
                    notices = held_n,
                    "emails over the rate limit held for a summary"
                );
            }
        }
        for n in singles {
            let (this, deliver, slots) = (self.clone(), deliver.clone(), slots.clone());
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let result = deliver.deliver(&n).await;
                this.settled(vec![n], result, NoticeState::Delivered).await;
            });
        }
        for (_, mut group) in summaries {
            group.sort_by_key(|n| n.run.ran_at);
            let (this, deliver, slots) = (self.clone(), deliver.clone(), slots.clone());
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let result = deliver.summarize(&group).await;
                this.settled(group, result, NoticeState::Summarized).await;
            });
        }
    }

    /// Stores how an attempt went for each of `notices` (one email or
    /// webhook, or the notices one summary stood for).
    async fn settled(
        &self,
        notices: Vec<Notice>,
        result: Result<(), DeliveryError>,
        done: NoticeState,
    ) {
        let now = self.clock.now();
        let s = self.notify_settings();
        let ids: Vec<String> = notices.iter().map(|n| n.id.clone()).collect();
        let updated: Vec<Notice> = notices
            .into_iter()
            .map(|n| settle(s, n, &result, done, now))
            .collect();
        for n in &updated {
            match n.state {
                NoticeState::Delivered | NoticeState::Summarized => {
                    self.metrics.notice_delivered(n.created_at, now);
                }
                NoticeState::Dropped => {
                    self.metrics.notice_dropped();
                    tracing::warn!(job = %n.job_id, notice = %n.id, event = n.event.as_str(),
                        attempts = n.attempts, error = n.last_error.as_deref().unwrap_or(""),
                        "notification dropped");
                }
                _ => {
                    self.metrics.notice_failed();
                    tracing::info!(job = %n.job_id, notice = %n.id, attempts = n.attempts,
                        next = %n.next_attempt_at, error = n.last_error.as_deref().unwrap_or(""),
                        "notification attempt failed; it is retried");
                }
            }
        }
        let retry_soon = updated
            .iter()
            .any(|n| n.is_pending() && n.next_attempt_at <= now + self.notify_settings().poll);
        if let Err(e) = self
            .store
            .apply(Batch {
                notices: updated,
                ..Batch::default()
            })
            .await
        {
            // Not recorded: the notice stays as it was and is sent again
            // (at least once).
            tracing::warn!(error = %e, "cannot record a notification's delivery; it will be sent again");
        }
        let refill = {
            let mut o = self.outbox.lock();
            o.epoch += 1;
            let epoch = o.epoch;
            for id in ids {
                o.in_flight.remove(&id);
                o.recent.insert(id, epoch);
            }
            let refill = o.more && o.in_flight.len() < LOW_WATER;
            if refill {
                o.more = false;
            }
            refill
        };
        if retry_soon || refill {
            self.outbox.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::make_notices;
    use kala_job::{Job, NotifyOn, NotifyTarget, RunRecord};

    #[test]
    fn backoff_doubles_to_its_cap() {
        let s = NotifySettings::default();
        let d: Vec<i64> = (1..=12).map(|a| backoff(&s, a).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn the_last_attempt_or_a_permanent_error_drops() {
        let s = NotifySettings {
            max_attempts: 2,
            ..NotifySettings::default()
        };
        let job = Job::new("j", "false");
        let run = RunRecord {
            job_id: job.id.clone(),
            ran_at: Timestamp::UNIX_EPOCH,
            scheduled_at: None,
            trigger: kala_job::Trigger::Manual,
            outcome: kala_job::Outcome::Failed,
            number_of_retries: 0,
            execution_duration: 0,
            exit_code: Some(1),
            error: None,
            output: String::new(),
            run_id: None,
            node: None,
        };
        let mut job = job;
        job.notify = vec![NotifyTarget::webhook("http://h", &[NotifyOn::Failure])];
        let with = NotifySettings {
            deliver: None,
            ..s.clone()
        };
        assert!(
            make_notices(
                &with,
                "n",
                &job,
                NotifyOn::Failure,
                &run,
                Timestamp::UNIX_EPOCH
            )
            .is_empty(),
            "no deliverer, no notices"
        );
        let n = Notice {
            id: "x".into(),
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            event: NotifyOn::Failure,
            target: job.notify[0].clone(),
            run,
            node: "n".into(),
            created_at: Timestamp::UNIX_EPOCH,
            state: NoticeState::Pending,
            attempts: 0,
            next_attempt_at: Timestamp::UNIX_EPOCH,
            last_error: None,
            done_at: None,
        };
        let now = Timestamp::UNIX_EPOCH + SignedDuration::from_secs(10);
        let once = settle(
            &s,
            n.clone(),
            &Err(DeliveryError::retry("HTTP 500")),
            NoticeState::Delivered,
            now,
        );
        assert_eq!(once.state, NoticeState::Pending);
        assert_eq!(once.next_attempt_at, now + SignedDuration::from_secs(1));
        let twice = settle(
            &s,
            once,
            &Err(DeliveryError::retry("HTTP 500")),
            NoticeState::Delivered,
            now,
        );
        assert_eq!(twice.state, NoticeState::Dropped, "attempts exhausted");
        let perm = settle(
            &s,
            n.clone(),
            &Err(DeliveryError::permanent("HTTP 404")),
            NoticeState::Delivered,
            now,
        );
        assert_eq!((perm.state, perm.attempts), (NoticeState::Dropped, 1));
        let ok = settle(&s, n, &Ok(()), NoticeState::Delivered, now);
        assert_eq!((ok.state, ok.done_at), (NoticeState::Delivered, Some(now)));
    }
}
