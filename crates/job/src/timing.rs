//! A job's timing: [`Timing`], the strings it is parsed from, and
//! [`Plan`], what they say (the schedule's arithmetic, epsilon, timeout,
//! retry delay), kept small for the timer.
//!
//! Owns: parsing and checking the timing fields. Must not: look at a job's
//! other fields (`Job::validate` does).

use jiff::SignedDuration;
use kala_schedule::{Cadence, Duration, Schedule, Zone};

use crate::JobError;
#[cfg(doc)]
use crate::{Job, packed};

/// The fields a job's [`Plan`] is parsed from, borrowed (from a [`Job`] or
/// from a packed one, see [`packed::View`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing<'a> {
    pub schedule: &'a str,
    pub time_zone: &'a str,
    pub epsilon: &'a str,
    pub timeout: &'a str,
    pub retry_delay: &'a str,
}

impl Timing<'_> {
    /// The zone, if one is named.
    pub fn zone(&self) -> Result<Option<Zone>, JobError> {
        if self.time_zone.is_empty() {
            return Ok(None);
        }
        Zone::get(self.time_zone)
            .map(Some)
            .map_err(|e| JobError::new("time_zone", e.to_string()))
    }

    /// The parsed schedule; `None` when there is none.
    pub fn parsed_schedule(&self) -> Result<Option<Schedule>, JobError> {
        if self.schedule.is_empty() {
            return Ok(None);
        }
        let zone = self.zone()?;
        Schedule::parse_in(self.schedule, zone.as_ref())
            .map(Some)
            .map_err(|e| JobError::new("schedule", e.to_string()))
    }

    /// See [`Job::plan`].
    pub fn plan(&self) -> Result<Plan, JobError> {
        self.zone()?;
        let timeout = exact_duration("timeout", self.timeout)?;
        if timeout.is_some_and(|t| t.is_negative()) {
            return Err(JobError::new(
                "timeout",
                format!("{:?} must not be negative", self.timeout),
            ));
        }
        Ok(Plan {
            cadence: self.parsed_schedule()?.map(|s| s.cadence()),
            epsilon: Secs::new(exact_duration("epsilon", self.epsilon)?),
            timeout: Secs::new(timeout),
            retry_delay: Secs::new(exact_duration("retry_delay", self.retry_delay)?),
        })
    }
}

/// A job's timing, parsed from its strings ([`Timing::plan`]) when the
/// engine needs it: at create and load, and once for each scheduled run
/// (the engine keeps jobs packed and no plan beside them).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The schedule's arithmetic; `None` for one-off jobs and children.
    pub cadence: Option<Cadence>,
    epsilon: Secs,
    timeout: Secs,
    retry_delay: Secs,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            cadence: None,
            epsilon: Secs::NONE,
            timeout: Secs::NONE,
            retry_delay: Secs::NONE,
        }
    }
}

impl Plan {
    /// How late a scheduled run may start (and keep retrying) before it
    /// is skipped; `None`: no limit.
    pub fn epsilon(&self) -> Option<SignedDuration> {
        self.epsilon.get()
    }

    /// Per attempt; `None`: no limit.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout
            .get()
            .and_then(|d| std::time::Duration::try_from(d).ok())
    }

    /// The first retry's delay (doubled each retry); `None`: at once.
    pub fn retry_delay(&self) -> Option<SignedDuration> {
        self.retry_delay.get()
    }
}

/// An optional whole number of seconds in 32 bits (the exact durations of
/// a job are whole seconds). `u32::MAX` is "none"; a negative value counts
/// as 0 and anything over ~136 years as ~136 years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Secs(u32);

impl Secs {
    const NONE: Secs = Secs(u32::MAX);

    fn new(d: Option<SignedDuration>) -> Secs {
        match d {
            None => Secs::NONE,
            Some(d) => Secs(
                u32::try_from(d.as_secs().max(0))
                    .unwrap_or(u32::MAX - 1)
                    .min(u32::MAX - 1),
            ),
        }
    }

    fn get(self) -> Option<SignedDuration> {
        (self != Secs::NONE).then(|| SignedDuration::from_secs(i64::from(self.0)))
    }
}

/// Parses an optional ISO 8601 duration that must be exact (no years or
/// months; weeks and days count as 7 × 24 h and 24 h).
fn exact_duration(field: &str, text: &str) -> Result<Option<SignedDuration>, JobError> {
    if text.is_empty() {
        return Ok(None);
    }
    let d = Duration::parse(text).map_err(|e| JobError::new(field, e.to_string()))?;
    if d.years != 0 || d.months != 0 {
        return Err(JobError::new(
            field,
            format!("{text:?}: years and months are not allowed here"),
        ));
    }
    let secs = d
        .calendar_days()
        .and_then(|days| days.checked_mul(86_400))
        .and_then(|s| s.checked_add(d.exact_seconds()?))
        .ok_or_else(|| JobError::new(field, format!("{text:?} is too long")))?;
    Ok(Some(SignedDuration::from_secs(secs)))
}
