//! Pruning: every minute of the injected clock, run records beyond the
//! configured age or count are dropped from the store.
//!
//! Owns: the maintenance loop (started only when `run_ttl` is set).
//! Must not: touch jobs or the queue.

use jiff::SignedDuration;
use kala_store::Retention;

use crate::state::Inner;

impl Inner {
    pub async fn maintenance_loop(&self) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let wake = self.clock.now() + SignedDuration::from_mins(1);
            tokio::select! {
                _ = self.clock.sleep_until(wake) => {}
                _ = shutdown.changed() => return,
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
