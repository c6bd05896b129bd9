//! Reading a candidate's reply to the follow-up SMS ("reply with a good time, or CALL to be
//! called now"), sans-IO: [`parse`] turns the text into a [`Reply`], [`resolve`] turns a wanted
//! time into an instant in the candidate's zone, [`describe`] says that instant back in their
//! local time.
//!
//! What is understood, in any case and with any punctuation:
//! - now: `CALL`, `call me`, `now`, `asap`, `yes`, `ready` (unless the message also says `not`,
//!   `later`, `busy`, ...);
//! - a day: `today`, `tonight`, `tomorrow` (`tmrw`), a weekday (`monday`, `tue`, ...);
//! - a time: `3pm`, `3:30 pm`, `10 a.m.`, `15:00`, `noon`, `morning` (10:00), `afternoon`
//!   (14:00), `evening` (18:00), or a bare hour after `at`/`after`/`around`/`about`/`by` (or
//!   alone) read as a working hour: 1-7 PM, 8-11 AM, 12 noon.
//!
//! A day without a time means the calling window's first minute; a time without a day means
//! its next occurrence. Anything else is [`Reply::Unclear`] and gets the help text: a wrong
//! guess would ring the candidate at a time they never asked for.

use voxbridge_twilio::messaging::Zone;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// What a reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Call as soon as calling hours allow.
    CallNow,
    /// Call at a local day and time.
    At(Wanted),
    /// Neither: answered with the help text, nothing changes.
    Unclear,
}

/// A local time the candidate asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// Which day.
    pub(crate) day: Day,
    /// Minutes after local midnight; `None`: the calling window's start.
    pub(crate) minute: Option<u32>,
}

/// The day of a [`Wanted`] time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Day {
    /// The next time the minute comes round (today if it is still ahead).
    Next,
    /// Today.
    Today,
    /// Tomorrow.
    Tomorrow,
    /// The next such weekday (0 Sunday ... 6 Saturday); today if the time is still ahead.
    Weekday(u32),
}

/// Whether the reply asks for a time, to be called now, or neither.
pub(crate) fn parse(text: &str) -> Reply {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .filter(|c| *c != '.')
        .map(|c| match c {
            '\u{2019}' => '\'',
            c if c.is_alphanumeric() || c == ':' || c == '\'' => c,
            _ => ' ',
        })
        .collect();
    // Words as written ("we'd", "don't") and without their apostrophes ("wed", "dont"): a
    // contraction is never read as a day.
    let written: Vec<&str> = cleaned.split_whitespace().collect();
    let words: Vec<String> = written.iter().map(|w| w.replace('\'', "")).collect();
    let tokens: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut day = None;
    let mut minute = None;
    let mut part_of_day = None;
    let mut evening = false;
    let mut morning = false;
    // "3 in the afternoon": a part of the day anchors a bare hour.
    let day_part = tokens
        .iter()
        .any(|t| matches!(*t, "morning" | "afternoon" | "evening" | "tonight"));
    for (i, token) in tokens.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| tokens[p]);
        let next = tokens.get(i + 1).copied();
        match *token {
            "today" => day = Some(Day::Today),
            "tonight" => {
                day = Some(Day::Today);
                evening = true;
                part_of_day.get_or_insert(18 * 60);
            }
            "tomorrow" | "tomorow" | "tmrw" | "tmr" | "tmw" => day = Some(Day::Tomorrow),
            "noon" | "midday" | "lunchtime" => {
                minute.get_or_insert(ClockTime {
                    minute: 12 * 60,
                    guessed_pm: false,
                });
            }
            "morning" => {
                part_of_day = Some(10 * 60);
                morning = true;
            }
            "afternoon" => {
                part_of_day = Some(14 * 60);
                evening = true;
            }
            "evening" => {
                part_of_day = Some(18 * 60);
                evening = true;
            }
            _ => {
                let weekday = (!written[i].contains('\''))
                    .then(|| weekday(token))
                    .flatten();
                if let Some(weekday) = weekday {
                    day = Some(Day::Weekday(weekday));
                } else if let Some(time) = clock_time(token, next, previous, day_part) {
                    // The first time named wins ("from 3pm to 5pm" is 3 PM).
                    minute.get_or_insert(time);
                }
            }
        }
    }
    if let Some(time) = minute.as_mut() {
        let stated = tokens
            .iter()
            .any(|t| t.ends_with("am") || t.ends_with("pm"));
        if !stated && evening && time.minute < 12 * 60 {
            // A bare hour with the part of the day given ("3 in the afternoon", "tonight at 7").
            time.minute += 12 * 60;
        } else if !stated && morning && time.guessed_pm {
            // "7 in the morning": not the working-hour guess of 7 PM.
            time.minute -= 12 * 60;
        }
    }
    let negated = tokens.iter().any(|t| {
        matches!(
            *t,
            "not" | "dont" | "cant" | "cannot" | "later" | "busy" | "no" | "never" | "wait"
        )
    });
    let minute = minute.map(|t| t.minute);
    // "not today", "can't talk today": a refusal, not a time; "not now, 3pm" names one.
    if (day.is_some() || part_of_day.is_some()) && minute.is_none() && negated {
        return Reply::Unclear;
    }
    let minute = minute.or(part_of_day);
    if day.is_some() || minute.is_some() {
        return Reply::At(Wanted {
            day: day.unwrap_or(Day::Next),
            minute,
        });
    }
    let now = tokens.iter().any(|t| {
        matches!(
            *t,
            "call" | "now" | "asap" | "yes" | "ready" | "yeah" | "sure"
        )
    });
    if now && !negated {
        Reply::CallNow
    } else {
        Reply::Unclear
    }
}

/// A clock time read from the reply.
#[derive(Debug, Clone, Copy)]
struct ClockTime {
    /// Minutes after midnight.
    minute: u32,
    /// A bare 1-7 read as PM (a working hour), which "morning" undoes.
    guessed_pm: bool,
}

/// 0 Sunday ... 6 Saturday for a weekday name (or plural: "mondays") or its usual
/// abbreviation.
fn weekday(token: &str) -> Option<u32> {
    const SHORT: [(&str, u32); 11] = [
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("tues", 2),
        ("wed", 3),
        ("weds", 3),
        ("thu", 4),
        ("thur", 4),
        ("thurs", 4),
        ("fri", 5),
        ("sat", 6),
    ];
    let full = token.strip_suffix('s').unwrap_or(token);
    WEEKDAYS
        .iter()
        .position(|day| *day == token || *day == full)
        .map(|i| i as u32)
        .or_else(|| {
            SHORT
                .iter()
                .find(|(short, _)| *short == token)
                .map(|(_, day)| *day)
        })
}

/// Minutes after midnight of a clock time: `3pm`, `3:30pm`, `15:00`, `3` followed by `pm`/`am`
/// or `oclock`, or a bare hour after `at`, `after`, `around`, `about`, `by`, `from`.
fn clock_time(
    token: &str,
    next: Option<&str>,
    previous: Option<&str>,
    day_part: bool,
) -> Option<ClockTime> {
    let (digits, suffix) = token.split_at(
        token
            .find(|c: char| !c.is_ascii_digit() && c != ':')
            .unwrap_or(token.len()),
    );
    if digits.is_empty() {
        return None;
    }
    let meridiem = match (suffix, next) {
        ("am" | "a", _) | ("", Some("am")) => Some(false),
        ("pm" | "p", _) | ("", Some("pm")) => Some(true),
        ("", _) => None,
        _ => return None,
    };
    let (hour, minute, colon) = match digits.split_once(':') {
        Some((h, m)) if m.len() == 2 => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?, true),
        Some(_) => return None,
        None => (digits.parse::<u32>().ok()?, 0, false),
    };
    if minute > 59 || hour > 23 {
        return None;
    }
    let anchored = colon
        || meridiem.is_some()
        || day_part
        || next == Some("oclock")
        || matches!(
            previous,
            Some("at" | "after" | "around" | "about" | "by" | "from" | "til" | "until" | "till")
        )
        || (previous.is_none() && next.is_none());
    if !anchored {
        return None;
    }
    let mut guessed_pm = false;
    let hour = match meridiem {
        Some(pm) => {
            if hour == 0 || hour > 12 {
                return None;
            }
            (hour % 12) + if pm { 12 } else { 0 }
        }
        // A working hour: "at 3" is 3 PM, "at 9" 9 AM; 24-hour times stand.
        None if (1..=7).contains(&hour) && !colon => {
            guessed_pm = true;
            hour + 12
        }
        None => hour,
    };
    Some(ClockTime {
        minute: hour * 60 + minute,
        guessed_pm,
    })
}

/// The instant (Unix ms) of `wanted` in `zone`, seen from `now_ms`; `default_minute` stands
/// for a day without a time. Never before `now_ms`.
pub(crate) fn resolve(wanted: Wanted, zone: &Zone, now_ms: i64, default_minute: u32) -> i64 {
    let local_now = now_ms + zone.offset_ms(now_ms);
    let midnight = local_now.div_euclid(DAY_MS) * DAY_MS;
    let today = zone.local_weekday(now_ms);
    let now_minute = zone.local_minute_of_day(now_ms);
    let minute = wanted.minute.unwrap_or(default_minute);
    let ahead = minute > now_minute;
    let days = match wanted.day {
        Day::Today => 0,
        Day::Tomorrow => 1,
        Day::Next => i64::from(!ahead),
        Day::Weekday(day) => {
            let days = i64::from((day + 7 - today) % 7);
            if days == 0 && !ahead { 7 } else { days }
        }
    };
    let local = midnight + days * DAY_MS + i64::from(minute) * MINUTE_MS;
    // The offset at the wanted time (a daylight-saving change may lie between).
    let utc = local - zone.offset_ms(local - zone.offset_ms(now_ms));
    utc.max(now_ms)
}

/// `at_ms` in the candidate's words, from `now_ms`: `today at 3:00 PM`, `tomorrow at 10:00 AM`,
/// `on Monday at 9:00 AM`.
pub(crate) fn describe(zone: &Zone, now_ms: i64, at_ms: i64) -> String {
    let day_of = |t: i64| (t + zone.offset_ms(t)).div_euclid(DAY_MS);
    let minute = zone.local_minute_of_day(at_ms);
    let (hour, minute) = (minute / 60, minute % 60);
    let clock = format!(
        "{}:{minute:02} {}",
        match hour % 12 {
            0 => 12,
            h => h,
        },
        if hour < 12 { "AM" } else { "PM" }
    );
    match day_of(at_ms) - day_of(now_ms) {
        0 => format!("today at {clock}"),
        1 => format!("tomorrow at {clock}"),
        _ => {
            let name = WEEKDAYS[zone.local_weekday(at_ms) as usize];
            let mut name = name.to_owned();
            name[..1].make_ascii_uppercase();
            format!("on {name} at {clock}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: Day, minute: Option<u32>) -> Reply {
        Reply::At(Wanted { day, minute })
    }

    #[test]
    fn times_days_and_call_now_are_understood() {
        for (text, expected) in [
            ("CALL", Reply::CallNow),
            ("Call me now please!", Reply::CallNow),
            ("yes", Reply::CallNow),
            ("3pm", at(Day::Next, Some(15 * 60))),
            ("3:30 PM", at(Day::Next, Some(15 * 60 + 30))),
            ("at 10 a.m.", at(Day::Next, Some(10 * 60))),
            ("Tomorrow 10am", at(Day::Tomorrow, Some(10 * 60))),
            ("tmrw at 4", at(Day::Tomorrow, Some(16 * 60))),
            ("after 5", at(Day::Next, Some(17 * 60))),
            ("15:00", at(Day::Next, Some(15 * 60))),
            ("monday morning", at(Day::Weekday(1), Some(10 * 60))),
            ("Thurs at noon", at(Day::Weekday(4), Some(12 * 60))),
            ("weds 9 in the morning", at(Day::Weekday(3), Some(9 * 60))),
            ("friday", at(Day::Weekday(5), None)),
            ("tonight at 7", at(Day::Today, Some(19 * 60))),
            ("3 in the afternoon", at(Day::Next, Some(15 * 60))),
            ("9", at(Day::Next, Some(9 * 60))),
            ("today", at(Day::Today, None)),
            ("not now", Reply::Unclear),
            ("who is this?", Reply::Unclear),
            ("I have 2 kids", Reply::Unclear),
            ("call me later", Reply::Unclear),
            ("not today", Reply::Unclear),
            ("can't talk today", Reply::Unclear),
            ("not now, 3pm", at(Day::Next, Some(15 * 60))),
            ("tomorrow morning at 7", at(Day::Tomorrow, Some(7 * 60))),
            ("7 in the morning", at(Day::Next, Some(7 * 60))),
            ("we'd like 3pm", at(Day::Next, Some(15 * 60))),
            ("thus", Reply::Unclear),
            ("from 3pm to 5pm", at(Day::Next, Some(15 * 60))),
            ("Mondays at 10am", at(Day::Weekday(1), Some(10 * 60))),
            ("I\u{2019}m free at noon", at(Day::Next, Some(12 * 60))),
        ] {
            assert_eq!(parse(text), expected, "{text:?}");
        }
    }

    /// 2026-12-02 (a Wednesday) at `hour`:`minute` in New York (UTC-5 in December).
    fn new_york(day: i64, hour: i64, minute: i64) -> i64 {
        // 2026-12-02 00:00 UTC.
        let midnight_utc = 1_796_169_600_000;
        midnight_utc + (day - 2) * DAY_MS + (hour + 5) * 3_600_000 + minute * MINUTE_MS
    }

    fn zone() -> Zone {
        voxbridge_twilio::messaging::ZoneGuess::for_number(
            &voxbridge_twilio::E164::parse("+12125550100").unwrap(),
        )
        .zones[0]
    }

    #[test]
    fn wanted_times_land_in_the_candidates_zone() {
        let zone = zone();
        let now = new_york(2, 11, 0); // Wednesday 11:00
        let resolve = |day, minute| resolve(Wanted { day, minute }, &zone, now, 9 * 60);
        assert_eq!(resolve(Day::Next, Some(15 * 60)), new_york(2, 15, 0));
        assert_eq!(
            resolve(Day::Next, Some(10 * 60)),
            new_york(3, 10, 0),
            "passed"
        );
        assert_eq!(resolve(Day::Tomorrow, None), new_york(3, 9, 0));
        assert_eq!(resolve(Day::Weekday(5), Some(14 * 60)), new_york(4, 14, 0));
        assert_eq!(resolve(Day::Weekday(3), Some(10 * 60)), new_york(9, 10, 0));
        assert_eq!(resolve(Day::Weekday(3), Some(16 * 60)), new_york(2, 16, 0));
        assert_eq!(
            resolve(Day::Today, None),
            now,
            "the window's start has passed"
        );
        assert_eq!(describe(&zone, now, new_york(2, 15, 0)), "today at 3:00 PM");
        assert_eq!(
            describe(&zone, now, new_york(3, 9, 30)),
            "tomorrow at 9:30 AM"
        );
        assert_eq!(
            describe(&zone, now, new_york(7, 12, 0)),
            "on Monday at 12:00 PM"
        );
    }
}
