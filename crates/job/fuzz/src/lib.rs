//! The whole create path of a job, as the server runs it on a POST body,
//! for the fuzz target and the slowest-input replay: JSON decode →
//! validation (plan: schedule, durations) → template check → the next
//! runs from the schedule.

use jiff::{SignedDuration, Timestamp};

/// Runs the create path on `body`; panics only on a broken invariant.
pub fn create_path(body: &[u8]) {
    let Ok(job) = kala_job::wire::job_from_json(body) else {
        return;
    };
    let now = Timestamp::from_second(1_900_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let Ok(plan) = job.validate(Some(now)) else {
        return;
    };
    let _ = kala_executor::template::check_job(&job);
    if let Some(cadence) = &plan.cadence {
        let mut t = now;
        for _ in 0..8 {
            match cadence.next_after(t) {
                Some(next) => {
                    assert!(next > t, "occurrences must increase: {next} after {t}");
                    t = next;
                }
                None => break,
            }
        }
        let _ = cadence.latest_at_or_before(now + SignedDuration::from_hours(24 * 365));
    }
}
