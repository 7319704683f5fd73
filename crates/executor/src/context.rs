//! [`RunContext`]: who a run is, told to its command (environment), its
//! request (headers) and its templates (`.Run`).

/// Who a run is, so that a job can be idempotent: the same for every
/// attempt of a run but `attempt`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunContext {
    pub job_id: String,
    pub job_name: String,
    /// Unique per run, the same for its retries (the run journal's id).
    pub run_id: String,
    /// The schedule point, for runs that came from the schedule.
    pub scheduled_at: Option<jiff::Timestamp>,
    /// 1 for the first attempt.
    pub attempt: u64,
    /// The instance that runs it.
    pub node: String,
}

impl RunContext {
    fn scheduled(&self) -> String {
        self.scheduled_at.map(|t| t.to_string()).unwrap_or_default()
    }

    /// `KALA_JOB_ID`, `KALA_JOB_NAME`, `KALA_RUN_ID`, `KALA_SCHEDULED_AT`
    /// (RFC 3339 UTC as in the run record; empty when not from the
    /// schedule), `KALA_ATTEMPT`, `KALA_NODE`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KALA_JOB_ID", self.job_id.clone()),
            ("KALA_JOB_NAME", self.job_name.clone()),
            (crate::orphans::RUN_ID_VAR, self.run_id.clone()),
            ("KALA_SCHEDULED_AT", self.scheduled()),
            ("KALA_ATTEMPT", self.attempt.to_string()),
            ("KALA_NODE", self.node.clone()),
        ]
    }

    /// `Kala-Job-Id`, `Kala-Run-Id`, `Kala-Scheduled-At` (only for a
    /// scheduled run), `Kala-Attempt`, `Kala-Node`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("Kala-Job-Id", self.job_id.clone()),
            ("Kala-Run-Id", self.run_id.clone()),
            ("Kala-Attempt", self.attempt.to_string()),
            ("Kala-Node", self.node.clone()),
        ];
        if self.scheduled_at.is_some() {
            h.push(("Kala-Scheduled-At", self.scheduled()));
        }
        h
    }
}
