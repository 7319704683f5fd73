//! IANA time zones, and the DST contract shared by every schedule kind.
//!
//! Contract: a local time skipped by a spring-forward gap resolves to the
//! first instant after the gap (the transition itself); a local time that
//! occurs twice in a fall-back fold resolves to its first (earlier)
//! occurrence, so it runs once.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::ScheduleError;

/// A named IANA zone (`Europe/Berlin`) or `UTC`.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    pub fn get(name: &str) -> Result<Zone, ScheduleError> {
        let tz = TimeZone::get(name).map_err(|e| ScheduleError::Zone {
            input: name.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Zone {
            name: name.to_string(),
            tz,
        })
    }

    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Zone {}
impl std::hash::Hash for Zone {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}
impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

/// Resolves a civil date-time in `tz` following the DST contract above.
pub fn resolve_civil(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    let amb = tz.to_ambiguous_timestamp(dt);
    match amb.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { before, .. } => {
            // Read with the pre-gap offset, `dt` lands after the transition;
            // the transition just before that instant is the gap's end.
            let probe = before.to_timestamp(dt).ok()?;
            let after_probe = probe
                .checked_add(jiff::SignedDuration::from_nanos(1))
                .ok()?;
            tz.preceding(after_probe).next().map(|t| t.timestamp())
        }
    }
}
