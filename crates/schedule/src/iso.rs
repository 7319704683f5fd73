//! Kala's `R[n]/<start>/<interval>` repeating intervals.
//!
//! Occurrence k is computed from the start, never from the previous run:
//! `start + k × interval`, where the calendar part (years, months, weeks,
//! days) moves the wall-clock date in the schedule's zone — a day of month
//! that does not exist clamps to the month's last day — and the exact part
//! (hours, minutes, seconds) is added as elapsed time. Schedules never drift.

use std::fmt;

use jiff::Timestamp;

use crate::ScheduleError;
use crate::cadence::IsoCadence;
use crate::duration::Duration;
use crate::start::{OffsetSpec, Start};
use crate::zone::Zone;

/// How often a schedule repeats after its first run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repeat {
    /// `R` (or `R-1`): forever.
    Forever,
    /// `Rn`: n repeats after the first run, so n + 1 runs in all.
    Times(u64),
}

/// The interval part. With `R0` Kala ignores it entirely, so any text is
/// kept verbatim for display.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interval {
    Every(Duration),
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IsoSchedule {
    repeat: Repeat,
    start: Start,
    interval: Interval,
    /// The zone a zoneless start is read in (the job's zone), if any.
    default_zone: Option<Zone>,
    /// The arithmetic, derived once at parse time.
    cadence: IsoCadence,
}

impl IsoSchedule {
    pub fn parse(text: &str, default_zone: Option<&Zone>) -> Result<IsoSchedule, ScheduleError> {
        let format = |reason: &str| ScheduleError::Format {
            input: text.to_string(),
            reason: reason.to_string(),
        };
        // Three parts: repeat / start / interval. A zone annotation in the
        // start (`[Europe/Berlin]`) may itself contain '/'.
        let parts: Vec<&str> = match text.split_once('/') {
            Some((repeat, rest)) => match rest.rsplit_once('/') {
                Some((start, interval)) => vec![repeat, start, interval],
                None => vec![repeat, rest],
            },
            None => vec![text],
        };
        let outside_annotation = |s: &str| match s.find('[') {
            Some(i) => s[..i].contains('/') || s[s.rfind(']').unwrap_or(s.len())..].contains('/'),
            None => s.contains('/'),
        };
        if parts.len() != 3 || outside_annotation(parts[1]) {
            return Err(format("expected three parts separated by '/'"));
        }
        let repeat = parse_repeat(parts[0])?;
        let start = Start::parse(parts[1])?;
        let interval = match repeat {
            Repeat::Times(0) => match Duration::parse(parts[2]) {
                Ok(d) if !d.is_zero() && parts[2] == d.to_string() => Interval::Every(d),
                _ => Interval::Ignored(parts[2].to_string()),
            },
            _ => {
                let d = Duration::parse(parts[2])?;
                if d.is_zero() {
                    return Err(ScheduleError::Duration {
                        input: parts[2].to_string(),
                        reason: "a repeating schedule needs a non-zero interval".into(),
                    });
                }
                Interval::Every(d)
            }
        };
        let first = start.timestamp(default_zone)?;
        let tz = start.arithmetic_zone(default_zone);
        // The wall-clock time the calendar part repeats: as written when the
        // start is local to the arithmetic zone, else the start's instant
        // seen in that zone.
        let base = if start.offset == OffsetSpec::None {
            start.civil
        } else {
            first.to_zoned(tz.clone()).datetime()
        };
        let max_runs = match repeat {
            Repeat::Forever => None,
            Repeat::Times(n) => Some(n.saturating_add(1)),
        };
        let every = match &interval {
            Interval::Every(d) => Some(d),
            Interval::Ignored(_) => None,
        };
        let cadence = IsoCadence::new(first, max_runs, every, base, &tz);
        Ok(IsoSchedule {
            repeat,
            start,
            interval,
            default_zone: default_zone.cloned(),
            cadence,
        })
    }

    pub fn repeat(&self) -> Repeat {
        self.repeat
    }

    pub fn start(&self) -> &Start {
        &self.start
    }

    pub fn interval(&self) -> Option<&Duration> {
        match &self.interval {
            Interval::Every(d) => Some(d),
            Interval::Ignored(_) => None,
        }
    }

    /// The first run: the start instant.
    pub fn first(&self) -> Timestamp {
        self.cadence.first()
    }

    /// Total runs allowed (`Rn` → n + 1), `None` for unbounded.
    pub fn max_runs(&self) -> Option<u64> {
        self.cadence.max_runs()
    }

    /// Occurrence `k` (0 = the first), or `None` past the last.
    pub fn nth(&self, k: u64) -> Option<Timestamp> {
        self.cadence.nth(k)
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cadence.next_after(t)
    }

    /// The index of the first occurrence strictly after `t`, ignoring the
    /// repeat count.
    pub fn index_after(&self, t: Timestamp) -> Option<u64> {
        self.cadence.index_after(t)
    }

    /// The arithmetic alone (what a scheduler keeps per job).
    pub fn cadence(&self) -> &IsoCadence {
        &self.cadence
    }
}

impl fmt::Display for IsoSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repeat {
            Repeat::Forever => f.write_str("R")?,
            Repeat::Times(n) => write!(f, "R{n}")?,
        }
        write!(f, "/{}/", self.start)?;
        match &self.interval {
            Interval::Every(d) => write!(f, "{d}"),
            Interval::Ignored(s) => f.write_str(s),
        }
    }
}

fn parse_repeat(text: &str) -> Result<Repeat, ScheduleError> {
    let err = |reason: &str| ScheduleError::Repeat {
        input: text.to_string(),
        reason: reason.to_string(),
    };
    let rest = text
        .strip_prefix('R')
        .ok_or_else(|| err("must start with 'R' (R = forever, Rn = n repeats)"))?;
    if rest.is_empty() {
        return Ok(Repeat::Forever);
    }
    let digits = rest.strip_prefix('+').unwrap_or(rest);
    if digits == "-1" {
        return Ok(Repeat::Forever);
    }
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err("the count after 'R' must be a whole number"));
    }
    digits
        .parse::<u64>()
        .map(Repeat::Times)
        .map_err(|_| err("repeat count too large"))
}
