//! The arithmetic of a schedule and nothing else: what a scheduler keeps
//! per job to find the next run, in a few words.
//!
//! Owns: [`Cadence`] (an ISO cadence, or a boxed cron expression) and
//! [`IsoCadence`], which [`crate::IsoSchedule`] evaluates through — the
//! occurrence arithmetic exists only here. Must not: keep anything only
//! display needs (the text, the start as written, the interval's parts).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::cron::CronSchedule;
use crate::duration::Duration;
use crate::zone::resolve_civil;

/// A parsed schedule reduced to its arithmetic (~40 bytes for ISO; cron
/// expressions are boxed).
#[derive(Debug, Clone, PartialEq)]
pub enum Cadence {
    Iso(IsoCadence),
    Cron(Box<CronSchedule>),
}

impl Cadence {
    /// The first occurrence strictly after `t`, or `None` when there are
    /// no more.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Cadence::Iso(c) => c.next_after(t),
            Cadence::Cron(c) => c.next_after(t),
        }
    }

    /// The latest occurrence at or before `t`, or `None` if the first is
    /// later than `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Cadence::Iso(c) => c.latest_at_or_before(t),
            Cadence::Cron(c) => c.latest_at_or_before(t),
        }
    }

    /// The first run of an ISO schedule; `None` for cron.
    pub fn start(&self) -> Option<Timestamp> {
        match self {
            Cadence::Iso(c) => Some(c.first),
            Cadence::Cron(_) => None,
        }
    }
}

/// `R[n]/start/interval` as numbers: occurrence k is `first + k × step`.
#[derive(Debug, Clone, PartialEq)]
pub struct IsoCadence {
    first: Timestamp,
    /// Runs allowed in all (`Rn` → n + 1); `u64::MAX`: unbounded.
    max_runs: u64,
    step: Step,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// No interval (`R0` with an interval Kala ignores): one run.
    None,
    /// Hours, minutes and seconds only: every step is this many seconds.
    Exact(i64),
    /// An exact interval whose seconds do not fit: only the first run.
    Overflow,
    /// Years, months, weeks or days: steps move the wall-clock date.
    Calendar(Box<Calendar>),
}

#[derive(Debug, Clone, PartialEq)]
struct Calendar {
    /// The parts, each `None` when it does not fit (no run after the first).
    exact_seconds: Option<i64>,
    months: Option<i64>,
    days: Option<i64>,
    approx_seconds: f64,
    /// The start's wall-clock date and time, and the zone steps move in.
    base: DateTime,
    tz: TimeZone,
}

impl IsoCadence {
    /// `interval`: `None` when there is none (`R0` with an ignored one).
    pub(crate) fn new(
        first: Timestamp,
        max_runs: Option<u64>,
        interval: Option<&Duration>,
        base: DateTime,
        tz: &TimeZone,
    ) -> IsoCadence {
        let step = match interval {
            None => Step::None,
            Some(d) if d.is_zero() => Step::None,
            Some(d) if d.is_exact() => d.exact_seconds().map_or(Step::Overflow, Step::Exact),
            Some(d) => Step::Calendar(Box::new(Calendar {
                exact_seconds: d.exact_seconds(),
                months: d.calendar_months(),
                days: d.calendar_days(),
                approx_seconds: d.approx_seconds(),
                base,
                tz: tz.clone(),
            })),
        };
        IsoCadence {
            first,
            max_runs: max_runs.unwrap_or(u64::MAX),
            step,
        }
    }

    pub fn first(&self) -> Timestamp {
        self.first
    }

    /// Total runs allowed, `None` for unbounded.
    pub fn max_runs(&self) -> Option<u64> {
        (self.max_runs != u64::MAX).then_some(self.max_runs)
    }

    /// Occurrence `k` (0 = the first), or `None` past the last.
    pub fn nth(&self, k: u64) -> Option<Timestamp> {
        if k >= self.max_runs {
            return None;
        }
        self.unbounded_nth(k)
    }

    fn unbounded_nth(&self, k: u64) -> Option<Timestamp> {
        if k == 0 {
            return Some(self.first);
        }
        let k = i64::try_from(k).ok()?;
        match &self.step {
            Step::None | Step::Overflow => None,
            Step::Exact(secs) => self
                .first
                .checked_add(SignedDuration::from_secs(secs.checked_mul(k)?))
                .ok(),
            Step::Calendar(c) => {
                let exact = SignedDuration::from_secs(c.exact_seconds?.checked_mul(k)?);
                let months = c.months?.checked_mul(k)?;
                let days = c.days?.checked_mul(k)?;
                let date = add_months_clamped(c.base.date(), months)?;
                let date = date
                    .checked_add(jiff::Span::new().try_days(days).ok()?)
                    .ok()?;
                let at = resolve_civil(&c.tz, date.to_datetime(c.base.time()))?;
                at.checked_add(exact).ok()
            }
        }
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.index_after(t).and_then(|k| self.nth(k))
    }

    /// The latest occurrence at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let k = self.index_after(t)?.min(self.max_runs);
        k.checked_sub(1).and_then(|i| self.nth(i))
    }

    /// The index of the first occurrence strictly after `t`, ignoring the
    /// repeat count: estimated from the step, then corrected exactly.
    pub fn index_after(&self, t: Timestamp) -> Option<u64> {
        if self.first > t {
            return Some(0);
        }
        let elapsed = t.as_nanosecond() - self.first.as_nanosecond();
        let mut k: u64 = match &self.step {
            Step::None => return Some(1),
            Step::Overflow => return None,
            Step::Exact(secs) => {
                u64::try_from(elapsed / (i128::from(*secs) * 1_000_000_000)).ok()?
            }
            Step::Calendar(c) => {
                let est = (elapsed as f64 / 1e9) / c.approx_seconds;
                if !est.is_finite() || !(0.0..=1e18).contains(&est) {
                    return None;
                }
                est as u64
            }
        };
        while k > 0 && self.unbounded_nth(k).is_none_or(|x| x > t) {
            k -= 1;
        }
        while self.unbounded_nth(k + 1).is_some_and(|x| x <= t) {
            k += 1;
        }
        Some(k + 1)
    }
}

/// `date` moved by `months`, its day clamped to the target month's last.
fn add_months_clamped(date: Date, months: i64) -> Option<Date> {
    let index = i64::from(date.year()) * 12 + i64::from(date.month() - 1) + months;
    let year = i16::try_from(index.div_euclid(12)).ok()?;
    let month = (index.rem_euclid(12) + 1) as i8;
    let first = Date::new(year, month, 1).ok()?;
    let day = date.day().min(first.days_in_month());
    Date::new(year, month, day).ok()
}
