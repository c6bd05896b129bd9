//! `voxbridge transcribe --accuracy MANIFEST`: the ASR accuracy set.
//!
//! A manifest (`tests/data/asr-accuracy/manifest.toml`) lists spoken candidate answers: the
//! screening and question each answers, what was said, and what the screening agent must make
//! of it. Each answer's audio is run in two conditions, `clean/ID.wav` and `noisy/ID.wav` (15 dB
//! SNR) beside the manifest, through the same path as `voxbridge transcribe` (8 kHz mu-law
//! frames -> the call's `Session`: decode, resample, VAD -> the configured recogniser), prompted
//! with the question's text. What was heard is then read as the agent reads it: a caller intent
//! first (repeat, handoff, callback), else the question's answer type at the script's
//! `min_confidence`. Reported per condition: parsed answers correct, word error rate (words
//! normalised as the understander normalises them, digits spelled out), recognition time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use voxbridge_screening::script::{Question, Script};
use voxbridge_screening::understand::{self, Utterance};

use super::Recogniser;
use crate::config::Config;

/// The conditions every answer is run in: name and the audio's directory beside the manifest.
const CONDITIONS: [(&str, &str); 2] = [("clean", "clean"), ("snr15", "noisy")];

/// What each utterance is prompted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Prompt {
    /// The question the answer is given to (as the voice pipeline knows it).
    Question,
    /// The same text for every answer.
    Fixed(String),
    /// Nothing.
    None,
}

/// How to run the set.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) prompt: Prompt,
    /// Score the manifest's texts instead of recognising the audio.
    pub(super) reference: bool,
    pub(super) json: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    answer: Vec<Entry>,
}

/// One spoken answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    screening: String,
    question: String,
    /// What was said.
    text: String,
    /// How it was spoken (espeak-ng voice and words per minute): for the report only.
    voice: String,
    speed: u32,
    /// The parsed answer as the screening result stores it, or `{ intent = "..." }`.
    expect: Value,
}

/// One answer in one condition.
struct Scored {
    heard: String,
    parsed: Value,
    correct: bool,
    word_errors: usize,
    reference_words: usize,
    utterances: usize,
    times: Vec<Duration>,
}

pub(super) fn run(config: &Config, manifest_path: &Path, options: &Options) -> Result<()> {
    let text = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest: Manifest =
        toml::from_str(&text).with_context(|| format!("{}", manifest_path.display()))?;
    if manifest.answer.is_empty() {
        bail!("{} lists no answers", manifest_path.display());
    }
    let dir = manifest_path.parent().unwrap_or(Path::new("."));
    let (library, _) = config
        .agent
        .load_scripts(config.source.as_deref())
        .context("cannot load the screening scripts")?;
    // Every answer's question, and its reference text must mean what the manifest says.
    let mut asked = Vec::with_capacity(manifest.answer.len());
    for entry in &manifest.answer {
        let script = library
            .get(&entry.screening)
            .with_context(|| format!("answer {}", entry.id))?;
        let Some(question) = script.questions.iter().find(|q| q.id == entry.question) else {
            bail!(
                "answer {}: screening {:?} has no question {:?}",
                entry.id,
                entry.screening,
                entry.question
            );
        };
        let question = question.clone();
        let meant = interpret(&script, &question, &entry.text);
        if !same(&entry.expect, &meant) {
            bail!(
                "answer {}: its text {:?} is understood as {meant}, not {} as the manifest expects",
                entry.id,
                entry.text,
                entry.expect
            );
        }
        asked.push((script, question));
    }
    let recogniser = if options.reference {
        None
    } else {
        Some(Recogniser::start(config)?)
    };
    let mut out = std::io::stdout().lock();
    let mut summary = Vec::new();
    for (condition, sub) in CONDITIONS {
        let mut scored = Vec::with_capacity(manifest.answer.len());
        for (entry, (script, question)) in manifest.answer.iter().zip(&asked) {
            let path: PathBuf = dir.join(sub).join(format!("{}.wav", entry.id));
            let prompt = match &options.prompt {
                Prompt::Question => Some(question.prompt.as_str()),
                Prompt::Fixed(text) => Some(text.as_str()),
                Prompt::None => None,
            };
            let (heard, utterances, times) = match &recogniser {
                None => (entry.text.clone(), 1, Vec::new()),
                Some(r) => {
                    let results = r.file(config, &path, prompt)?;
                    let texts: Vec<&str> = results
                        .iter()
                        .map(|u| u.text.trim())
                        .filter(|t| !t.is_empty())
                        .collect();
                    (
                        texts.join(" "),
                        results.len(),
                        results.iter().map(|u| u.took).collect(),
                    )
                }
            };
            let parsed = interpret(script, question, &heard);
            let reference = words(&entry.text);
            let s = Scored {
                correct: same(&entry.expect, &parsed),
                word_errors: edit_distance(&reference, &words(&heard)),
                reference_words: reference.len(),
                heard,
                parsed,
                utterances,
                times,
            };
            print_answer(&mut out, options.json, condition, entry, &s)?;
            scored.push(s);
        }
        summary.push(summarise(condition, &scored));
    }
    let prompt = match &options.prompt {
        Prompt::Question => "question",
        Prompt::Fixed(_) => "fixed",
        Prompt::None => "none",
    };
    let recogniser = recogniser.as_ref().map_or("reference", Recogniser::name);
    print_summary(
        &mut out,
        options.json,
        recogniser,
        prompt,
        manifest.answer.len(),
        &summary,
    )
}

/// The last line (`--json`) or table: parsed answers correct, WER and recognition time per
/// condition.
fn print_summary(
    out: &mut impl Write,
    json: bool,
    recogniser: &str,
    prompt: &str,
    answers: usize,
    summary: &[Value],
) -> Result<()> {
    if json {
        let line = json!({
            "summary": {
                "recogniser": recogniser,
                "prompt": prompt,
                "answers": answers,
                "conditions": summary,
            }
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "\n{answers} answers, recogniser {recogniser}, prompt: {prompt}"
        )?;
        writeln!(
            out,
            "condition  parsed correct   WER     median  max      (ms: recognition per utterance)"
        )?;
        for c in summary {
            writeln!(
                out,
                "{:<9}  {:>3}/{:<3} {:>5.1}%  {:>5.1}%  {:>6}  {:>6}{}",
                c["condition"].as_str().unwrap_or(""),
                c["parsed_correct"],
                c["answers"],
                c["parsed_correct_pct"].as_f64().unwrap_or(0.0),
                c["wer_pct"].as_f64().unwrap_or(0.0),
                c["median_recognition_ms"],
                c["max_recognition_ms"],
                match c["not_one_utterance"].as_u64() {
                    Some(0) | None => String::new(),
                    Some(n) => format!("  ({n} files not heard as one utterance)"),
                }
            )?;
        }
    }
    Ok(())
}

/// What the screening agent makes of `text` when asked `question`: the intent, the parsed
/// answer as the result stores it, or `null` (unclear: the agent would re-ask).
fn interpret(script: &Script, question: &Question, text: &str) -> Value {
    if let Some(intent) = understand::detect_intent(text, false) {
        return json!({ "intent": intent });
    }
    match understand::understand(&question.answer, text) {
        Some(u) if u.confidence >= script.min_confidence => {
            serde_json::to_value(&u.value).unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

/// JSON equality with numbers compared as numbers (`5` = `5.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .is_some_and(|(x, y)| (x - y).abs() < 1e-9),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

fn print_answer(
    out: &mut impl Write,
    json: bool,
    condition: &str,
    entry: &Entry,
    s: &Scored,
) -> Result<()> {
    let ms: u64 = s.times.iter().map(|t| t.as_millis() as u64).sum();
    if json {
        let line = json!({
            "id": entry.id,
            "condition": condition,
            "voice": entry.voice,
            "speed": entry.speed,
            "said": entry.text,
            "heard": s.heard,
            "expected": entry.expect,
            "parsed": s.parsed,
            "correct": s.correct,
            "word_errors": s.word_errors,
            "reference_words": s.reference_words,
            "utterances": s.utterances,
            "recognition_ms": ms,
        });
        writeln!(out, "{line}")?;
    } else if s.correct {
        writeln!(
            out,
            "{condition:<6} {} ok    {:?} -> {:?}  {ms} ms",
            entry.id, entry.text, s.heard
        )?;
    } else {
        writeln!(
            out,
            "{condition:<6} {} MISS  {:?} -> {:?}  {ms} ms  ({}, {} wpm: expected {}, parsed {})",
            entry.id, entry.text, s.heard, entry.voice, entry.speed, entry.expect, s.parsed
        )?;
    }
    Ok(())
}

fn summarise(condition: &str, scored: &[Scored]) -> Value {
    let answers = scored.len();
    let correct = scored.iter().filter(|s| s.correct).count();
    let errors: usize = scored.iter().map(|s| s.word_errors).sum();
    let reference: usize = scored.iter().map(|s| s.reference_words).sum();
    let mut times: Vec<Duration> = scored.iter().flat_map(|s| s.times.clone()).collect();
    times.sort_unstable();
    let ms = |d: Option<&Duration>| d.map_or(0, |d| d.as_millis() as u64);
    json!({
        "condition": condition,
        "answers": answers,
        "parsed_correct": correct,
        "parsed_correct_pct": 100.0 * correct as f64 / answers.max(1) as f64,
        "word_errors": errors,
        "reference_words": reference,
        "wer_pct": 100.0 * errors as f64 / reference.max(1) as f64,
        "median_recognition_ms": ms(times.get(times.len() / 2)),
        "max_recognition_ms": ms(times.last()),
        "not_one_utterance": scored.iter().filter(|s| s.utterances != 1).count(),
    })
}

/// The words of `text` for the error rate: normalised as the understander normalises them
/// (lower case, no punctuation, contractions expanded), numbers written out ("5" -> "five",
/// "15th" -> "fifteenth", "2.5" -> "two point five"), so "5 years" and "five years" agree.
fn words(text: &str) -> Vec<String> {
    Utterance::new(text)
        .as_str()
        .split(' ')
        .filter(|w| !w.is_empty())
        .flat_map(spell_out)
        .collect()
}

fn spell_out(word: &str) -> Vec<String> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    let number = |s: &str| spell(s.parse().unwrap_or(0));
    if digits(word) {
        return number(word);
    }
    if let Some((whole, fraction)) = word.split_once('.')
        && digits(whole)
        && digits(fraction)
    {
        let mut out = number(whole);
        out.push("point".to_owned());
        out.extend(
            fraction
                .chars()
                .flat_map(|c| spell(u32::from(c as u8 - b'0'))),
        );
        return out;
    }
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && digits(stem)
        {
            let mut out = number(stem);
            if let Some(last) = out.pop() {
                out.push(ordinal(&last));
            }
            return out;
        }
    }
    vec![word.to_owned()]
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// `n` (below 10 000) in words.
fn spell(n: u32) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = n;
    if rest >= 1000 {
        out.extend(spell(rest / 1000));
        out.push("thousand".to_owned());
        rest %= 1000;
    }
    if rest >= 100 {
        out.push(ONES[(rest / 100) as usize].to_owned());
        out.push("hundred".to_owned());
        rest %= 100;
    }
    if rest >= 20 {
        out.push(TENS[(rest / 10) as usize].to_owned());
        rest %= 10;
        if rest > 0 {
            out.push(ONES[rest as usize].to_owned());
        }
    } else if rest > 0 || out.is_empty() {
        out.push(ONES[rest as usize].to_owned());
    }
    out
}

/// The ordinal of a number word ("one" -> "first", "twenty" -> "twentieth").
fn ordinal(word: &str) -> String {
    match word {
        "one" => "first".to_owned(),
        "two" => "second".to_owned(),
        "three" => "third".to_owned(),
        "five" => "fifth".to_owned(),
        "eight" => "eighth".to_owned(),
        "nine" => "ninth".to_owned(),
        "twelve" => "twelfth".to_owned(),
        w => match w.strip_suffix('y') {
            Some(stem) => format!("{stem}ieth"),
            None => format!("{w}th"),
        },
    }
}

/// Word-level Levenshtein distance: substitutions, insertions and deletions.
fn edit_distance(reference: &[String], heard: &[String]) -> usize {
    let mut previous: Vec<usize> = (0..=heard.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut row = Vec::with_capacity(heard.len() + 1);
        row.push(i + 1);
        for (j, h) in heard.iter().enumerate() {
            let substitute = previous[j] + usize::from(r != h);
            row.push(substitute.min(previous[j + 1] + 1).min(row[j] + 1));
        }
        previous = row;
    }
    previous[heard.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> Vec<String> {
        words(text)
    }

    #[test]
    fn numbers_are_compared_as_words() {
        assert_eq!(w("About 5 years."), w("about five years"));
        assert_eq!(w("25 years"), w("twenty five years"));
        assert_eq!(w("after the 15th"), w("After the fifteenth."));
        assert_eq!(w("the 1st of June"), w("the first of june"));
        assert_eq!(w("2.5 years"), w("two point five years"));
        assert_eq!(w("I'm 100"), w("i am one hundred"));
        assert_eq!(w("1,200"), w("one thousand two hundred"));
        assert_eq!(w("20th"), w("twentieth"));
    }

    #[test]
    fn word_errors_count_substitutions_insertions_and_deletions() {
        let d = |a: &str, b: &str| edit_distance(&w(a), &w(b));
        assert_eq!(d("Yes, I am.", "Yes, I am."), 0);
        assert_eq!(d("Yes, I am.", "I am."), 1);
        // "I'm" is two words once normalised ("i am"): about -> i, + am, + out.
        assert_eq!(d("About five years.", "I'm out five years."), 3);
        assert_eq!(d("Nights.", ""), 1);
        assert_eq!(d("", "hello there"), 2);
        assert_eq!(d("day shift please", "the shift please"), 1);
    }

    #[test]
    fn expected_values_match_as_numbers() {
        assert!(same(
            &json!({"type": "number", "value": 5, "unit": "years"}),
            &json!({"type": "number", "value": 5.0, "unit": "years"})
        ));
        assert!(!same(
            &json!({"type": "number", "value": 5.0}),
            &json!({"type": "number", "value": 5.0, "unit": "years"})
        ));
        assert!(!same(&json!({"intent": "repeat"}), &Value::Null));
    }
}
