//! A recipient's local time from their number, for quiet hours.
//!
//! A small built-in table, not the IANA database: NANP (`+1`) area codes to the US/Canadian
//! zone they mostly sit in, and a few dozen country codes to their main zone, each with a
//! fixed standard offset and one of three daylight-saving rules (none, US/Canada, EU).
//!
//! Limits, on purpose:
//! - An area code that spans two zones (parts of Florida, Texas, Tennessee, Indiana, Oregon...)
//!   gets the zone most of its numbers are in. A mobile number keeps its area code when its
//!   owner moves, so the number says where it was issued, not where its owner is.
//! - A `+1` area code not in the table is treated as "somewhere in the continental US":
//!   [`ZoneGuess::zones`] holds both Eastern and Pacific, and a window must be open in both.
//! - A country not in the table is evaluated in UTC (`known: false`).
//! - Countries with several zones (Australia, Brazil, Russia, Mexico...) get their capital's;
//!   southern-hemisphere and other local daylight-saving rules (Australia, New Zealand,
//!   Chile, Israel...) are not modelled: their standard offset is used all year.

use serde::Serialize;

use crate::E164;
use crate::webhook::time::{civil_from_days, days_from_civil};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A daylight-saving rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dst {
    /// Standard time all year.
    None,
    /// US and Canada: +1 h from the second Sunday of March, 02:00 local, to the first Sunday
    /// of November, 02:00 local (Energy Policy Act of 2005).
    UsCanada,
    /// EU and UK: +1 h from the last Sunday of March to the last Sunday of October, 01:00 UTC
    /// (Directive 2000/84/EC).
    Eu,
}

/// A zone: a name for people, its standard offset from UTC and its daylight-saving rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Zone {
    /// An IANA-style name, for display (`America/New_York`).
    pub name: &'static str,
    /// Standard offset from UTC, in minutes (east positive).
    pub standard_offset_minutes: i32,
    /// Daylight-saving rule.
    pub dst: Dst,
}

impl Zone {
    const fn new(name: &'static str, standard_offset_minutes: i32, dst: Dst) -> Self {
        Self {
            name,
            standard_offset_minutes,
            dst,
        }
    }

    /// UTC.
    pub const UTC: Self = Self::new("UTC", 0, Dst::None);

    /// The offset from UTC in force at `utc_ms`, in milliseconds.
    pub fn offset_ms(&self, utc_ms: i64) -> i64 {
        let standard = i64::from(self.standard_offset_minutes) * MINUTE_MS;
        let year = civil_from_days((utc_ms + standard).div_euclid(DAY_MS)).0;
        let daylight = match self.dst {
            Dst::None => false,
            Dst::UsCanada => {
                // 02:00 local standard time, and 02:00 local daylight time = 01:00 standard.
                let start = nth_sunday(year, 3, 2) * DAY_MS + 2 * HOUR_MS - standard;
                let end = nth_sunday(year, 11, 1) * DAY_MS + HOUR_MS - standard;
                (start..end).contains(&utc_ms)
            }
            Dst::Eu => {
                let start = last_sunday(year, 3) * DAY_MS + HOUR_MS;
                let end = last_sunday(year, 10) * DAY_MS + HOUR_MS;
                (start..end).contains(&utc_ms)
            }
        };
        standard + if daylight { HOUR_MS } else { 0 }
    }

    /// Minutes since local midnight at `utc_ms`.
    pub fn local_minute_of_day(&self, utc_ms: i64) -> u32 {
        ((utc_ms + self.offset_ms(utc_ms)).rem_euclid(DAY_MS) / MINUTE_MS) as u32
    }

    /// The local day of the week at `utc_ms`: 0 Sunday, 1 Monday, ... 6 Saturday.
    pub fn local_weekday(&self, utc_ms: i64) -> u32 {
        // 1970-01-01 was a Thursday.
        ((utc_ms + self.offset_ms(utc_ms)).div_euclid(DAY_MS) + 4).rem_euclid(7) as u32
    }
}

/// Days since 1970-01-01 of the `n`th Sunday (1-based) of `month` in `year`.
fn nth_sunday(year: i64, month: u32, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    // 1970-01-01 was a Thursday: weekday 0 = Sunday.
    let weekday = (first + 4).rem_euclid(7);
    first + (7 - weekday) % 7 + 7 * (n - 1)
}

/// Days since 1970-01-01 of the last Sunday of `month` (March or October: 31 days).
fn last_sunday(year: i64, month: u32) -> i64 {
    let last = days_from_civil(year, month, 31);
    last - (last + 4).rem_euclid(7)
}

const EASTERN: Zone = Zone::new("America/New_York", -300, Dst::UsCanada);
const CENTRAL: Zone = Zone::new("America/Chicago", -360, Dst::UsCanada);
const MOUNTAIN: Zone = Zone::new("America/Denver", -420, Dst::UsCanada);
const ARIZONA: Zone = Zone::new("America/Phoenix", -420, Dst::None);
const PACIFIC: Zone = Zone::new("America/Los_Angeles", -480, Dst::UsCanada);
const ALASKA: Zone = Zone::new("America/Anchorage", -540, Dst::UsCanada);
const HAWAII: Zone = Zone::new("Pacific/Honolulu", -600, Dst::None);
const ATLANTIC: Zone = Zone::new("America/Halifax", -240, Dst::UsCanada);
const PUERTO_RICO: Zone = Zone::new("America/Puerto_Rico", -240, Dst::None);
const NEWFOUNDLAND: Zone = Zone::new("America/St_Johns", -210, Dst::UsCanada);

/// NANP area codes by zone.
const NANP: &[(Zone, &[u16])] = &[
    (
        EASTERN,
        &[
            201, 202, 203, 207, 212, 215, 216, 226, 234, 239, 240, 248, 252, 267, 276, 289, 301,
            302, 304, 305, 315, 321, 330, 332, 336, 339, 343, 347, 351, 352, 386, 401, 404, 407,
            410, 412, 413, 416, 418, 434, 437, 440, 443, 470, 475, 478, 484, 508, 513, 514, 516,
            517, 518, 519, 540, 551, 561, 567, 570, 571, 585, 586, 603, 607, 609, 610, 613, 614,
            616, 617, 631, 646, 647, 678, 679, 680, 703, 704, 705, 706, 716, 717, 718, 724, 727,
            732, 734, 740, 754, 757, 770, 772, 774, 781, 786, 802, 803, 804, 810, 813, 819, 828,
            843, 845, 848, 856, 857, 859, 860, 862, 863, 864, 865, 878, 904, 905, 908, 910, 912,
            914, 917, 919, 929, 937, 941, 947, 954, 959, 973, 978, 980, 984, 989,
        ],
    ),
    (
        CENTRAL,
        &[
            204, 205, 210, 214, 217, 218, 219, 224, 225, 228, 251, 254, 256, 262, 281, 306, 309,
            312, 314, 316, 318, 319, 320, 331, 334, 337, 346, 361, 409, 414, 417, 430, 431, 432,
            463, 469, 479, 501, 502, 504, 507, 512, 515, 563, 573, 601, 605, 608, 612, 615, 618,
            620, 630, 636, 641, 651, 660, 662, 682, 701, 708, 712, 713, 715, 726, 731, 737, 763,
            769, 773, 779, 785, 806, 812, 815, 816, 817, 830, 832, 847, 870, 872, 901, 903, 913,
            918, 920, 931, 936, 940, 945, 952, 956, 972, 979, 985,
        ],
    ),
    (
        MOUNTAIN,
        &[
            208, 303, 307, 385, 403, 406, 435, 505, 575, 587, 719, 720, 780, 801, 825, 915, 970,
        ],
    ),
    (ARIZONA, &[480, 520, 602, 623, 928]),
    (
        PACIFIC,
        &[
            206, 209, 213, 236, 250, 253, 279, 310, 323, 341, 360, 408, 415, 424, 425, 442, 458,
            503, 509, 510, 530, 541, 559, 562, 564, 604, 619, 626, 628, 650, 657, 661, 669, 672,
            702, 707, 714, 725, 747, 760, 775, 778, 805, 818, 831, 858, 909, 916, 925, 949, 951,
            971,
        ],
    ),
    (ALASKA, &[907]),
    (HAWAII, &[808]),
    (ATLANTIC, &[506, 782, 902]),
    (NEWFOUNDLAND, &[709]),
    (PUERTO_RICO, &[787, 939]),
];

/// Country calling codes by zone (the capital's zone where a country has several).
const COUNTRIES: &[(&str, Zone)] = &[
    ("44", Zone::new("Europe/London", 0, Dst::Eu)),
    ("353", Zone::new("Europe/Dublin", 0, Dst::Eu)),
    ("351", Zone::new("Europe/Lisbon", 0, Dst::Eu)),
    ("33", Zone::new("Europe/Paris", 60, Dst::Eu)),
    ("49", Zone::new("Europe/Berlin", 60, Dst::Eu)),
    ("34", Zone::new("Europe/Madrid", 60, Dst::Eu)),
    ("39", Zone::new("Europe/Rome", 60, Dst::Eu)),
    ("31", Zone::new("Europe/Amsterdam", 60, Dst::Eu)),
    ("32", Zone::new("Europe/Brussels", 60, Dst::Eu)),
    ("41", Zone::new("Europe/Zurich", 60, Dst::Eu)),
    ("43", Zone::new("Europe/Vienna", 60, Dst::Eu)),
    ("45", Zone::new("Europe/Copenhagen", 60, Dst::Eu)),
    ("46", Zone::new("Europe/Stockholm", 60, Dst::Eu)),
    ("47", Zone::new("Europe/Oslo", 60, Dst::Eu)),
    ("48", Zone::new("Europe/Warsaw", 60, Dst::Eu)),
    ("420", Zone::new("Europe/Prague", 60, Dst::Eu)),
    ("30", Zone::new("Europe/Athens", 120, Dst::Eu)),
    ("358", Zone::new("Europe/Helsinki", 120, Dst::Eu)),
    ("40", Zone::new("Europe/Bucharest", 120, Dst::Eu)),
    ("380", Zone::new("Europe/Kyiv", 120, Dst::Eu)),
    ("90", Zone::new("Europe/Istanbul", 180, Dst::None)),
    ("27", Zone::new("Africa/Johannesburg", 120, Dst::None)),
    ("234", Zone::new("Africa/Lagos", 60, Dst::None)),
    ("254", Zone::new("Africa/Nairobi", 180, Dst::None)),
    ("971", Zone::new("Asia/Dubai", 240, Dst::None)),
    ("972", Zone::new("Asia/Jerusalem", 120, Dst::None)),
    ("91", Zone::new("Asia/Kolkata", 330, Dst::None)),
    ("65", Zone::new("Asia/Singapore", 480, Dst::None)),
    ("63", Zone::new("Asia/Manila", 480, Dst::None)),
    ("86", Zone::new("Asia/Shanghai", 480, Dst::None)),
    ("852", Zone::new("Asia/Hong_Kong", 480, Dst::None)),
    ("81", Zone::new("Asia/Tokyo", 540, Dst::None)),
    ("82", Zone::new("Asia/Seoul", 540, Dst::None)),
    ("61", Zone::new("Australia/Sydney", 600, Dst::None)),
    ("64", Zone::new("Pacific/Auckland", 720, Dst::None)),
    ("52", Zone::new("America/Mexico_City", -360, Dst::None)),
    ("55", Zone::new("America/Sao_Paulo", -180, Dst::None)),
    (
        "54",
        Zone::new("America/Argentina/Buenos_Aires", -180, Dst::None),
    ),
    ("57", Zone::new("America/Bogota", -300, Dst::None)),
];

/// The zones a number's recipient may be in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneGuess {
    /// One zone, or several when the table cannot tell (a window must be open in all).
    pub zones: Vec<Zone>,
    /// Whether the number's area or country code is in the table.
    pub known: bool,
}

impl ZoneGuess {
    /// Looks `number` up (see the module docs for the table's limits).
    pub fn for_number(number: &E164) -> Self {
        let digits = &number.as_str()[1..];
        if let Some(national) = digits.strip_prefix('1') {
            let area = national.get(..3).and_then(|a| a.parse::<u16>().ok());
            let zone = area.and_then(|area| {
                NANP.iter()
                    .find(|(_, codes)| codes.contains(&area))
                    .map(|(zone, _)| *zone)
            });
            return match zone {
                Some(zone) => Self {
                    zones: vec![zone],
                    known: true,
                },
                None => Self {
                    zones: vec![EASTERN, PACIFIC],
                    known: false,
                },
            };
        }
        // Country codes are prefix-free: at most one matches.
        match COUNTRIES.iter().find(|(code, _)| digits.starts_with(code)) {
            Some((_, zone)) => Self {
                zones: vec![*zone],
                known: true,
            },
            None => Self {
                zones: vec![Zone::UTC],
                known: false,
            },
        }
    }

    /// The first zone alone: the fallback when a window is never open in all the zones at once
    /// (an unknown `+1` area code with a short window).
    #[must_use]
    pub fn first_only(&self) -> Self {
        Self {
            zones: self.zones[..1].to_vec(),
            known: self.known,
        }
    }

    /// A name for people: `America/New_York`, or `America/New_York+America/Los_Angeles`.
    pub fn name(&self) -> String {
        self.zones
            .iter()
            .map(|z| z.name)
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// A daily window of local time in which messages may go out: `[start, end)` in minutes since
/// local midnight; `start > end` wraps past midnight; `start == end` is always open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    /// First allowed minute of the day.
    pub start_minute: u32,
    /// First minute no longer allowed.
    pub end_minute: u32,
}

impl SendWindow {
    /// Whether local minute `minute` is inside the window.
    pub fn contains(&self, minute: u32) -> bool {
        match self.start_minute.cmp(&self.end_minute) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => (self.start_minute..self.end_minute).contains(&minute),
            std::cmp::Ordering::Greater => minute >= self.start_minute || minute < self.end_minute,
        }
    }

    /// Whether `utc_ms` is inside the window in every zone of `guess`.
    pub fn is_open(&self, guess: &ZoneGuess, utc_ms: i64) -> bool {
        guess
            .zones
            .iter()
            .all(|zone| self.contains(zone.local_minute_of_day(utc_ms)))
    }

    /// The first instant at or after `utc_ms` when the window is open in every zone of
    /// `guess`, looking at most 3 days ahead, to the minute (window edges are whole local
    /// minutes and every offset here is whole minutes). `None` when the zones' windows never
    /// overlap in that time.
    pub fn next_open(&self, guess: &ZoneGuess, utc_ms: i64) -> Option<i64> {
        first_open(utc_ms, 3, |t| self.is_open(guess, t))
    }
}

/// `utc_ms` if `open` there, else the first whole minute after it, at most `days` ahead, where
/// `open` holds (window edges are whole local minutes and every offset here is whole minutes).
fn first_open(utc_ms: i64, days: i64, open: impl Fn(i64) -> bool) -> Option<i64> {
    if open(utc_ms) {
        return Some(utc_ms);
    }
    let first = (utc_ms.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
    (0..days * 24 * 60)
        .map(|step| first + step * MINUTE_MS)
        .find(|&t| open(t))
}

/// When calls may be placed: a daily window of local time on some days of the week. Each
/// instant is checked against its own local day (so the hours after midnight of a window that
/// wraps count as the next day's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallingWindow {
    /// The hours.
    pub hours: SendWindow,
    /// Allowed days, indexed 0 Sunday ... 6 Saturday.
    pub days: [bool; 7],
}

impl CallingWindow {
    /// Whether `utc_ms` is inside the hours, on an allowed day, in every zone of `guess`.
    pub fn is_open(&self, guess: &ZoneGuess, utc_ms: i64) -> bool {
        guess.zones.iter().all(|zone| {
            self.days[zone.local_weekday(utc_ms) as usize]
                && self.hours.contains(zone.local_minute_of_day(utc_ms))
        })
    }

    /// The first instant at or after `utc_ms` when the window is open in every zone of `guess`,
    /// looking at most 8 days ahead, to the minute. `None` when no day is allowed or the zones'
    /// windows never overlap.
    pub fn next_open(&self, guess: &ZoneGuess, utc_ms: i64) -> Option<i64> {
        first_open(utc_ms, 8, |t| self.is_open(guess, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn utc(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> i64 {
        days_from_civil(year, month, day) * DAY_MS + hour * HOUR_MS + minute * MINUTE_MS
    }

    fn guess(number: &str) -> ZoneGuess {
        ZoneGuess::for_number(&E164::parse(number).unwrap())
    }

    #[test]
    fn calling_hours_skip_sundays_in_the_callees_zone() {
        let window = CallingWindow {
            hours: SendWindow {
                start_minute: 9 * 60,
                end_minute: 20 * 60,
            },
            days: [false, true, true, true, true, true, true],
        };
        // Saturday 5 December 2026, 21:00 in San Francisco (Sunday 05:00 UTC): closed until
        // Monday 09:00 PST (17:00 UTC), the Sunday skipped.
        let sf = guess("+14155550100");
        assert_eq!(PACIFIC.local_weekday(utc(2026, 12, 6, 5, 0)), 6);
        assert_eq!(
            window.next_open(&sf, utc(2026, 12, 6, 5, 0)),
            Some(utc(2026, 12, 7, 17, 0))
        );
        // The same instant is Sunday 05:00 in London: Monday 09:00 GMT.
        let london = guess("+442071234567");
        assert_eq!(
            window.next_open(&london, utc(2026, 12, 6, 5, 0)),
            Some(utc(2026, 12, 7, 9, 0))
        );
        // Friday 4 December 13:00 UTC: open in London, 05:00 in San Francisco.
        assert!(window.is_open(&london, utc(2026, 12, 4, 13, 0)));
        assert!(!window.is_open(&sf, utc(2026, 12, 4, 13, 0)));
        assert_eq!(
            window.next_open(&sf, utc(2026, 12, 4, 13, 0)),
            Some(utc(2026, 12, 4, 17, 0))
        );
        // 20:00 local is closed (the window is [09:00, 20:00)).
        assert!(!window.is_open(&sf, utc(2026, 12, 5, 4, 0)));
        assert!(window.is_open(&sf, utc(2026, 12, 5, 3, 59)));
        let never = CallingWindow {
            days: [false; 7],
            ..window
        };
        assert_eq!(never.next_open(&sf, utc(2026, 12, 4, 13, 0)), None);
    }

    #[test]
    fn us_daylight_saving_switches_at_two_local() {
        // 2026: DST from Sunday 8 March to Sunday 1 November.
        assert_eq!(nth_sunday(2026, 3, 2), days_from_civil(2026, 3, 8));
        assert_eq!(nth_sunday(2026, 11, 1), days_from_civil(2026, 11, 1));
        let ny = EASTERN;
        assert_eq!(ny.offset_ms(utc(2026, 3, 8, 6, 59)), -5 * HOUR_MS);
        assert_eq!(ny.offset_ms(utc(2026, 3, 8, 7, 0)), -4 * HOUR_MS);
        assert_eq!(ny.offset_ms(utc(2026, 11, 1, 5, 59)), -4 * HOUR_MS);
        assert_eq!(ny.offset_ms(utc(2026, 11, 1, 6, 0)), -5 * HOUR_MS);
        assert_eq!(ARIZONA.offset_ms(utc(2026, 7, 1, 12, 0)), -7 * HOUR_MS);
    }

    #[test]
    fn eu_daylight_saving_switches_at_one_utc() {
        // 2026: last Sundays are 29 March and 25 October.
        let paris = COUNTRIES.iter().find(|(c, _)| *c == "33").unwrap().1;
        assert_eq!(paris.offset_ms(utc(2026, 3, 29, 0, 59)), HOUR_MS);
        assert_eq!(paris.offset_ms(utc(2026, 3, 29, 1, 0)), 2 * HOUR_MS);
        assert_eq!(paris.offset_ms(utc(2026, 10, 25, 0, 59)), 2 * HOUR_MS);
        assert_eq!(paris.offset_ms(utc(2026, 10, 25, 1, 0)), HOUR_MS);
    }

    #[test]
    fn numbers_map_to_their_zone() {
        assert_eq!(guess("+14155550100").zones, vec![PACIFIC]);
        assert_eq!(guess("+12125550100").zones, vec![EASTERN]);
        assert_eq!(guess("+16025550100").zones, vec![ARIZONA]);
        assert_eq!(guess("+18085550100").zones, vec![HAWAII]);
        assert_eq!(guess("+442071234567").zones[0].name, "Europe/London");
        assert_eq!(guess("+919812345678").zones[0].standard_offset_minutes, 330);
        let unknown = guess("+15005550100");
        assert!(!unknown.known);
        assert_eq!(unknown.zones, vec![EASTERN, PACIFIC]);
        let nowhere = guess("+99912345678");
        assert_eq!((nowhere.known, nowhere.zones[0]), (false, Zone::UTC));
    }

    #[test]
    fn next_open_waits_for_local_morning() {
        let window = SendWindow {
            start_minute: 8 * 60,
            end_minute: 21 * 60,
        };
        let sf = guess("+14155550100");
        // 2026-12-04 13:00 UTC is 05:00 in San Francisco (PST, -8).
        let at = utc(2026, 12, 4, 13, 0);
        assert!(!window.is_open(&sf, at));
        assert_eq!(window.next_open(&sf, at), Some(utc(2026, 12, 4, 16, 0)));
        // 21:00 local is closed; 20:59 open.
        assert!(window.is_open(&sf, utc(2026, 12, 5, 4, 59)));
        assert!(!window.is_open(&sf, utc(2026, 12, 5, 5, 0)));
        // Unknown +1: open only when both coasts are (11:00 ET .. 21:00 ET).
        let both = guess("+15005550100");
        assert_eq!(window.next_open(&both, at), Some(utc(2026, 12, 4, 16, 0)));
        assert!(!window.is_open(&both, utc(2026, 12, 5, 2, 0)));
        // A wrapping window.
        let night = SendWindow {
            start_minute: 22 * 60,
            end_minute: 6 * 60,
        };
        assert!(night.contains(23 * 60) && night.contains(0) && !night.contains(12 * 60));
    }
}
