//! Kala's `R[n]/<start>/<interval>` repeating intervals.
//!
//! Occurrence k is computed from the start, never from the previous run:
//! `start + k × interval`, where the calendar part (years, months, weeks,
//! days) moves the wall-clock date in the schedule's zone — a day of month
//! that does not exist clamps to the month's last day — and the exact part
//! (hours, minutes, seconds) is added as elapsed time. Schedules never drift.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::ScheduleError;
use crate::duration::Duration;
use crate::start::{OffsetSpec, Start};
use crate::zone::{Zone, resolve_civil};

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
    // Derived once at parse time.
    first: Timestamp,
    base: DateTime,
    tz: TimeZone,
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
        Ok(IsoSchedule {
            repeat,
            start,
            interval,
            default_zone: default_zone.cloned(),
            first,
            base,
            tz,
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
        self.first
    }

    /// Total number of runs, `None` for forever.
    pub fn max_runs(&self) -> Option<u64> {
        match self.repeat {
            Repeat::Forever => None,
            Repeat::Times(n) => Some(n.saturating_add(1)),
        }
    }

    /// Occurrence `k` (0 = the start), or `None` past the repeat count or
    /// past the representable range.
    pub fn nth(&self, k: u64) -> Option<Timestamp> {
        if let Some(max) = self.max_runs()
            && k >= max
        {
            return None;
        }
        self.unbounded_nth(k)
    }

    fn unbounded_nth(&self, k: u64) -> Option<Timestamp> {
        if k == 0 {
            return Some(self.first);
        }
        let d = self.interval()?;
        let k = i64::try_from(k).ok()?;
        let exact = SignedDuration::from_secs(d.exact_seconds()?.checked_mul(k)?);
        if d.is_exact() {
            return self.first.checked_add(exact).ok();
        }
        let months = d.calendar_months()?.checked_mul(k)?;
        let days = d.calendar_days()?.checked_mul(k)?;
        let date = add_months_clamped(self.base.date(), months)?;
        let date = date
            .checked_add(jiff::Span::new().try_days(days).ok()?)
            .ok()?;
        let at = resolve_civil(&self.tz, date.to_datetime(self.base.time()))?;
        at.checked_add(exact).ok()
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.index_after(t).and_then(|k| self.nth(k))
    }

    /// The index of the first occurrence strictly after `t`, ignoring the
    /// repeat limit.
    pub fn index_after(&self, t: Timestamp) -> Option<u64> {
        if self.first > t {
            return Some(0);
        }
        // Only an R0 schedule lacks a usable interval: it has one point.
        let Some(d) = self.interval().filter(|d| !d.is_zero()) else {
            return Some(1);
        };
        let elapsed = t.as_nanosecond() - self.first.as_nanosecond();
        let mut k: u64 = if d.is_exact() {
            let step = i128::from(d.exact_seconds()?) * 1_000_000_000;
            u64::try_from(elapsed / step).ok()?
        } else {
            let est = (elapsed as f64 / 1e9) / d.approx_seconds();
            if !est.is_finite() || !(0.0..=1e18).contains(&est) {
                return None;
            }
            est as u64
        };
        // The estimate is close; walk to the exact answer. `None` from
        // unbounded_nth means "beyond the range", i.e. later than `t`.
        while k > 0 && self.unbounded_nth(k).is_none_or(|x| x > t) {
            k -= 1;
        }
        while self.unbounded_nth(k + 1).is_some_and(|x| x <= t) {
            k += 1;
        }
        Some(k + 1)
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

/// Moves `date` by `months`, clamping the day to the target month's length
/// (31 Jan + 1 month = 28/29 Feb).
fn add_months_clamped(date: Date, months: i64) -> Option<Date> {
    let index = i64::from(date.year()) * 12 + i64::from(date.month() - 1) + months;
    let year = i16::try_from(index.div_euclid(12)).ok()?;
    let month = (index.rem_euclid(12) + 1) as i8;
    let first = Date::new(year, month, 1).ok()?;
    let day = date.day().min(first.days_in_month());
    Date::new(year, month, day).ok()
}
