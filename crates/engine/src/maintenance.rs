//! Pruning: every minute of the injected clock, run records beyond the
//! configured age or count are dropped from the store; at start and every
//! hour, audit entries older than their retention.
//!
//! Owns: the maintenance loop (started when `run_ttl` or the audit
//! retention is set).
//! Must not: touch jobs or the queue.

use jiff::SignedDuration;
use kala_store::Retention;

use crate::state::Inner;

impl Inner {
    pub async fn maintenance_loop(&self) {
        let mut shutdown = self.shutdown.subscribe();
        let mut minutes = 0u64;
        self.prune_audit().await;
        loop {
            let wake = self.clock.now() + SignedDuration::from_mins(1);
            tokio::select! {
                _ = self.clock.sleep_until(wake) => {}
                _ = shutdown.changed() => return,
            }
            minutes += 1;
            if minutes.is_multiple_of(60) {
                self.prune_audit().await;
            }
            if self.config.run_ttl.is_none() {
                continue;
            }
            let retention = Retention {
                max_per_job: self.config.keep_runs,
                max_age: self.config.run_ttl,
            };
            if let Err(e) = self.store.prune_runs(retention, self.clock.now()).await {
                tracing::warn!(error = %e, "pruning run records failed");
            }
        }
    }
}
