//! RFC 2822 date-times as Twilio sends them in `Timestamp` and resource dates, e.g.
//! `Tue, 31 Aug 2010 20:36:28 +0000` (<https://www.rfc-editor.org/rfc/rfc2822#section-3.3>,
//! <https://www.twilio.com/docs/voice/api/call-resource#statuscallback>). No clock is read:
//! this only converts text to seconds since the Unix epoch and back.

use std::fmt;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Why a timestamp is not RFC 2822.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 2822 date-time: {0}")]
pub struct TimestampError(&'static str);

/// An instant, parsed from RFC 2822 text and normalized to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rfc2822Timestamp {
    unix_seconds: i64,
}

impl Rfc2822Timestamp {
    /// From seconds since 1970-01-01T00:00:00Z.
    pub fn from_unix_seconds(unix_seconds: i64) -> Self {
        Self { unix_seconds }
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// The UTC date, `YYYY-MM-DD` (the form of the REST API's date filters, e.g.
    /// `StartTime>=2023-11-14`).
    pub fn utc_date(self) -> String {
        let (year, month, day) = civil_from_days(self.unix_seconds.div_euclid(86_400));
        format!("{year:04}-{month:02}-{day:02}")
    }

    /// Parses `[Day, ]DD Mon YYYY HH:MM[:SS] zone`, zone being `+hhmm`, `-hhmm`, `GMT`, `UT`,
    /// `UTC` or `Z`.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let mut tokens = text.split_whitespace().peekable();
        if let Some(first) = tokens.peek()
            && let Some(day_name) = first.strip_suffix(',')
        {
            if !WEEKDAYS.iter().any(|d| d.eq_ignore_ascii_case(day_name)) {
                return Err(TimestampError("unknown weekday"));
            }
            tokens.next();
        }
        let day: u32 = number(tokens.next(), 1, 2).ok_or(TimestampError("bad day"))?;
        let month_name = tokens.next().ok_or(TimestampError("missing month"))?;
        let month = MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(month_name))
            .ok_or(TimestampError("unknown month"))? as u32
            + 1;
        let year: u32 = number(tokens.next(), 4, 4).ok_or(TimestampError("bad year"))?;
        let time = tokens.next().ok_or(TimestampError("missing time"))?;
        let mut parts = time.split(':');
        let hour: u32 = number(parts.next(), 2, 2).ok_or(TimestampError("bad hour"))?;
        let minute: u32 = number(parts.next(), 2, 2).ok_or(TimestampError("bad minute"))?;
        let second: u32 = match parts.next() {
            Some(s) => number(Some(s), 2, 2).ok_or(TimestampError("bad second"))?,
            None => 0,
        };
        if parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
            return Err(TimestampError("time out of range"));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(TimestampError("day out of range"));
        }
        let offset = zone_offset_seconds(tokens.next().ok_or(TimestampError("missing zone"))?)?;
        if tokens.next().is_some() {
            return Err(TimestampError("trailing text"));
        }
        let days = days_from_civil(i64::from(year), month, day);
        let local =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        Ok(Self {
            unix_seconds: local - offset,
        })
    }
}

impl fmt::Display for Rfc2822Timestamp {
    /// `Tue, 31 Aug 2010 20:36:28 +0000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.unix_seconds.div_euclid(86_400);
        let secs = self.unix_seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let weekday = WEEKDAYS[(days + 3).rem_euclid(7) as usize];
        write!(
            f,
            "{weekday}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
            MONTHS[month as usize - 1],
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

fn number(token: Option<&str>, min_len: usize, max_len: usize) -> Option<u32> {
    let token = token?;
    if token.len() < min_len || token.len() > max_len || !token.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    token.parse().ok()
}

fn zone_offset_seconds(zone: &str) -> Result<i64, TimestampError> {
    if ["GMT", "UT", "UTC", "Z"]
        .iter()
        .any(|z| z.eq_ignore_ascii_case(zone))
    {
        return Ok(0);
    }
    let (sign, digits) = match zone.as_bytes().first() {
        Some(b'+') => (1, &zone[1..]),
        Some(b'-') => (-1, &zone[1..]),
        _ => return Err(TimestampError("bad zone")),
    };
    let hhmm: u32 = number(Some(digits), 4, 4).ok_or(TimestampError("bad zone"))?;
    let (hours, minutes) = (hhmm / 100, hhmm % 100);
    if hours > 23 || minutes > 59 {
        return Err(TimestampError("zone out of range"));
    }
    Ok(sign * i64::from(hours * 3600 + minutes * 60))
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_twilio_example_to_unix_seconds() {
        let t = Rfc2822Timestamp::parse("Tue, 31 Aug 2010 20:36:28 +0000").unwrap();
        assert_eq!(t.unix_seconds(), 1_283_286_988);
        assert_eq!(t.to_string(), "Tue, 31 Aug 2010 20:36:28 +0000");
    }

    #[test]
    fn applies_zone_offsets_and_optional_parts() {
        let utc = Rfc2822Timestamp::parse("Tue, 31 Aug 2010 20:36:28 +0000").unwrap();
        assert_eq!(
            Rfc2822Timestamp::parse("31 Aug 2010 22:36:28 +0200").unwrap(),
            utc
        );
        assert_eq!(
            Rfc2822Timestamp::parse("Tue, 31 Aug 2010 15:36:28 -0500").unwrap(),
            utc
        );
        assert_eq!(
            Rfc2822Timestamp::parse("Tue, 31 Aug 2010 20:36:28 GMT").unwrap(),
            utc
        );
        assert_eq!(
            Rfc2822Timestamp::parse("1 Jan 1970 00:00 UT")
                .unwrap()
                .unix_seconds(),
            0
        );
    }

    #[test]
    fn rejects_impossible_dates_and_garbage() {
        for bad in [
            "",
            "Tue, 31 Sep 2010 20:36:28 +0000",
            "Tue, 29 Feb 2011 20:36:28 +0000",
            "Tue, 31 Aug 2010 24:00:00 +0000",
            "Tue, 31 Aug 10 20:36:28 +0000",
            "Tue, 31 Aug 2010 20:36:28",
            "Tue, 31 Aug 2010 20:36:28 +0000 extra",
            "Foo, 31 Aug 2010 20:36:28 +0000",
            "2010-08-31T20:36:28Z",
        ] {
            assert!(
                Rfc2822Timestamp::parse(bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
        assert!(Rfc2822Timestamp::parse("Tue, 29 Feb 2000 00:00:00 +0000").is_ok());
    }

    #[test]
    fn display_round_trips_across_eras() {
        for secs in [-86_400 * 365 * 300, -1, 0, 951_782_400, 4_102_444_799] {
            let t = Rfc2822Timestamp::from_unix_seconds(secs);
            assert_eq!(Rfc2822Timestamp::parse(&t.to_string()).unwrap(), t, "{t}");
        }
    }
}
