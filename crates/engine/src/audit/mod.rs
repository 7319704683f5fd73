//! The audit log's entries: `Inner` makes an entry of a change (put in
//! the change's own batch by the facade) and writes batches with their
//! entries; `Engine` records actions about no job and reads the log. The
//! types, the diff and the file sink are in `model.rs`.
//!
//! Owns: `Inner::audit_entry`, `Inner::apply_audited`,
//! `Inner::prune_audit`, `Engine::record_audit`, `Engine::audit_log`.

mod fields;
pub(crate) mod model;

use kala_job::Job;
use kala_store::{AuditDiff, AuditEntry, Batch, audit_id};
use serde_json::Value;

use crate::config::EngineError;
use crate::facade::Engine;
use crate::state::Inner;
use model::Actor;

impl Inner {
    /// An entry of `action` by `actor` about `job` (its id, name, owner),
    /// or `None` when the audit log is off (and `diff` is not computed).
    pub(crate) fn audit_entry(
        &self,
        actor: &Actor,
        action: &str,
        job: Option<&Job>,
        diff: impl FnOnce() -> AuditDiff,
    ) -> Option<AuditEntry> {
        if !self.config.audit.enabled {
            return None;
        }
        let at = self.clock.now();
        Some(AuditEntry {
            id: audit_id(at),
            at,
            actor: actor.name.clone(),
            source: actor.source.clone(),
            request_id: actor.request_id.clone(),
            action: action.into(),
            job_id: job.map(|j| j.id.clone()).unwrap_or_default(),
            job_name: job.map(|j| j.name.clone()).unwrap_or_default(),
            owner: job.map(|j| j.owner.clone()).unwrap_or_default(),
            node: self.config.node_id.clone(),
            diff: diff(),
        })
    }

    /// Writes `batch` and, once committed, its entries to the file sink.
    pub(crate) async fn apply_audited(&self, batch: Batch) -> Result<(), EngineError> {
        let entries =
            (self.audit_sink.is_on() && !batch.audit.is_empty()).then(|| batch.audit.clone());
        self.store.apply(batch).await?;
        if let Some(e) = entries {
            self.audit_sink.write(&e);
        }
        Ok(())
    }

    /// Hourly: entries older than the configured age go.
    pub(crate) async fn prune_audit(&self) {
        let Some(keep) = self.config.audit.keep else {
            return;
        };
        let Ok(before) = self.clock.now().checked_sub(keep) else {
            return;
        };
        match self.store.prune_audit(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(dropped = n, "old audit entries pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
        }
    }
}

impl Engine {
    /// Records an action that changes no job (a token reload, a refused
    /// request) with `detail` as its diff.
    pub async fn record_audit(
        &self,
        actor: &Actor,
        action: &str,
        detail: Value,
    ) -> Result<(), EngineError> {
        let Some(e) = self
            .inner
            .audit_entry(actor, action, None, || AuditDiff::from_value(&detail))
        else {
            return Ok(());
        };
        self.inner
            .apply_audited(Batch {
                audit: vec![e],
                ..Batch::default()
            })
            .await
    }

    /// Audit entries with ids before `before`, newest first, at most
    /// `limit`.
    pub async fn audit_log(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, EngineError> {
        Ok(self.inner.store.audit(before, limit).await?)
    }

    /// Whether changes are audited.
    pub fn audits(&self) -> bool {
        self.inner.config.audit.enabled
    }
}
