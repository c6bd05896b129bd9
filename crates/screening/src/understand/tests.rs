use super::*;
use crate::script::ChoiceOption;

#[test]
fn yes_no_variants() {
    // (utterance, expected, minimum confidence, maximum confidence)
    let table: &[(&str, bool, f32, f32)] = &[
        ("yes", true, 0.8, 1.0),
        ("Yeah.", true, 0.8, 1.0),
        ("yep, I am", true, 0.8, 1.0),
        ("Yup", true, 0.8, 1.0),
        ("sure", true, 0.8, 1.0),
        ("Absolutely!", true, 0.8, 1.0),
        ("definitely", true, 0.8, 1.0),
        ("of course", true, 0.8, 1.0),
        ("Yes I am.", true, 0.8, 1.0),
        ("I am", true, 0.8, 1.0),
        ("I do", true, 0.8, 1.0),
        ("uh huh", true, 0.8, 1.0),
        ("that's correct", true, 0.8, 1.0),
        ("yes ma'am", true, 0.8, 1.0),
        ("I don't mind", true, 0.8, 1.0),
        ("no problem", true, 0.8, 1.0),
        ("I think so", true, 0.5, 0.75),
        ("probably", true, 0.5, 0.75),
        ("nope", false, 0.8, 1.0),
        ("No.", false, 0.8, 1.0),
        ("nah", false, 0.8, 1.0),
        ("not really", false, 0.8, 1.0),
        ("no, I'm not", false, 0.8, 1.0),
        ("I'm not authorized", false, 0.8, 1.0),
        ("I am not", false, 0.8, 1.0),
        ("I don't have one", false, 0.8, 1.0),
        ("I haven't", false, 0.8, 1.0),
        ("never", false, 0.8, 1.0),
        ("not at all", false, 0.8, 1.0),
        ("I can’t", false, 0.8, 1.0),
        ("I don't think so", false, 0.5, 0.75),
        ("probably not", false, 0.5, 0.75),
        ("yeah, no", false, 0.0, 0.6),
    ];
    for (text, expected, lo, hi) in table {
        let (value, confidence) = yes_no(text).unwrap_or_else(|| panic!("{text:?} not understood"));
        assert_eq!(value, *expected, "{text:?}");
        assert!(
            (*lo..=*hi).contains(&confidence),
            "{text:?}: confidence {confidence} not in {lo}..={hi}"
        );
    }
}

#[test]
fn yes_no_rejects_non_answers() {
    for text in [
        "",
        "I'm not sure",
        "maybe",
        "I don't know",
        "the weather is nice",
        "hmm",
    ] {
        assert_eq!(yes_no(text), None, "{text:?}");
    }
}

#[test]
fn number_variants() {
    let table: &[(&str, f64, f32, f32)] = &[
        ("5", 5.0, 0.8, 1.0),
        ("five", 5.0, 0.8, 1.0),
        ("five years", 5.0, 0.8, 1.0),
        ("5 years", 5.0, 0.8, 1.0),
        ("5+", 5.0, 0.8, 1.0),
        ("one year", 1.0, 0.8, 1.0),
        ("a year", 1.0, 0.8, 1.0),
        ("twelve", 12.0, 0.8, 1.0),
        ("twenty-five", 25.0, 0.8, 1.0),
        ("five and a half", 5.5, 0.8, 1.0),
        ("two and a half years", 2.5, 0.8, 1.0),
        ("two thousand twenty-five", 2025.0, 0.8, 1.0),
        ("I have 3 years of experience", 3.0, 0.8, 1.0),
        ("six months", 0.5, 0.8, 1.0),
        ("a year and a half", 1.5, 0.8, 1.0),
        ("none", 0.0, 0.8, 1.0),
        ("I don't have any", 0.0, 0.8, 1.0),
        ("about five years", 5.0, 0.5, 0.75),
        ("I'd say around three", 3.0, 0.5, 0.75),
        ("ten years or so", 10.0, 0.5, 0.75),
        ("maybe 4", 4.0, 0.5, 0.75),
        ("five to seven years", 5.0, 0.5, 0.75),
        ("a couple", 2.0, 0.5, 0.75),
        ("a couple of years", 2.0, 0.5, 0.75),
        ("a few", 3.0, 0.4, 0.75),
        ("I'm 30 and I have 8 years", 8.0, 0.8, 0.9),
    ];
    for (text, expected, lo, hi) in table {
        let (value, confidence) =
            number(text, Some("years")).unwrap_or_else(|| panic!("{text:?} not understood"));
        assert!(
            (value - expected).abs() < 1e-9,
            "{text:?}: {value} != {expected}"
        );
        assert!(
            (*lo..=*hi).contains(&confidence),
            "{text:?}: confidence {confidence} not in {lo}..={hi}"
        );
    }
}

#[test]
fn number_rejects_non_numbers() {
    for text in ["", "lots", "I drive trucks", "what"] {
        assert_eq!(number(text, Some("years")), None, "{text:?}");
    }
}

fn shifts() -> Vec<ChoiceOption> {
    let option = |id: &str, synonyms: &[&str]| ChoiceOption {
        id: id.into(),
        synonyms: synonyms.iter().map(|s| (*s).to_owned()).collect(),
    };
    vec![
        option("day", &["daytime", "morning", "first shift"]),
        option(
            "night",
            &["overnight", "graveyard", "third shift", "evening"],
        ),
        option("weekend", &["saturday", "sunday"]),
        option(
            "flexible",
            &[
                "either",
                "any",
                "anything",
                "no preference",
                "doesn't matter",
            ],
        ),
    ]
}

#[test]
fn choice_variants() {
    let options = shifts();
    let table: &[(&str, &str, f32, f32)] = &[
        ("day", "day", 0.8, 1.0),
        ("days please", "day", 0.8, 1.0),
        ("Nights.", "night", 0.8, 1.0),
        ("graveyard", "night", 0.8, 1.0),
        ("the graveyard shift", "night", 0.8, 1.0),
        ("overnights", "night", 0.8, 1.0),
        ("weekends", "weekend", 0.8, 1.0),
        ("either", "flexible", 0.8, 1.0),
        ("any of them", "flexible", 0.8, 1.0),
        ("it doesn't matter", "flexible", 0.8, 1.0),
        ("days or nights, either is fine", "flexible", 0.8, 1.0),
        ("I guess mornings", "day", 0.5, 0.75),
        ("not nights, days", "day", 0.5, 0.6),
        ("day or night", "day", 0.0, 0.49),
    ];
    for (text, expected, lo, hi) in table {
        let (id, confidence) =
            choice(text, &options).unwrap_or_else(|| panic!("{text:?} not understood"));
        assert_eq!(id, *expected, "{text:?}");
        assert!(
            (*lo..=*hi).contains(&confidence),
            "{text:?}: confidence {confidence} not in {lo}..={hi}"
        );
    }
    assert_eq!(choice("purple", &options), None);
}

#[test]
fn availability_variants() {
    use Availability as A;
    let table: &[(&str, Availability)] = &[
        ("immediately", A::Immediately),
        ("right away", A::Immediately),
        ("I can start right now", A::Immediately),
        ("as soon as possible", A::Immediately),
        ("tomorrow", A::InDays { days: 1 }),
        ("in two weeks", A::InDays { days: 14 }),
        ("I need to give two weeks notice", A::InDays { days: 14 }),
        ("in a week", A::InDays { days: 7 }),
        ("next week", A::InDays { days: 7 }),
        ("in a month", A::InDays { days: 30 }),
        ("in 10 days", A::InDays { days: 10 }),
        (
            "next Monday",
            A::Weekday {
                weekday: Weekday::Monday,
                next: true,
            },
        ),
        (
            "on Friday",
            A::Weekday {
                weekday: Weekday::Friday,
                next: false,
            },
        ),
        (
            "after the 15th",
            A::DayOfMonth {
                day: 15,
                after: true,
            },
        ),
        (
            "on the first",
            A::DayOfMonth {
                day: 1,
                after: false,
            },
        ),
        ("June 1st", A::Date { month: 6, day: 1 }),
        ("the third of March", A::Date { month: 3, day: 3 }),
    ];
    for (text, expected) in table {
        let (value, confidence) =
            availability(text).unwrap_or_else(|| panic!("{text:?} not understood"));
        assert_eq!(value, *expected, "{text:?}");
        assert!(confidence >= 0.8, "{text:?}: {confidence}");
    }
    assert_eq!(availability("I like turtles"), None);
}

#[test]
fn intents_anywhere_in_a_turn() {
    let table: &[(&str, Option<Intent>)] = &[
        ("can I talk to a person", Some(Intent::Handoff)),
        ("I want a real human", Some(Intent::Handoff)),
        ("representative", Some(Intent::Handoff)),
        (
            "yes but let me speak to someone first",
            Some(Intent::Handoff),
        ),
        (
            "could you transfer me to a recruiter",
            Some(Intent::Handoff),
        ),
        ("call me later", Some(Intent::Callback)),
        ("it's not a good time", Some(Intent::Callback)),
        ("sorry I'm driving", Some(Intent::Callback)),
        ("can you call me back tomorrow", Some(Intent::Callback)),
        ("I'm in a meeting", Some(Intent::Callback)),
        ("can you repeat that", Some(Intent::Repeat)),
        ("what?", Some(Intent::Repeat)),
        ("sorry, what", Some(Intent::Repeat)),
        ("I didn't catch that", Some(Intent::Repeat)),
        ("say that again please", Some(Intent::Repeat)),
        ("yes", None),
        ("I'm not driving right now, go ahead", None),
        ("five years", None),
        ("what shifts do you have available at the warehouse", None),
    ];
    for (text, expected) in table {
        assert_eq!(detect_intent(text, false), *expected, "{text:?}");
    }
    let machine = "Hi, you've reached Ana. Please leave a message after the tone.";
    assert_eq!(detect_intent(machine, true), Some(Intent::Voicemail));
    assert_ne!(detect_intent(machine, false), Some(Intent::Voicemail));
}

#[test]
fn normalisation_expands_contractions() {
    assert_eq!(
        Utterance::new("I'm NOT, y'know... 2,500").as_str(),
        "i am not y know 2500"
    );
    assert_eq!(Utterance::new("I don’t").as_str(), "i do not");
    assert_eq!(Utterance::new("5.5 years").as_str(), "5.5 years");
}

#[test]
fn dtmf_yes_no_keys() {
    assert_eq!(dtmf_yes_no('1'), Some(true));
    assert_eq!(dtmf_yes_no('2'), Some(false));
    assert_eq!(dtmf_yes_no('3'), None);
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
        let _ = yes_no(&text);
        let _ = number(&text, Some("years"));
        let _ = choice(&text, &shifts());
        let _ = availability(&text);
        let _ = detect_intent(&text, true);
    }
}
