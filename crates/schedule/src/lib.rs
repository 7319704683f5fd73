//! # kala-schedule
//!
//! Parses and evaluates the schedules of the Kala job scheduler, usable on
//! its own by any Rust program:
//!
//! * Kala's ISO 8601 repeating intervals `R[n]/<start>/<interval>`, with
//!   Kala's exact grammar (see [`Duration`] and [`Start`]): `R` repeats
//!   forever, `Rn` repeats n times after the first run (R0 = one run).
//! * Standard cron expressions (5 fields, or 6 with seconds first,
//!   `@daily` and friends), optionally prefixed `CRON_TZ=Area/City`.
//!
//! Occurrences are computed from the start (`start + k × interval`), so a
//! schedule never drifts. Years, months, weeks and days are calendar
//! arithmetic in the schedule's zone (day of month clamped to the month's
//! end); hours, minutes and seconds are exact. A start without an offset is
//! UTC unless a zone is given (`[Europe/Berlin]` after the start, or the
//! job's zone passed to [`Schedule::parse_in`]).
//!
//! DST contract: a wall-clock time skipped by a spring-forward runs at the
//! first instant after the gap; a wall-clock time repeated by a fall-back
//! runs once, at its first occurrence. (Cron entries whose hour or minute
//! field is a wildcard or step follow cron's usual rule: they run at every
//! matching real instant, so `*/15 * * * *` keeps ticking through both
//! passes of a repeated hour.)
//!
//! ```
//! use kala_schedule::Schedule;
//! let s: Schedule = "R2/2030-01-31T09:00:00Z/P1M".parse().unwrap();
//! let runs: Vec<String> = s.occurrences().map(|t| t.to_string()).collect();
//! assert_eq!(runs, ["2030-01-31T09:00:00Z", "2030-02-28T09:00:00Z", "2030-03-31T09:00:00Z"]);
//! ```

mod cadence;
mod cron;
mod duration;
mod iso;
mod start;
mod zone;

use std::fmt;

pub use crate::cadence::{Cadence, IsoCadence};
pub use crate::cron::CronSchedule;
pub use crate::duration::Duration;
pub use crate::iso::{Interval, IsoSchedule, Repeat};
pub use crate::start::{OffsetSpec, Start};
pub use crate::zone::{Zone, resolve_civil};
pub use jiff::Timestamp;

/// Every way a schedule string can be wrong. Each message names the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule {input:?} is not formatted correctly ({reason}); it should look like R/2014-03-08T20:00:00Z/PT2H or a cron expression like \"0 9 * * 1-5\""
    )]
    Format { input: String, reason: String },
    #[error("repeat {input:?}: {reason}")]
    Repeat { input: String, reason: String },
    #[error("start {input:?}: {reason}")]
    Start { input: String, reason: String },
    #[error("interval {input:?}: {reason}")]
    Duration { input: String, reason: String },
    #[error("time zone {input:?}: {reason}")]
    Zone { input: String, reason: String },
    #[error("cron {input:?}: {reason}")]
    Cron { input: String, reason: String },
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Iso(IsoSchedule),
    /// Boxed: croner's parsed expression is ~400 bytes, and a job's
    /// plan holds one schedule for as long as the job exists.
    Cron(Box<CronSchedule>),
}

impl Schedule {
    /// Parses a schedule; a zoneless start is UTC.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        Schedule::parse_in(text, None)
    }

    /// Parses a schedule whose zoneless start (or cron expression without
    /// `CRON_TZ=`) is read in `zone`.
    pub fn parse_in(text: &str, zone: Option<&Zone>) -> Result<Schedule, ScheduleError> {
        if text.trim().is_empty() {
            return Err(ScheduleError::Format {
                input: text.to_string(),
                reason: "empty".into(),
            });
        }
        let looks_like_cron = text.starts_with('@')
            || text.starts_with("CRON_TZ=")
            || text.starts_with("TZ=")
            || text.trim().contains(char::is_whitespace);
        if looks_like_cron {
            CronSchedule::parse(text, zone).map(|c| Schedule::Cron(Box::new(c)))
        } else {
            IsoSchedule::parse(text, zone).map(Schedule::Iso)
        }
    }

    /// The first occurrence strictly after `t`, or `None` when the schedule
    /// has no more.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Iso(s) => s.next_after(t),
            Schedule::Cron(s) => s.next_after(t),
        }
    }

    /// The arithmetic alone, for a scheduler to keep per job instead of
    /// the whole parsed schedule.
    pub fn cadence(&self) -> Cadence {
        match self {
            Schedule::Iso(s) => Cadence::Iso(s.cadence().clone()),
            Schedule::Cron(c) => Cadence::Cron(c.clone()),
        }
    }

    /// The first occurrence at or after `t`.
    pub fn next_at_or_after(&self, t: Timestamp) -> Option<Timestamp> {
        let just_before = t.checked_sub(jiff::SignedDuration::from_nanos(1)).ok()?;
        self.next_after(just_before)
    }

    /// The latest occurrence at or before `t` (the run a catch-up after
    /// downtime stands for), or `None` if the first is later than `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Iso(s) => s.cadence().latest_at_or_before(t),
            Schedule::Cron(c) => c.latest_at_or_before(t),
        }
    }

    /// The start of an ISO schedule (its first run); `None` for cron.
    pub fn start(&self) -> Option<Timestamp> {
        match self {
            Schedule::Iso(s) => Some(s.first()),
            Schedule::Cron(_) => None,
        }
    }

    /// Total runs allowed (`Rn` → n + 1), `None` for unbounded.
    pub fn max_runs(&self) -> Option<u64> {
        match self {
            Schedule::Iso(s) => s.max_runs(),
            Schedule::Cron(_) => None,
        }
    }

    /// Every occurrence from the first (ISO) or from now (cron), in order.
    pub fn occurrences(&self) -> Occurrences<'_> {
        match self {
            Schedule::Iso(s) => Occurrences {
                schedule: self,
                next: Some(s.first()),
            },
            Schedule::Cron(_) => self.occurrences_after(Timestamp::now()),
        }
    }

    /// Every occurrence strictly after `t`, in order.
    pub fn occurrences_after(&self, t: Timestamp) -> Occurrences<'_> {
        Occurrences {
            schedule: self,
            next: self.next_after(t),
        }
    }

    /// A short description in words, e.g. "every 10 seconds, 3 times".
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron(c) => c.describe(),
            Schedule::Iso(s) => {
                let every = match s.interval() {
                    Some(d) => describe_duration(d),
                    None => String::new(),
                };
                let start = s.start();
                match s.repeat() {
                    Repeat::Times(0) => format!("once at {start}"),
                    Repeat::Times(n) => format!("every {every} from {start}, {} runs", n + 1),
                    Repeat::Forever => format!("every {every} from {start}"),
                }
            }
        }
    }
}

fn describe_duration(d: &Duration) -> String {
    let mut parts = Vec::new();
    for (v, unit) in [
        (d.years, "year"),
        (d.months, "month"),
        (d.weeks, "week"),
        (d.days, "day"),
        (d.hours, "hour"),
        (d.minutes, "minute"),
        (d.seconds, "second"),
    ] {
        match v {
            0 => {}
            1 => parts.push(format!("1 {unit}")),
            n => parts.push(format!("{n} {unit}s")),
        }
    }
    parts.join(" ")
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Iso(s) => s.fmt(f),
            Schedule::Cron(s) => s.fmt(f),
        }
    }
}

/// Iterator over a schedule's occurrences.
pub struct Occurrences<'a> {
    schedule: &'a Schedule,
    next: Option<Timestamp>,
}

impl Iterator for Occurrences<'_> {
    type Item = Timestamp;
    fn next(&mut self) -> Option<Timestamp> {
        let cur = self.next?;
        self.next = self.schedule.next_after(cur);
        Some(cur)
    }
}

#[cfg(test)]
mod tests;
