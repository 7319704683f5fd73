//! Notifications: the notices a run causes, made beside its record (and
//! written in the same batch: the outbox), and the deliverer that sends
//! them, at least once, across restarts.
//!
//! Owns: [`make_notices`], the notices of retries,
//! a job's targets (`Engine::set_notify`, checked by `check_notify`);
//! `deliver`: the deliverer loop (its retries with backoff, the email rate
//! limit with its summaries, the pruning of done notices). Must not: speak
//! HTTP or SMTP (that is `kala_notify::Deliver`'s).
//!
//! In a cluster, an instance delivers the notices of the jobs whose
//! partition it holds, so each is delivered by one instance (twice at
//! most, when a partition changes hands mid-delivery: at least once).

use jiff::Timestamp;
use kala_job::{Job, NotifyOn, NotifyTarget, RunRecord};
use kala_store::{Batch, Notice, NoticeState};

use crate::config::NotifySettings;
use crate::state::Inner;

/// The notices `run` (an event of `job`) causes: one per target (the
/// job's, then the defaults not already among them) that wants `event`.
pub(crate) fn make_notices(
    settings: &NotifySettings,
    node: &str,
    job: &Job,
    event: NotifyOn,
    run: &RunRecord,
    now: Timestamp,
) -> Vec<Notice> {
    if settings.deliver.is_none() {
        return Vec::new();
    }
    let own = job.notify.iter();
    let defaults = settings.defaults.iter().filter(|d| {
        !job.notify
            .iter()
            .any(|t| t.webhook == d.webhook && t.email == d.email)
    });
    own.chain(defaults)
        .filter(|t| t.wants(event))
        .map(|t| Notice {
            id: uuid::Uuid::new_v4().to_string(),
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            event,
            target: t.clone(),
            run: run.clone(),
            node: node.to_string(),
            created_at: now,
            state: NoticeState::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            done_at: None,
        })
        .collect()
}

impl crate::Engine {
    /// Replaces a job's notification targets (validated like at
    /// creation). Runs that already happened keep their notices.
    pub async fn set_notify(
        &self,
        id: &str,
        targets: Vec<NotifyTarget>,
    ) -> Result<(), crate::EngineError> {
        self.set_notify_as(id, targets, &crate::audit::model::Actor::engine())
            .await
    }

    /// [`crate::Engine::set_notify`] by `actor` (in the audit log).
    pub async fn set_notify_as(
        &self,
        id: &str,
        targets: Vec<NotifyTarget>,
        actor: &crate::audit::model::Actor,
    ) -> Result<(), crate::EngineError> {
        let inner = &self.inner;
        kala_job::notify::validate_targets("notify", &targets)?;
        let _stripe = inner.lock_stripes(&[id]).await;
        let mut job = inner
            .lock()
            .job(id)
            .ok_or_else(|| crate::EngineError::NotFound(id.to_string()))?;
        let before = job.clone();
        job.notify.clone_from(&targets);
        inner.check_notify(&job)?;
        let audit: Vec<_> = inner
            .audit_entry(actor, "notify", Some(&job), || {
                crate::audit::model::diff(Some(&before), Some(&job))
            })
            .into_iter()
            .collect();
        let batch = if inner.cluster.is_some() {
            Batch {
                update: vec![kala_store::JobUpdate {
                    job_id: id.to_string(),
                    change: kala_store::JobChange::Notify(targets.clone()),
                }],
                audit,
                ..Batch::default()
            }
        } else {
            Batch {
                put: vec![job],
                audit,
                ..Batch::default()
            }
        };
        inner.apply_audited(batch).await?;
        inner
            .lock()
            .update(id, |cur| cur.notify = targets)
            .ok_or_else(|| crate::EngineError::NotFound(id.to_string()))
    }

    /// The stored notifications of a job, oldest first (delivered and
    /// dropped ones are kept for `keep_done`).
    pub async fn notices(&self, job_id: &str) -> Result<Vec<Notice>, crate::EngineError> {
        Ok(self.inner.store.notices(job_id).await?)
    }
}

impl Inner {
    /// A job's targets can be delivered by this engine: it has a
    /// deliverer, and one that sends email when a target is an address.
    pub(crate) fn check_notify(&self, job: &Job) -> Result<(), kala_job::JobError> {
        if job.notify.is_empty() {
            return Ok(());
        }
        let Some(deliver) = &self.notify_settings().deliver else {
            return Err(kala_job::JobError::new(
                "notify",
                "this engine has no notifier configured, so notifications cannot be delivered",
            ));
        };
        if !deliver.can_email()
            && let Some(i) = job.notify.iter().position(|t| !t.email.is_empty())
        {
            return Err(kala_job::JobError::new(
                format!("notify[{i}].email"),
                "this server has no SMTP server configured (--smtp-url), so email cannot be delivered",
            ));
        }
        Ok(())
    }

    /// A publish job names a broker this engine's executor has (the
    /// server's `--broker NAME=URL`): an unknown name is refused at
    /// creation, naming it and the known ones.
    pub(crate) fn check_publish(&self, job: &Job) -> Result<(), kala_job::JobError> {
        let Some(p) = &job.publish else {
            return Ok(());
        };
        let publisher = self.executor.publisher();
        if publisher.as_ref().is_some_and(|x| x.has(&p.broker)) {
            return Ok(());
        }
        let known = publisher.map(|x| x.names()).unwrap_or_default();
        Err(kala_job::JobError::new(
            "publish.broker",
            if known.is_empty() {
                format!(
                    "no broker named {:?}: this server has no brokers (start it with --broker {}=URL)",
                    p.broker, p.broker
                )
            } else {
                format!(
                    "no broker named {:?} (this server has: {})",
                    p.broker,
                    known.join(", ")
                )
            },
        ))
    }

    pub(crate) fn notify_settings(&self) -> &NotifySettings {
        &self.config.notify
    }

    /// The notices of `event` for job `id` as memory holds it (none when
    /// the job is gone).
    pub(crate) fn notices_of_run(&self, id: &str, event: NotifyOn, run: &RunRecord) -> Vec<Notice> {
        if self.notify_settings().deliver.is_none() {
            return Vec::new();
        }
        let job = self.lock().job(id);
        match job {
            Some(job) => make_notices(
                self.notify_settings(),
                &self.config.node_id,
                &job,
                event,
                run,
                self.clock.now(),
            ),
            None => Vec::new(),
        }
    }

    /// Stores the `retry` notices of a failed attempt that is retried
    /// (their own batch: the run has no record yet).
    pub(crate) async fn notify_retry(&self, id: &str, so_far: &RunRecord) {
        let notices = self.notices_of_run(id, NotifyOn::Retry, so_far);
        if notices.is_empty() {
            return;
        }
        match self
            .store
            .apply(Batch {
                notices,
                ..Batch::default()
            })
            .await
        {
            Ok(()) => self.outbox.wake.notify_one(),
            Err(e) => {
                self.metrics.store_error();
                tracing::warn!(job = %id, error = %e, "cannot store the retry's notifications; they are not sent");
            }
        }
    }
}

mod deliver;
pub(crate) mod memory;
