//! The strict start-time parser (kala-api.md §3.1, "Start part").
//!
//! Accepted: `YYYY-MM-DDThh:mm:ss`, an optional fraction of any length
//! (truncated to nanoseconds), then `Z`, `±hh:mm` or nothing, then
//! optionally an RFC 9557 zone annotation `[Area/City]` (our extension).
//! Rejected, like Kala: lower-case `t`/`z`, a space for `T`, missing
//! seconds, `+0530`/`+05` offsets, single-digit fields, impossible dates.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

use crate::ScheduleError;
use crate::zone::{Zone, resolve_civil};

/// How the start's offset was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// No offset: UTC, or the zone's local time when a zone applies.
    None,
    /// `Z`.
    Utc,
    /// `±hh:mm`, in seconds east of UTC.
    Fixed(i32),
}

/// A parsed start time: the civil date-time as written, its offset
/// notation and an optional IANA zone annotation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Start {
    pub civil: DateTime,
    pub offset: OffsetSpec,
    /// The `[Area/City]` annotation, when written.
    pub zone: Option<Zone>,
}

impl Start {
    pub fn parse(text: &str) -> Result<Start, ScheduleError> {
        parse_start(text).map_err(|reason| ScheduleError::Start {
            input: text.to_string(),
            reason,
        })
    }

    /// The time zone that calendar arithmetic for this start happens in:
    /// the annotation, else the given default (the job's zone), else the
    /// written fixed offset, else UTC.
    pub fn arithmetic_zone(&self, default: Option<&Zone>) -> TimeZone {
        if let Some(z) = &self.zone {
            return z.tz().clone();
        }
        match self.offset {
            OffsetSpec::Fixed(secs) if default.is_none() => {
                // The offset was validated at parse time.
                Offset::from_seconds(secs)
                    .map(TimeZone::fixed)
                    .unwrap_or(TimeZone::UTC)
            }
            OffsetSpec::Utc if default.is_none() => TimeZone::UTC,
            _ => default.map(|z| z.tz().clone()).unwrap_or(TimeZone::UTC),
        }
    }

    /// The instant this start denotes.
    pub fn timestamp(&self, default: Option<&Zone>) -> Result<Timestamp, ScheduleError> {
        let err = |reason: String| ScheduleError::Start {
            input: self.to_string(),
            reason,
        };
        match self.offset {
            OffsetSpec::Utc => self
                .civil
                .to_zoned(TimeZone::UTC)
                .map(|z| z.timestamp())
                .map_err(|e| err(e.to_string())),
            OffsetSpec::Fixed(secs) => {
                let off = Offset::from_seconds(secs).map_err(|e| err(e.to_string()))?;
                off.to_timestamp(self.civil).map_err(|e| err(e.to_string()))
            }
            OffsetSpec::None => {
                let tz = match (&self.zone, default) {
                    (Some(z), _) | (None, Some(z)) => z.tz().clone(),
                    (None, None) => TimeZone::UTC,
                };
                resolve_civil(&tz, self.civil).ok_or_else(|| err("out of range".into()))
            }
        }
    }
}

impl std::str::FromStr for Start {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Start::parse(s)
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.civil;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            c.year(),
            c.month(),
            c.day(),
            c.hour(),
            c.minute(),
            c.second()
        )?;
        let ns = c.subsec_nanosecond();
        if ns != 0 {
            let s = format!("{ns:09}");
            write!(f, ".{}", s.trim_end_matches('0'))?;
        }
        match self.offset {
            OffsetSpec::None => {}
            OffsetSpec::Utc => f.write_str("Z")?,
            OffsetSpec::Fixed(secs) => {
                let sign = if secs < 0 { '-' } else { '+' };
                let a = secs.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)?;
            }
        }
        if let Some(z) = &self.zone {
            write!(f, "[{}]", z.name())?;
        }
        Ok(())
    }
}

fn num(b: &[u8], at: usize, len: usize, what: &str) -> Result<i64, String> {
    let part = b
        .get(at..at + len)
        .ok_or_else(|| format!("too short: missing {what}"))?;
    if !part.iter().all(u8::is_ascii_digit) {
        return Err(format!("{what} must be {len} digits"));
    }
    Ok(part.iter().fold(0i64, |v, &c| v * 10 + i64::from(c - b'0')))
}

fn expect(b: &[u8], at: usize, c: u8, what: &str) -> Result<(), String> {
    match b.get(at) {
        Some(&x) if x == c => Ok(()),
        Some(&x) => Err(format!(
            "expected '{}' {what}, found '{}'",
            c as char, x as char
        )),
        None => Err(format!("too short: expected '{}' {what}", c as char)),
    }
}

fn parse_start(text: &str) -> Result<Start, String> {
    let b = text.as_bytes();
    let year = num(b, 0, 4, "year")?;
    expect(b, 4, b'-', "after the year")?;
    let month = num(b, 5, 2, "month")?;
    expect(b, 7, b'-', "after the month")?;
    let day = num(b, 8, 2, "day")?;
    expect(b, 10, b'T', "between date and time (upper-case T)")?;
    let hour = num(b, 11, 2, "hour")?;
    expect(b, 13, b':', "after the hour")?;
    let minute = num(b, 14, 2, "minute")?;
    expect(b, 16, b':', "after the minutes (seconds are required)")?;
    let second = num(b, 17, 2, "second")?;
    let mut pos = 19;
    let mut nanos: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        let n = b[pos + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 {
            return Err("a '.' must be followed by fraction digits".into());
        }
        for (i, &c) in b[pos + 1..pos + 1 + n].iter().enumerate().take(9) {
            nanos += i64::from(c - b'0') * 10i64.pow(8 - i as u32);
        }
        pos += 1 + n;
    }
    let offset = match b.get(pos) {
        None | Some(b'[') => OffsetSpec::None,
        Some(b'Z') => {
            pos += 1;
            OffsetSpec::Utc
        }
        Some(&s @ (b'+' | b'-')) => {
            let hh = num(b, pos + 1, 2, "offset hours")?;
            expect(b, pos + 3, b':', "in the offset (±hh:mm)")?;
            let mm = num(b, pos + 4, 2, "offset minutes")?;
            if hh > 23 || mm > 59 {
                return Err("offset out of range".into());
            }
            pos += 6;
            let secs = (hh * 3600 + mm * 60) as i32;
            OffsetSpec::Fixed(if s == b'-' { -secs } else { secs })
        }
        Some(&c) => {
            return Err(format!(
                "unexpected '{}' after the time (expected Z, ±hh:mm or nothing)",
                c as char
            ));
        }
    };
    let zone = if b.get(pos) == Some(&b'[') {
        let close = text[pos..]
            .find(']')
            .ok_or("unclosed '[' in zone annotation")?
            + pos;
        let name = &text[pos + 1..close];
        pos = close + 1;
        Some(Zone::get(name).map_err(|e| e.to_string())?)
    } else {
        None
    };
    if pos != b.len() {
        return Err(format!("unexpected trailing text {:?}", &text[pos..]));
    }
    let civil = DateTime::new(
        year as i16,
        month as i8,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        nanos as i32,
    )
    .map_err(|e| format!("not a valid date-time: {e}"))?;
    let start = Start {
        civil,
        offset,
        zone,
    };
    // An offset and a zone together must agree.
    if let (Some(z), OffsetSpec::Fixed(_) | OffsetSpec::Utc) = (&start.zone, start.offset) {
        let ts = start.timestamp(None).map_err(|e| e.to_string())?;
        let written = match start.offset {
            OffsetSpec::Fixed(s) => s,
            _ => 0,
        };
        if z.tz().to_offset(ts).seconds() != written {
            return Err(format!(
                "offset does not match zone {} at that time",
                z.name()
            ));
        }
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kala_forms() {
        for ok in [
            "2017-06-04T19:25:16",
            "2017-06-04T19:25:16.828696-07:00",
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:00:00.5",
            "2030-01-01T00:00:00.123456789123Z",
            "2026-11-22T16:23:53.828696-07:00",
            "2030-03-31T02:30:00[Europe/Berlin]",
            "2030-07-01T09:00:00+02:00[Europe/Berlin]",
        ] {
            let s = Start::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(Start::parse(&s.to_string()).unwrap(), s, "{ok}");
        }
    }

    #[test]
    fn rejects_what_kala_rejects() {
        for bad in [
            "2030-01-01T00:00:00z",
            "2030-01-01t00:00:00Z",
            "2030-01-01 00:00:00Z",
            "2030-01-01",
            "2030-01-01T00:00Z",
            "2030-01-01T00:00:00+0530",
            "2030-01-01T00:00:00+05",
            "2030-1-1T00:00:00Z",
            "2030-01-01T25:00:00Z",
            "2030-02-30T00:00:00Z",
            "garbage",
            "not-a-date",
            "2030-01-01T00:00:00.Z",
            "2030-01-01T00:00:00Z trailing",
            "2030-07-01T09:00:00+01:00[Europe/Berlin]",
            "2030-07-01T09:00:00[Mars/Olympus]",
        ] {
            assert!(Start::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn fraction_is_truncated_to_nanoseconds() {
        let s = Start::parse("2030-01-01T00:00:00.123456789123Z").unwrap();
        assert_eq!(s.civil.subsec_nanosecond(), 123_456_789);
        let s = Start::parse("2017-06-04T19:25:16.828696-07:00").unwrap();
        assert_eq!(s.civil.subsec_nanosecond(), 828_696_000);
        assert_eq!(s.to_string(), "2017-06-04T19:25:16.828696-07:00");
    }

    #[test]
    fn zoneless_is_utc_unless_a_zone_is_given() {
        let s = Start::parse("2030-01-01T12:00:00").unwrap();
        assert_eq!(
            s.timestamp(None).unwrap().to_string(),
            "2030-01-01T12:00:00Z"
        );
        let ny = Zone::get("America/New_York").unwrap();
        assert_eq!(
            s.timestamp(Some(&ny)).unwrap().to_string(),
            "2030-01-01T17:00:00Z"
        );
        let off = Start::parse("2017-06-04T19:25:16-07:00").unwrap();
        assert_eq!(
            off.timestamp(Some(&ny)).unwrap().to_string(),
            "2017-06-05T02:25:16Z"
        );
    }
}
