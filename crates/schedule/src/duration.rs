//! Kala's ISO 8601 duration grammar, reproduced exactly (kala-api.md §3.2).
//!
//! Two patterns are tried in order and neither is anchored:
//! 1. the weeks form `P<n>W` anywhere in the text (`P1W2D` is one week);
//! 2. the full form `P[nY][nM][nD][T[nH][nM][nS]]` at the first `P`.
//!
//! Integers only; at least one component; a `T` needs a time component.
//! Trailing text after a match is ignored, as Kala ignores it.

use std::fmt;

use crate::ScheduleError;

/// A calendar duration as Kala understands it: every component is kept
/// separately (`PT36H` is not normalised to `P1DT12H`), because years,
/// months, weeks and days are calendar arithmetic while hours, minutes and
/// seconds are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Duration {
    pub years: i64,
    pub months: i64,
    pub weeks: i64,
    pub days: i64,
    pub hours: i64,
    pub minutes: i64,
    pub seconds: i64,
}

impl Duration {
    /// Parses `text` with Kala's grammar. The error names the input and the
    /// problem, e.g. `interval "P1X": unknown designator 'X'`.
    pub fn parse(text: &str) -> Result<Duration, ScheduleError> {
        parse_duration(text).map_err(|reason| ScheduleError::Duration {
            input: text.to_string(),
            reason,
        })
    }

    /// True when every component is zero (`P0D`, `PT0S`).
    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// The exact part (hours, minutes, seconds) in seconds, if it fits.
    pub fn exact_seconds(&self) -> Option<i64> {
        self.hours
            .checked_mul(3600)?
            .checked_add(self.minutes.checked_mul(60)?)?
            .checked_add(self.seconds)
    }

    /// Whole calendar months (years × 12 + months), if it fits.
    pub fn calendar_months(&self) -> Option<i64> {
        self.years.checked_mul(12)?.checked_add(self.months)
    }

    /// Calendar days (weeks × 7 + days), if it fits.
    pub fn calendar_days(&self) -> Option<i64> {
        self.weeks.checked_mul(7)?.checked_add(self.days)
    }

    /// True when the duration has no calendar part, so every step is the
    /// same number of seconds.
    pub fn is_exact(&self) -> bool {
        self.years == 0 && self.months == 0 && self.weeks == 0 && self.days == 0
    }

    /// An approximate length in seconds (a year of 365.2425 days, a month of
    /// 30.436875 days), used only to estimate how many steps fit in a span.
    pub fn approx_seconds(&self) -> f64 {
        const DAY: f64 = 86_400.0;
        self.years as f64 * 365.2425 * DAY
            + self.months as f64 * 30.436875 * DAY
            + (self.weeks as f64 * 7.0 + self.days as f64) * DAY
            + self.hours as f64 * 3600.0
            + self.minutes as f64 * 60.0
            + self.seconds as f64
    }
}

impl std::str::FromStr for Duration {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

/// Kala's formatting (except zero, `PT0S`, which Kala prints as an
/// unparsable `P`): `P1W` for the weeks form, otherwise the
/// non-zero components in order (`P1Y2D`, `PT1H2M3S`).
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let only_weeks = self.weeks != 0
            && self.years == 0
            && self.months == 0
            && self.days == 0
            && self.hours == 0
            && self.minutes == 0
            && self.seconds == 0;
        if self.is_zero() {
            // Kala prints "P", which its own parser rejects; print a zero
            // that parses back.
            return f.write_str("PT0S");
        }
        f.write_str("P")?;
        if only_weeks {
            return write!(f, "{}W", self.weeks);
        }
        // A duration that mixes weeks with other parts cannot be written in
        // Kala's grammar; fold the weeks into days so it still round-trips.
        let days = self.weeks.saturating_mul(7).saturating_add(self.days);
        for (v, d) in [(self.years, 'Y'), (self.months, 'M'), (days, 'D')] {
            if v != 0 {
                write!(f, "{v}{d}")?;
            }
        }
        if self.hours != 0 || self.minutes != 0 || self.seconds != 0 {
            f.write_str("T")?;
            for (v, d) in [(self.hours, 'H'), (self.minutes, 'M'), (self.seconds, 'S')] {
                if v != 0 {
                    write!(f, "{v}{d}")?;
                }
            }
        }
        Ok(())
    }
}

/// Reads a run of ASCII digits at `pos`; returns (value, end) or None when
/// there is no digit. Overflow is reported separately.
fn digits(b: &[u8], pos: usize) -> Option<(Result<i64, ()>, usize)> {
    let end = pos + b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
    if end == pos {
        return None;
    }
    let mut v: i64 = 0;
    for &c in &b[pos..end] {
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(c - b'0')))
        {
            Some(n) => v = n,
            None => return Some((Err(()), end)),
        }
    }
    Some((Ok(v), end))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let b = text.as_bytes();
    // 1. The weeks form, anywhere.
    for i in 0..b.len() {
        if b[i] == b'P'
            && let Some((v, end)) = digits(b, i + 1)
            && b.get(end) == Some(&b'W')
        {
            let weeks = v.map_err(|_| "number too large".to_string())?;
            return Ok(Duration {
                weeks,
                ..Duration::default()
            });
        }
    }
    // 2. The full form at the first 'P'.
    let Some(p) = b.iter().position(|&c| c == b'P') else {
        return Err("must contain 'P' followed by components such as PT10S or P1D".into());
    };
    let mut d = Duration::default();
    let mut pos = p + 1;
    let mut count = 0;
    let take = |pos: &mut usize, designator: u8| -> Result<Option<i64>, String> {
        match digits(b, *pos) {
            Some((v, end)) if b.get(end) == Some(&designator) => {
                let v = v.map_err(|_| "number too large".to_string())?;
                *pos = end + 1;
                Ok(Some(v))
            }
            _ => Ok(None),
        }
    };
    for (slot, des) in [
        (&mut d.years, b'Y'),
        (&mut d.months, b'M'),
        (&mut d.days, b'D'),
    ] {
        if let Some(v) = take(&mut pos, des)? {
            *slot = v;
            count += 1;
        }
    }
    if b.get(pos) == Some(&b'T') {
        pos += 1;
        let mut time_count = 0;
        for (slot, des) in [
            (&mut d.hours, b'H'),
            (&mut d.minutes, b'M'),
            (&mut d.seconds, b'S'),
        ] {
            if let Some(v) = take(&mut pos, des)? {
                *slot = v;
                time_count += 1;
            }
        }
        if time_count == 0 {
            return Err(match describe_bad(b, pos) {
                Some(why) => why,
                None => "'T' must be followed by hours, minutes or seconds".into(),
            });
        }
        count += time_count;
    }
    if count == 0 {
        return Err(match describe_bad(b, pos) {
            Some(why) => why,
            None => "no components after 'P' (expected e.g. P1D or PT10S)".into(),
        });
    }
    Ok(d)
}

/// Explains why nothing could be read at `pos` (for error messages only).
fn describe_bad(b: &[u8], pos: usize) -> Option<String> {
    let (_, end) = digits(b, pos)?;
    match b.get(end) {
        None => Some("number without a designator".into()),
        Some(b'.') | Some(b',') => Some("fractions are not allowed".into()),
        Some(&c) if c.is_ascii_graphic() => Some(format!("unknown designator '{}'", c as char)),
        Some(_) => Some("unknown designator".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        Duration::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn accepts_kala_forms() {
        assert_eq!(d("PT10S").seconds, 10);
        assert_eq!(d("PT1H").hours, 1);
        assert_eq!(d("P1D").days, 1);
        assert_eq!(d("P1W").weeks, 1);
        assert_eq!(d("P2M").months, 2);
        assert_eq!(d("PT5M").minutes, 5);
        let full = d("P1Y2M10DT2H30M15S");
        assert_eq!(
            (
                full.years,
                full.months,
                full.days,
                full.hours,
                full.minutes,
                full.seconds
            ),
            (1, 2, 10, 2, 30, 15)
        );
        let x = d("P1DT10M10S");
        assert_eq!((x.days, x.minutes, x.seconds), (1, 10, 10));
        assert_eq!(d("PT36H").hours, 36);
        assert!(d("P0D").is_zero());
        assert!(d("PT0S").is_zero());
        let all = d("P1Y2M3DT4H5M6S");
        assert_eq!(
            (
                all.years,
                all.months,
                all.days,
                all.hours,
                all.minutes,
                all.seconds
            ),
            (1, 2, 3, 4, 5, 6)
        );
        assert_eq!(d("PT4H").hours, 4);
        assert_eq!(d("PT6S").seconds, 6);
    }

    #[test]
    fn kala_quirks_unanchored_and_ignored_suffixes() {
        assert_eq!(
            d("P1W2D"),
            Duration {
                weeks: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            d("P1Y2M3W"),
            Duration {
                years: 1,
                months: 2,
                ..Default::default()
            }
        );
        assert_eq!(
            d("PT10S5M"),
            Duration {
                seconds: 10,
                ..Default::default()
            }
        );
        assert_eq!(
            d("xyzP1D"),
            Duration {
                days: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            d("-P1D"),
            Duration {
                days: 1,
                ..Default::default()
            }
        );
        assert_eq!(d("P1Y2M10DT2H30M15S trailing").seconds, 15);
        assert_eq!(d("P99999999999D").days, 99_999_999_999);
    }

    #[test]
    fn rejects_what_kala_rejects() {
        for bad in [
            "",
            "P",
            "PT",
            "P1DT",
            "PT1.5S",
            "PT1,5S",
            "P1.5D",
            "pt1h",
            "PT1h",
            "1H",
            "1h",
            "DTT",
            "000D",
            "ASDASD",
            "asdf",
            "P2015-11-03T21:56",
            "PT0.5S",
            "P1X",
            "P99999999999999999999D",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Duration::parse("P1X").unwrap_err().to_string();
        assert_eq!(e, "interval \"P1X\": unknown designator 'X'");
        let e = Duration::parse("PT1.5S").unwrap_err().to_string();
        assert!(e.contains("fractions"), "{e}");
        let e = Duration::parse("PT").unwrap_err().to_string();
        assert!(e.contains("'T' must be followed"), "{e}");
    }

    #[test]
    fn display_matches_kala() {
        assert_eq!(Duration::default().to_string(), "PT0S");
        assert_eq!(d("P00W").to_string(), "PT0S");
        assert_eq!(d("P0D").to_string(), "PT0S");
        assert_eq!(d("P1Y2D").to_string(), "P1Y2D");
        assert_eq!(d("PT1H2M3S").to_string(), "PT1H2M3S");
        assert_eq!(d("P1Y2M3DT4H5M6S").to_string(), "P1Y2M3DT4H5M6S");
        assert_eq!(d("P1W").to_string(), "P1W");
        assert_eq!(d("PT36H").to_string(), "PT36H");
    }
}
