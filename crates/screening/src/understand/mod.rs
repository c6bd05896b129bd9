//! Understanding spoken answers as ASR hands them over.
//!
//! Rule-based and deterministic: text is normalised (lower case, contractions expanded,
//! punctuation dropped), then matched against phrase lists. Every result carries a confidence:
//! clear answers score at least 0.8, hedged ones ("about", "I think", "a few") at most 0.75, and
//! contradictory ones about 0.5, so the agent can re-ask below its `min_confidence`.

use serde::Serialize;

use super::numbers::{NumberMatch, find_numbers};
use super::script::{AnswerType, ChoiceOption};

/// Confidence cap for hedged answers ("about five", "I think so").
const HEDGED: f32 = 0.75;

/// Something the caller wants, whatever the question was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// "Can I talk to a person?"
    Handoff,
    /// "Call me later", "not a good time", "I'm driving".
    Callback,
    /// "Can you repeat that?", "What?"
    Repeat,
    /// An answering machine greeting.
    Voicemail,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// When a candidate can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Availability {
    /// "Immediately", "right away", "today".
    Immediately,
    /// "In two weeks", "tomorrow", "next month".
    InDays {
        /// Days from the call.
        days: u32,
    },
    /// "Next Monday", "on Friday".
    Weekday {
        /// The day.
        weekday: Weekday,
        /// Said with "next".
        next: bool,
    },
    /// "After the 15th", "on the 1st".
    DayOfMonth {
        /// Day of the month.
        day: u8,
        /// Said with "after".
        after: bool,
    },
    /// "June 1st", "the first of June".
    Date {
        /// Month, 1-12.
        month: u8,
        /// Day of the month.
        day: u8,
    },
}

/// An understood answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnswerValue {
    /// Yes (`true`) or no.
    YesNo {
        /// The answer.
        value: bool,
    },
    /// A number, in the question's unit.
    Number {
        /// The value.
        value: f64,
        /// The unit, from the script.
        #[serde(skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
    /// A choice option id.
    Choice {
        /// The option id.
        option: String,
    },
    /// Free text, as said.
    FreeText {
        /// The text.
        text: String,
    },
    /// A start date.
    Availability {
        /// When.
        availability: Availability,
    },
}

/// A parsed answer with its confidence in `0.0..=1.0`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Understood {
    /// The value.
    pub value: AnswerValue,
    /// How sure the parse is.
    pub confidence: f32,
}

/// A normalised utterance: lower case, contractions expanded, punctuation dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    text: String,
}

impl Utterance {
    /// Normalises raw ASR text.
    pub fn new(raw: &str) -> Self {
        let mut s = String::with_capacity(raw.len() + 8);
        let chars: Vec<char> = raw.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            let c = match c {
                '\u{2019}' | '\u{2018}' | '`' => '\'',
                c => c.to_ascii_lowercase(),
            };
            let digit_at = |k: Option<usize>| {
                k.and_then(|k| chars.get(k))
                    .is_some_and(char::is_ascii_digit)
            };
            let between_digits = digit_at(i.checked_sub(1)) && digit_at(Some(i + 1));
            match c {
                c if c.is_alphanumeric() || c == '\'' || c == '+' => s.push(c),
                '.' if between_digits => s.push('.'),
                ',' if between_digits => {}
                _ => s.push(' '),
            }
        }
        let mut words = Vec::new();
        for w in s.split_whitespace() {
            let w = w.trim_matches('\'');
            match w {
                "can't" | "cannot" => words.extend(["can", "not"]),
                "won't" => words.extend(["will", "not"]),
                "ain't" => words.extend(["am", "not"]),
                "i'm" | "im" => words.extend(["i", "am"]),
                "gonna" => words.extend(["going", "to"]),
                "wanna" => words.extend(["want", "to"]),
                "y'all" => words.push("you"),
                _ => {
                    if let Some(stem) = w.strip_suffix("n't") {
                        words.push(stem);
                        words.push("not");
                    } else if let Some((stem, tail)) = w.split_once('\'') {
                        words.push(stem);
                        words.push(match tail {
                            "ve" => "have",
                            "ll" => "will",
                            "re" => "are",
                            "d" => "would",
                            "m" => "am",
                            "s" => "is",
                            other => other,
                        });
                    } else if !w.is_empty() {
                        words.push(w);
                    }
                }
            }
        }
        Self {
            text: words.join(" "),
        }
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn tokens(&self) -> Vec<&str> {
        self.text.split(' ').filter(|w| !w.is_empty()).collect()
    }

    /// Whether the whole-word `phrase` (already normalised) occurs.
    fn has(&self, phrase: &str) -> bool {
        find_phrase(&self.tokens(), phrase).is_some()
    }

    fn has_any(&self, phrases: &[&str]) -> bool {
        let tokens = self.tokens();
        phrases.iter().any(|p| find_phrase(&tokens, p).is_some())
    }

    fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// Token index where `phrase` starts, whole words only.
fn find_phrase(tokens: &[&str], phrase: &str) -> Option<usize> {
    let words: Vec<&str> = phrase.split_whitespace().collect();
    if words.is_empty() || words.len() > tokens.len() {
        return None;
    }
    (0..=tokens.len() - words.len()).find(|&i| tokens[i..i + words.len()] == words[..])
}

const HEDGES: &[&str] = &[
    "about",
    "around",
    "roughly",
    "approximately",
    "maybe",
    "probably",
    "i think",
    "i guess",
    "i would say",
    "or so",
    "give or take",
    "ish",
    "kind of",
    "sort of",
    "more or less",
    "almost",
    "nearly",
    "i believe",
    "like",
    "something like",
];

fn hedged(u: &Utterance) -> bool {
    u.has_any(HEDGES)
}

const VOICEMAIL_PHRASES: &[&str] = &[
    "leave a message",
    "leave your message",
    "leave me a message",
    "after the tone",
    "after the beep",
    "voicemail",
    "voice mail",
    "mailbox",
    "record your message",
    "not available to take your call",
];

const HANDOFF_PHRASES: &[&str] = &[
    "real person",
    "real human",
    "actual person",
    "live person",
    "live agent",
    "human being",
    "representative",
    "operator",
    "a human",
    "customer service",
];

const CALLBACK_PHRASES: &[&str] = &[
    "call me later",
    "call me back",
    "call back later",
    "call me another time",
    "call me tomorrow",
    "call me some other time",
    "call later",
    "call back",
    "not a good time",
    "bad time",
    "i am driving",
    "i am at work",
    "i am busy",
    "busy right now",
    "in a meeting",
    "can not talk",
    "talk later",
    "another time",
    "some other time",
    "later please",
];

const REPEAT_PHRASES: &[&str] = &[
    "repeat",
    "say that again",
    "say it again",
    "come again",
    "pardon",
    "one more time",
    "did not catch",
    "did not hear",
    "did not get that",
    "what was the question",
    "what did you say",
];

/// What the caller wants regardless of the question, if anything. `voicemail` enables
/// answering-machine detection (only sensible before the first answer).
pub fn detect_intent(raw: &str, voicemail: bool) -> Option<Intent> {
    let u = Utterance::new(raw);
    if voicemail && u.has_any(VOICEMAIL_PHRASES) {
        return Some(Intent::Voicemail);
    }
    let tokens = u.tokens();
    let handoff_targets = [
        "person",
        "human",
        "someone",
        "somebody",
        "recruiter",
        "agent",
        "representative",
        "rep",
        "manager",
        "operator",
        "anyone",
        "people",
    ];
    let asks_to_talk = tokens.iter().enumerate().any(|(i, w)| {
        matches!(*w, "talk" | "speak" | "transfer" | "connect")
            && tokens[i + 1..]
                .iter()
                .take(5)
                .any(|t| handoff_targets.contains(t))
    });
    if asks_to_talk || u.has_any(HANDOFF_PHRASES) {
        return Some(Intent::Handoff);
    }
    if u.has_any(CALLBACK_PHRASES) {
        return Some(Intent::Callback);
    }
    let short_only = !tokens.is_empty()
        && tokens.len() <= 3
        && tokens.iter().all(|t| {
            matches!(
                *t,
                "what"
                    | "huh"
                    | "sorry"
                    | "pardon"
                    | "excuse"
                    | "me"
                    | "eh"
                    | "hmm"
                    | "come"
                    | "again"
            )
        });
    if short_only || u.has_any(REPEAT_PHRASES) {
        return Some(Intent::Repeat);
    }
    None
}

/// Understands `raw` as an answer of type `answer`; `None` when it is not an answer at all.
pub fn understand(answer: &AnswerType, raw: &str) -> Option<Understood> {
    let (value, confidence) = match answer {
        AnswerType::YesNo { .. } => {
            let (v, c) = yes_no(raw)?;
            (AnswerValue::YesNo { value: v }, c)
        }
        AnswerType::Number { unit, .. } => {
            let (v, c) = number(raw, unit.as_deref())?;
            (
                AnswerValue::Number {
                    value: v,
                    unit: unit.clone(),
                },
                c,
            )
        }
        AnswerType::Choice { options, .. } => {
            let (option, c) = choice(raw, options)?;
            (AnswerValue::Choice { option }, c)
        }
        AnswerType::FreeText => {
            let u = Utterance::new(raw);
            if u.is_empty() {
                return None;
            }
            (
                AnswerValue::FreeText {
                    text: raw.trim().to_owned(),
                },
                0.9,
            )
        }
        AnswerType::Availability { .. } => {
            let (a, c) = availability(raw)?;
            (AnswerValue::Availability { availability: a }, c)
        }
    };
    Some(Understood { value, confidence })
}

/// Not an answer: the caller does not know.
const UNSURE: &[&str] = &[
    "not sure",
    "do not know",
    "no idea",
    "maybe",
    "not certain",
    "it depends",
    "depends",
    "hard to say",
    "unsure",
];

/// Cues in priority order at each position: longer, more specific phrases first.
const YES_NO_CUES: &[(&str, bool, f32)] = &[
    ("i do not mind", true, 0.85),
    ("i would not mind", true, 0.85),
    ("do not mind", true, 0.85),
    ("no problem", true, 0.85),
    ("not a problem", true, 0.85),
    ("why not", true, 0.8),
    ("i do not think so", false, HEDGED),
    ("i think so", true, HEDGED),
    ("i believe so", true, HEDGED),
    ("probably not", false, 0.65),
    ("not really", false, 0.85),
    ("not at all", false, 0.95),
    ("no way", false, 0.95),
    ("of course not", false, 0.95),
    ("i am not", false, 0.9),
    ("i do not", false, 0.9),
    ("i have not", false, 0.9),
    ("i have no", false, 0.9),
    ("i can not", false, 0.9),
    ("i will not", false, 0.9),
    ("i would not", false, 0.85),
    ("i was not", false, 0.85),
    ("i did not", false, 0.9),
    ("i have never", false, 0.9),
    ("of course", true, 0.95),
    ("for sure", true, 0.95),
    ("you bet", true, 0.9),
    ("that is right", true, 0.9),
    ("that is correct", true, 0.95),
    ("uh huh", true, 0.8),
    ("mm hmm", true, 0.8),
    ("i guess", true, 0.65),
    ("i am", true, 0.85),
    ("i do", true, 0.85),
    ("i have", true, 0.85),
    ("i can", true, 0.85),
    ("i will", true, 0.85),
    ("i did", true, 0.85),
    ("no", false, 0.95),
    ("nope", false, 0.95),
    ("nah", false, 0.9),
    ("negative", false, 0.9),
    ("never", false, 0.9),
    ("none", false, 0.85),
    ("not", false, 0.7),
    ("yes", true, 0.95),
    ("yeah", true, 0.95),
    ("yep", true, 0.95),
    ("yup", true, 0.95),
    ("yea", true, 0.9),
    ("ya", true, 0.85),
    ("yah", true, 0.85),
    ("absolutely", true, 0.95),
    ("definitely", true, 0.95),
    ("certainly", true, 0.95),
    ("correct", true, 0.95),
    ("affirmative", true, 0.95),
    ("totally", true, 0.9),
    ("indeed", true, 0.9),
    ("sure", true, 0.9),
    ("right", true, 0.8),
    ("okay", true, 0.75),
    ("ok", true, 0.75),
    ("mhm", true, 0.8),
    ("probably", true, 0.65),
];

/// Yes (`true`) or no, with a confidence. "I'm not authorized" is a no.
pub fn yes_no(raw: &str) -> Option<(bool, f32)> {
    let u = Utterance::new(raw);
    let tokens = u.tokens();
    let mut cues: Vec<(bool, f32)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let hit = YES_NO_CUES.iter().find(|(phrase, _, _)| {
            let words: Vec<&str> = phrase.split(' ').collect();
            tokens.get(i..i + words.len()) == Some(&words[..])
        });
        match hit {
            Some((phrase, value, confidence)) => {
                cues.push((*value, *confidence));
                i += phrase.split(' ').count();
            }
            None => i += 1,
        }
    }
    if cues.is_empty() {
        return None;
    }
    // "I'm not sure" is no answer, unless a bare yes/no word says otherwise.
    if u.has_any(UNSURE)
        && !tokens
            .iter()
            .any(|w| matches!(*w, "yes" | "yeah" | "yep" | "no" | "nope"))
    {
        return None;
    }
    let (value, mut confidence) = *cues.last().expect("not empty");
    if cues.iter().any(|(v, _)| *v != value) {
        // "Yeah, no" or a correction: the last word wins, but not with confidence.
        confidence = confidence.min(0.55);
    } else if cues.len() > 1 {
        let best = cues.iter().map(|(_, c)| *c).fold(0.0_f32, f32::max);
        confidence = (best + 0.03).min(0.98);
    }
    if hedged(&u) {
        confidence = confidence.min(HEDGED);
    }
    Some((value, confidence))
}

fn is_unit_word(w: &str) -> bool {
    matches!(
        w,
        "year" | "years" | "yr" | "yrs" | "month" | "months" | "week" | "weeks" | "day" | "days"
    )
}

/// The unit word right after a number (within its span for "a year and a half").
fn unit_after<'a>(tokens: &[&'a str], m: &NumberMatch) -> Option<&'a str> {
    tokens
        .get(m.start..=m.end.min(tokens.len().saturating_sub(1)))
        .and_then(|span| span.iter().copied().find(|w| is_unit_word(w)))
        .or_else(|| {
            // "five more years", "five full years"
            tokens.get(m.end + 1).copied().filter(|w| is_unit_word(w))
        })
}

fn convert(value: f64, said: Option<&str>, unit: Option<&str>) -> f64 {
    let per_year = |w: &str| match w {
        "month" | "months" => 12.0,
        "week" | "weeks" => 52.0,
        "day" | "days" => 365.0,
        _ => 1.0,
    };
    match (said, unit) {
        (Some(s), Some("years")) => value / per_year(s),
        (Some("year" | "years" | "yr" | "yrs"), Some("months")) => value * 12.0,
        _ => value,
    }
}

/// A number in the question's `unit`, with a confidence.
pub fn number(raw: &str, unit: Option<&str>) -> Option<(f64, f32)> {
    let u = Utterance::new(raw);
    let tokens = u.tokens();
    let found: Vec<NumberMatch> = find_numbers(&tokens)
        .into_iter()
        .filter(|m| !m.ordinal)
        .collect();
    let (m, mut confidence) = match found.as_slice() {
        [] => {
            let none = u.has_any(&[
                "none",
                "no experience",
                "do not have any",
                "never",
                "not any",
                "zero",
            ]);
            return none.then(|| (0.0, if hedged(&u) { HEDGED } else { 0.85 }));
        }
        [m] => (*m, m.confidence),
        [a, b, ..] => {
            let with_unit: Vec<&NumberMatch> = found
                .iter()
                .filter(|m| unit_after(&tokens, m).is_some())
                .collect();
            let joined = tokens[a.end..b.start]
                .iter()
                .all(|w| matches!(*w, "to" | "or" | "and" | "maybe"));
            if found.len() == 2 && joined && b.start > a.end || found.len() == 2 && b.start == a.end
            {
                // A range, "five to seven" / "5-7": the lower bound, hedged.
                (*a, a.confidence.min(HEDGED))
            } else if let [only] = with_unit.as_slice() {
                (**only, only.confidence.min(0.85))
            } else {
                (*a, 0.5)
            }
        }
    };
    let value = convert(m.value, unit_after(&tokens, &m), unit);
    if hedged(&u) {
        confidence = confidence.min(HEDGED);
    }
    Some((value, confidence))
}

/// Strips a plural `s` so "nights" matches "night".
fn singular(w: &str) -> &str {
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        &w[..w.len() - 1]
    } else {
        w
    }
}

/// The option of `options` the caller picked, with a confidence.
pub fn choice(raw: &str, options: &[ChoiceOption]) -> Option<(String, f32)> {
    let u = Utterance::new(raw);
    let tokens: Vec<&str> = u.tokens().into_iter().map(singular).collect();
    let negators = ["not", "no", "except", "but", "without"];
    let mut picked: Vec<(usize, &str)> = Vec::new();
    let mut excluded = false;
    for option in options {
        let phrases = std::iter::once(&option.id).chain(option.synonyms.iter());
        for phrase in phrases {
            let norm = Utterance::new(phrase);
            let words: Vec<&str> = norm.tokens().into_iter().map(singular).collect();
            if words.is_empty() || words.len() > tokens.len() {
                continue;
            }
            for i in 0..=tokens.len() - words.len() {
                if tokens[i..i + words.len()] != words[..] {
                    continue;
                }
                // "not nights", "no weekends", "anything but the night shift".
                let before = |k: usize| i.checked_sub(k).map_or("", |j| tokens[j]);
                let negated = !negators.contains(&words[0])
                    && (negators.contains(&before(1))
                        || matches!(before(1), "the" | "a" | "any")
                            && negators.contains(&before(2)));
                if negated {
                    excluded = true;
                } else {
                    picked.push((i, option.id.as_str()));
                }
            }
        }
    }
    picked.sort_unstable();
    let mut distinct: Vec<&str> = Vec::new();
    for (_, id) in &picked {
        if !distinct.contains(id) {
            distinct.push(id);
        }
    }
    let (id, mut confidence): (&str, f32) = match distinct.as_slice() {
        [] => return None,
        [one] => (*one, 0.95),
        many => match many.iter().find(|id| **id == "flexible") {
            Some(flexible) => (*flexible, 0.8),
            None => (many[0], 0.45),
        },
    };
    if excluded {
        confidence = confidence.min(0.6);
    }
    if hedged(&u) {
        confidence = confidence.min(HEDGED);
    }
    Some((id.to_owned(), confidence))
}

fn weekday(w: &str) -> Option<Weekday> {
    Some(match w {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

fn month(w: &str) -> Option<u8> {
    let months = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    months
        .iter()
        .position(|m| *m == w || (w.len() == 3 && m.starts_with(w) && w != "may"))
        .map(|p| p as u8 + 1)
}

/// When the candidate can start, with a confidence.
pub fn availability(raw: &str) -> Option<(Availability, f32)> {
    let u = Utterance::new(raw);
    let tokens = u.tokens();
    let cap = |c: f32| if hedged(&u) { c.min(HEDGED) } else { c };
    // A relative delay: "in two weeks", "a month", "two weeks notice".
    for m in find_numbers(&tokens).iter().filter(|m| !m.ordinal) {
        if let Some(unit) = unit_after(&tokens, m) {
            let per = match unit {
                "day" | "days" => 1.0,
                "week" | "weeks" => 7.0,
                "month" | "months" => 30.0,
                _ => 365.0,
            };
            let days = (m.value * per).round().clamp(0.0, 3650.0) as u32;
            return Some((Availability::InDays { days }, cap(m.confidence.min(0.9))));
        }
    }
    if u.has("next week") {
        return Some((Availability::InDays { days: 7 }, cap(0.8)));
    }
    if u.has("next month") {
        return Some((Availability::InDays { days: 30 }, cap(0.8)));
    }
    if u.has("tomorrow") {
        return Some((Availability::InDays { days: 1 }, cap(0.95)));
    }
    // A date: "June 1st", "the first of June", "after the 15th".
    let numbers = find_numbers(&tokens);
    for (i, w) in tokens.iter().enumerate() {
        if let Some(month) = month(w) {
            let day = numbers.iter().find(|n| {
                n.end == i || n.start == i + 1 || (n.end + 1 == i && tokens[n.end] == "of")
            });
            if let Some(day) = day.filter(|d| (1.0..=31.0).contains(&d.value)) {
                return Some((
                    Availability::Date {
                        month,
                        day: day.value as u8,
                    },
                    cap(0.9),
                ));
            }
        }
    }
    if let Some(day) = numbers
        .iter()
        .find(|n| n.ordinal && (1.0..=31.0).contains(&n.value))
    {
        let after = tokens[..day.start]
            .iter()
            .any(|w| matches!(*w, "after" | "from" | "starting"));
        return Some((
            Availability::DayOfMonth {
                day: day.value as u8,
                after,
            },
            cap(0.85),
        ));
    }
    if let Some((i, day)) = tokens
        .iter()
        .enumerate()
        .find_map(|(i, w)| weekday(singular(w)).or(weekday(w)).map(|d| (i, d)))
    {
        let next = i > 0 && tokens[i - 1] == "next";
        return Some((Availability::Weekday { weekday: day, next }, cap(0.9)));
    }
    if u.has_any(&[
        "immediately",
        "right away",
        "right now",
        "asap",
        "as soon as possible",
        "today",
        "any time",
        "anytime",
        "whenever",
        "straight away",
        "ready now",
        "now",
        "a s a p",
    ]) {
        return Some((Availability::Immediately, cap(0.95)));
    }
    None
}

/// A yes/no DTMF key: 1 = yes, 2 = no.
pub fn dtmf_yes_no(digit: char) -> Option<bool> {
    match digit {
        '1' => Some(true),
        '2' => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
