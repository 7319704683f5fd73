//! Chains: what runs after a run — the job's children after a success, its
//! on-failure job after a failure — with the guard that stops cycles.
//!
//! Owns: [`follow_ups`], a pure choice of the next jobs.
//! Must not: run anything itself; the runner runs what this returns, in
//! order, each with the chain so far.

use kala_job::{Job, JobId, Trigger};

/// The jobs to run after `job` finished, with their trigger, skipping any
/// already in `chain` (the jobs run so far in this chain, `job` included).
pub(crate) fn follow_ups(job: &Job, success: bool, chain: &[JobId]) -> Vec<(JobId, Trigger)> {
    if success {
        job.children()
            .iter()
            .filter(|c| !chain.contains(c))
            .map(|c| (c.clone(), Trigger::Parent))
            .collect()
    } else if !job.on_failure_job.is_empty() && !chain.contains(&job.on_failure_job) {
        vec![(job.on_failure_job.clone(), Trigger::OnFailure)]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_after_success_on_failure_after_failure_and_no_cycles() {
        let mut j = Job::new("a", "true");
        j.id = "a".into();
        j.dependent_jobs = Some(vec!["b".into(), "c".into()]);
        j.on_failure_job = "f".into();
        let chain = vec!["x".into(), "c".into(), "a".into()];
        assert_eq!(
            follow_ups(&j, true, &chain),
            [("b".into(), Trigger::Parent)]
        );
        assert_eq!(
            follow_ups(&j, false, &chain),
            [("f".into(), Trigger::OnFailure)]
        );
        let chain = vec!["f".into(), "a".into()];
        assert!(follow_ups(&j, false, &chain).is_empty());
    }
}
