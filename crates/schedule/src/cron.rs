//! Standard cron expressions (5 fields, or 6 with seconds first), parsed and
//! evaluated by the `croner` crate in an IANA zone (`CRON_TZ=Area/City`
//! prefix, else the job's zone, else UTC).

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;

use crate::ScheduleError;
use crate::zone::Zone;

#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    zone: Option<Zone>,
    default_zone: Option<Zone>,
    cron: Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
            && self.zone == other.zone
            && self.default_zone == other.default_zone
    }
}

impl CronSchedule {
    pub fn parse(text: &str, default_zone: Option<&Zone>) -> Result<CronSchedule, ScheduleError> {
        let trimmed = text.trim();
        let (zone, expr) = match trimmed
            .strip_prefix("CRON_TZ=")
            .or_else(|| trimmed.strip_prefix("TZ="))
        {
            Some(rest) => {
                let (name, expr) =
                    rest.split_once(char::is_whitespace)
                        .ok_or_else(|| ScheduleError::Cron {
                            input: text.to_string(),
                            reason: "CRON_TZ=<zone> must be followed by an expression".into(),
                        })?;
                (Some(Zone::get(name)?), expr.trim())
            }
            None => (None, trimmed),
        };
        let expr: String = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = expr.split(' ').count();
        if !(expr.starts_with('@') || fields == 5 || fields == 6) {
            return Err(ScheduleError::Cron {
                input: text.to_string(),
                reason: format!("expected 5 fields (or 6 with seconds first), found {fields}"),
            });
        }
        // croner's `+` (day-of-month AND day-of-week) is not Kala's cron,
        // and with `W` it searched without end ("0 0 1w 3 +"; found by
        // fuzzing the create path).
        if expr.contains('+') {
            return Err(ScheduleError::Cron {
                input: text.to_string(),
                reason: "'+' is not supported in a cron expression".into(),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&expr)
            .map_err(|e| ScheduleError::Cron {
                input: text.to_string(),
                // croner says "Number out of bounds" without naming the
                // field; name it and its range when a number is the cause.
                reason: out_of_range(&expr).unwrap_or_else(|| e.to_string()),
            })?;
        let schedule = CronSchedule {
            expr,
            zone,
            default_zone: default_zone.cloned(),
            cron,
        };
        // A field that allows no value at all (`,,,` parses as an empty
        // list) can never match; a search would step through 400 years of
        // hours to find that out (~1.4 s), so answer from the pattern.
        let p = &schedule.cron.pattern;
        for (name, field) in [
            ("seconds", &p.seconds),
            ("minutes", &p.minutes),
            ("hours", &p.hours),
            ("months", &p.months),
        ] {
            if field.values().is_empty() {
                return Err(ScheduleError::Cron {
                    input: text.to_string(),
                    reason: format!("the {name} field allows no value, so it never matches"),
                });
            }
        }
        if !p.days.has_modifiers()
            && !p.days_of_week.has_modifiers()
            && p.days.values().is_empty()
            && p.days_of_week.values().is_empty()
        {
            return Err(ScheduleError::Cron {
                input: text.to_string(),
                reason: "the day fields allow no value, so it never matches".into(),
            });
        }
        // `0 0 30 2 *` parses but never fires; say so instead of waiting.
        // The Gregorian calendar repeats every 400 years, so a pattern that
        // matches at all matches within 400 years of any instant: search
        // only the last 401 years before croner's limit (the year 5000)
        // rather than from 1970, which costs ~7× less for impossible ones.
        let probe = jiff::civil::date(4599, 1, 1)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        if schedule.next_after(probe).is_none() {
            return Err(ScheduleError::Cron {
                input: text.to_string(),
                reason: "never matches any date".into(),
            });
        }
        Ok(schedule)
    }

    fn zone(&self) -> jiff::tz::TimeZone {
        match (&self.zone, &self.default_zone) {
            (Some(z), _) | (None, Some(z)) => z.tz().clone(),
            (None, None) => jiff::tz::TimeZone::UTC,
        }
    }

    /// The first matching instant strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let z = t.to_zoned(self.zone());
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest matching instant at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let z = t.to_zoned(self.zone());
        self.cron
            .find_previous_occurrence(&z, true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The expression in words ("At 09:00 on Monday"), from croner.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(z) = &self.zone {
            write!(f, "CRON_TZ={} ", z.name())?;
        }
        f.write_str(&self.expr)
    }
}

/// The first number of a 5- or 6-field expression outside its field's
/// range: "minute 61 is out of range 0–59". Names (`MON`, `JAN`) and
/// modifiers (`L`, `W`, `#`, `?`) are left to croner.
fn out_of_range(expr: &str) -> Option<String> {
    const FIVE: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    let fields: Vec<&str> = expr.split(' ').collect();
    let names: Vec<(&str, u32, u32)> = match fields.len() {
        5 => FIVE.to_vec(),
        6 => std::iter::once(("second", 0, 59)).chain(FIVE).collect(),
        _ => return None,
    };
    for (field, (name, lo, hi)) in fields.iter().zip(names) {
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step.and_then(|s| s.parse::<u64>().ok())
                && step == 0
            {
                return Some(format!("the {name} field's step /0 must be at least 1"));
            }
            for n in range.split('-').filter_map(|v| v.parse::<u64>().ok()) {
                if n < u64::from(lo) || n > u64::from(hi) {
                    return Some(format!("{name} {n} is out of range {lo}–{hi}"));
                }
            }
        }
    }
    None
}
