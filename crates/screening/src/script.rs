//! Screening scripts: `config/screenings/*.toml`.
//!
//! A script is a job title, a greeting, ordered questions and closing lines. Each question has
//! an answer type (what the understander extracts), an optional rule (which answers are
//! accepted; a rejected answer either ends the call politely or flags the candidate), a re-ask
//! budget for unclear answers and a DTMF hint. See `config/screenings/default.toml` for a
//! commented example.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

/// Re-asks of an unclear answer when a question does not set `max_reasks`.
pub const DEFAULT_MAX_REASKS: u8 = 2;

/// What can be wrong with a script or a script directory.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The directory or file could not be read.
    #[error("cannot read screening script {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown/mistyped keys.
    #[error("screening script {file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The TOML error, which names the key and line.
        message: String,
    },
    /// A key has a value the agent cannot use.
    #[error("screening script {file}: `{key}`: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The key, e.g. `questions[2].answer.max`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Two files declare the same `id`.
    #[error("screening id {id:?} is declared by both {first} and {second}")]
    DuplicateId {
        /// The id.
        id: String,
        /// The first file.
        first: String,
        /// The second file.
        second: String,
    },
    /// No script has the requested id.
    #[error("unknown screening {id:?} (known: {known})")]
    Unknown {
        /// The id asked for.
        id: String,
        /// The known ids, comma-separated.
        known: String,
    },
}

/// One screening script.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Unique id; selected with the `screening` custom parameter.
    pub id: String,
    /// The job, used for `{jobTitle}` unless the call passes `jobTitle`.
    pub job_title: String,
    /// First bot line; `{firstName}` and `{jobTitle}` are filled in. The first question follows
    /// in the same turn.
    pub greeting: String,
    /// Said before each following question, in rotation (e.g. "Thanks.", "Got it.").
    #[serde(default = "default_acknowledgements")]
    pub acknowledgements: Vec<String>,
    /// Said before a re-ask of an unclear answer.
    #[serde(default = "default_reask_prefix")]
    pub reask_prefix: String,
    /// Said before a question re-asked after silence.
    #[serde(default = "default_silence_prefix")]
    pub silence_prefix: String,
    /// Silences in a row (no answer at all) before the call ends as `no_answer`/`incomplete`.
    #[serde(default = "default_max_silences")]
    pub max_silences: u8,
    /// How long to wait for an answer before reporting silence, in ms.
    #[serde(default = "default_silence_timeout_ms")]
    pub silence_timeout_ms: u64,
    /// Answers understood with less confidence than this are treated as unclear.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f32,
    /// The questions, asked in order.
    pub questions: Vec<Question>,
    /// Closing lines.
    pub closing: Closing,
}

/// Closing lines; `{firstName}` and `{jobTitle}` are filled in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closing {
    /// Every answer was accepted.
    pub qualified: String,
    /// An answer was rejected (default close line of knock-outs and flags).
    pub not_qualified: String,
    /// The caller asked to be called back.
    pub callback: String,
    /// The caller asked for a person.
    pub handoff: String,
    /// The screening could not be completed (unclear answers, silence).
    pub incomplete: String,
    /// An answering machine picked up; empty says nothing.
    #[serde(default)]
    pub voicemail: String,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Unique id within the script; the key of the answer in the result.
    pub id: String,
    /// What the bot asks.
    pub prompt: String,
    /// What kind of answer is expected, and which answers are accepted.
    pub answer: AnswerType,
    /// What happens when the answer is outside the accepted values.
    #[serde(default)]
    pub on_reject: RejectAction,
    /// Said instead of `closing.not_qualified` when this question knocks the candidate out.
    #[serde(default)]
    pub reject_line: Option<String>,
    /// Re-asks of an unclear answer before it is recorded as unclear.
    #[serde(default = "default_max_reasks")]
    pub max_reasks: u8,
    /// What happens when the answer stays unclear after all re-asks.
    #[serde(default)]
    pub on_unclear: UnclearAction,
    /// Said after the prompt when re-asking, e.g. "You can also press 1 for yes or 2 for no."
    #[serde(default)]
    pub dtmf_hint: Option<String>,
}

/// A rejected answer's consequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectAction {
    /// Close politely now; outcome `not_qualified` (a knock-out).
    #[default]
    KnockOut,
    /// Note it, keep going; outcome `not_qualified` at the end.
    Flag,
}

/// An answer still unclear after all re-asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnclearAction {
    /// Record it as unclear and go on; outcome `incomplete` at the end.
    #[default]
    Skip,
    /// Close now with `closing.incomplete`; outcome `incomplete`.
    End,
}

/// The expected answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AnswerType {
    /// Yes or no; DTMF 1 = yes, 2 = no.
    YesNo {
        /// The accepted answer; the other one is rejected. `None` accepts both.
        #[serde(default)]
        expected: Option<bool>,
    },
    /// A number; DTMF digits then `#`.
    Number {
        /// The unit, e.g. `years`; spoken months convert to years when it is `years`.
        #[serde(default)]
        unit: Option<String>,
        /// Smallest accepted value.
        #[serde(default)]
        min: Option<f64>,
        /// Largest accepted value.
        #[serde(default)]
        max: Option<f64>,
    },
    /// One of a list of options; DTMF picks by position (1 = first).
    Choice {
        /// The options, in order.
        options: Vec<ChoiceOption>,
        /// Accepted option ids; empty accepts all.
        #[serde(default)]
        accepted: Vec<String>,
    },
    /// Anything the caller says.
    FreeText,
    /// When the candidate can start.
    Availability {
        /// Latest accepted start, in days from now (only checked for relative answers such as
        /// "in two weeks"; dates and weekdays are recorded as said).
        #[serde(default)]
        max_days: Option<u32>,
    },
}

/// One option of a choice question.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceOption {
    /// The recorded value, also matched as a word (`night` matches "nights").
    pub id: String,
    /// Other words and phrases meaning this option ("graveyard", "overnight").
    #[serde(default)]
    pub synonyms: Vec<String>,
}

fn default_acknowledgements() -> Vec<String> {
    vec![
        "Thanks.".into(),
        "Got it.".into(),
        "Okay.".into(),
        "Great.".into(),
    ]
}
fn default_reask_prefix() -> String {
    "Sorry, I didn't quite catch that.".into()
}
fn default_silence_prefix() -> String {
    "Are you still there?".into()
}
fn default_max_silences() -> u8 {
    2
}
fn default_silence_timeout_ms() -> u64 {
    8_000
}
fn default_min_confidence() -> f32 {
    0.5
}
fn default_max_reasks() -> u8 {
    DEFAULT_MAX_REASKS
}

impl Script {
    /// Parses and validates one script; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Self, ScriptError> {
        let script: Self = toml::from_str(text).map_err(|e| ScriptError::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        script.validate(file)?;
        Ok(script)
    }

    /// Checks what serde cannot: non-empty texts, unique ids, sane ranges, known options.
    pub fn validate(&self, file: &str) -> Result<(), ScriptError> {
        let invalid = |key: String, message: &str| ScriptError::Invalid {
            file: file.to_owned(),
            key,
            message: message.to_owned(),
        };
        let non_empty = |key: &str, value: &str| {
            if value.trim().is_empty() {
                Err(invalid(key.to_owned(), "must not be empty"))
            } else {
                Ok(())
            }
        };
        non_empty("id", &self.id)?;
        non_empty("job_title", &self.job_title)?;
        non_empty("greeting", &self.greeting)?;
        non_empty("closing.qualified", &self.closing.qualified)?;
        non_empty("closing.not_qualified", &self.closing.not_qualified)?;
        non_empty("closing.callback", &self.closing.callback)?;
        non_empty("closing.handoff", &self.closing.handoff)?;
        non_empty("closing.incomplete", &self.closing.incomplete)?;
        if self.acknowledgements.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid(
                "acknowledgements".into(),
                "entries must not be empty (remove the key for the defaults)",
            ));
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(invalid(
                "min_confidence".into(),
                "must be between 0.0 and 1.0",
            ));
        }
        if self.silence_timeout_ms == 0 {
            return Err(invalid(
                "silence_timeout_ms".into(),
                "must be positive (8000 is usual)",
            ));
        }
        if self.questions.is_empty() {
            return Err(invalid(
                "questions".into(),
                "needs at least one [[questions]] entry",
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, q) in self.questions.iter().enumerate() {
            let key = |k: &str| format!("questions[{i}].{k}");
            non_empty(&key("id"), &q.id)?;
            non_empty(&key("prompt"), &q.prompt)?;
            if !ids.insert(q.id.as_str()) {
                return Err(invalid(
                    key("id"),
                    &format!("duplicate question id {:?}", q.id),
                ));
            }
            if q.max_reasks > 5 {
                return Err(invalid(
                    key("max_reasks"),
                    "at most 5 (callers hang up long before)",
                ));
            }
            match &q.answer {
                AnswerType::Number { min, max, .. } => {
                    if min.is_some_and(|v| !v.is_finite()) || max.is_some_and(|v| !v.is_finite()) {
                        return Err(invalid(key("answer.min"), "must be a finite number"));
                    }
                    if let (Some(lo), Some(hi)) = (min, max)
                        && lo > hi
                    {
                        return Err(invalid(key("answer.max"), "must not be below answer.min"));
                    }
                }
                AnswerType::Choice { options, accepted } => {
                    validate_choice(i, options, accepted).map_err(|(k, m)| invalid(k, &m))?;
                }
                AnswerType::YesNo { .. }
                | AnswerType::FreeText
                | AnswerType::Availability { .. } => {}
            }
            if q.reject_line
                .as_deref()
                .is_some_and(|l| l.trim().is_empty())
            {
                return Err(invalid(key("reject_line"), "must not be empty when set"));
            }
        }
        Ok(())
    }

    /// `text` with `{firstName}` and `{jobTitle}` filled in (a missing first name is dropped
    /// together with the space or comma before it: "Hi {firstName}," -> "Hi,").
    pub fn fill(&self, text: &str, first_name: Option<&str>, job_title: Option<&str>) -> String {
        let job = job_title
            .filter(|j| !j.trim().is_empty())
            .unwrap_or(&self.job_title);
        let text = text.replace("{jobTitle}", job);
        match first_name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => text.replace("{firstName}", name),
            None => text.replace(" {firstName}", "").replace("{firstName}", ""),
        }
    }
}

/// A choice question's options: at least two, unique non-empty ids, known `accepted` ids.
fn validate_choice(
    i: usize,
    options: &[ChoiceOption],
    accepted: &[String],
) -> Result<(), (String, String)> {
    if options.len() < 2 {
        return Err((
            format!("questions[{i}].answer.options"),
            "needs at least two options".into(),
        ));
    }
    let mut ids = BTreeSet::new();
    for (j, o) in options.iter().enumerate() {
        let key = format!("questions[{i}].answer.options[{j}].id");
        if o.id.trim().is_empty() {
            return Err((key, "must not be empty".into()));
        }
        if !ids.insert(o.id.as_str()) {
            return Err((key, format!("duplicate option {:?}", o.id)));
        }
    }
    if let Some(bad) = accepted.iter().find(|a| !ids.contains(a.as_str())) {
        return Err((
            format!("questions[{i}].answer.accepted"),
            format!("{bad:?} is not one of the option ids"),
        ));
    }
    Ok(())
}

/// The scripts of a directory, by id.
#[derive(Debug, Clone, Default)]
pub struct ScriptLibrary {
    scripts: BTreeMap<String, Arc<Script>>,
}

impl ScriptLibrary {
    /// Loads every `*.toml` in `dir` (sorted by name), validating each.
    pub fn load_dir(dir: &Path) -> Result<Self, ScriptError> {
        let io = |source| ScriptError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut paths = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| ScriptError::Io {
                path: path.display().to_string(),
                source,
            })?;
            files.push((path.display().to_string(), text));
        }
        Self::from_sources(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))
    }

    /// Builds a library from `(file name, TOML text)` pairs.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ScriptError> {
        let mut scripts: BTreeMap<String, (String, Arc<Script>)> = BTreeMap::new();
        for (file, text) in sources {
            let script = Script::from_toml(file, text)?;
            if let Some((first, _)) = scripts.get(&script.id) {
                return Err(ScriptError::DuplicateId {
                    id: script.id.clone(),
                    first: first.clone(),
                    second: file.to_owned(),
                });
            }
            scripts.insert(script.id.clone(), (file.to_owned(), Arc::new(script)));
        }
        Ok(Self {
            scripts: scripts.into_iter().map(|(k, (_, s))| (k, s)).collect(),
        })
    }

    /// The script with this id.
    pub fn get(&self, id: &str) -> Result<Arc<Script>, ScriptError> {
        self.scripts
            .get(id)
            .cloned()
            .ok_or_else(|| ScriptError::Unknown {
                id: id.to_owned(),
                known: self.ids().collect::<Vec<_>>().join(", "),
            })
    }

    /// The script a call asks for with its `screening` parameter, else `default_id`.
    pub fn select(
        &self,
        parameters: &BTreeMap<String, String>,
        default_id: &str,
    ) -> Result<Arc<Script>, ScriptError> {
        let id = parameters
            .get("screening")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(default_id);
        self.get(id)
    }

    /// The ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.scripts.keys().map(String::as_str)
    }

    /// How many scripts.
    pub fn len(&self) -> usize {
        self.scripts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
id = "t"
job_title = "Tester"
greeting = "Hi {firstName}, about the {jobTitle} job."
[[questions]]
id = "q1"
prompt = "Ready?"
answer = { type = "yes_no", expected = true }
[closing]
qualified = "q"
not_qualified = "n"
callback = "c"
handoff = "h"
incomplete = "i"
"#;

    fn invalid_key(text: &str) -> String {
        match Script::from_toml("x.toml", text) {
            Err(ScriptError::Invalid { file, key, .. }) => {
                assert_eq!(file, "x.toml");
                key
            }
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn minimal_script_gets_defaults() {
        let s = Script::from_toml("x.toml", MINIMAL).expect("valid");
        assert_eq!(s.questions[0].max_reasks, DEFAULT_MAX_REASKS);
        assert_eq!(s.questions[0].on_reject, RejectAction::KnockOut);
        assert_eq!(s.fill(&s.greeting, None, None), "Hi, about the Tester job.");
        assert_eq!(
            s.fill(&s.greeting, Some("Ana"), Some("Picker")),
            "Hi Ana, about the Picker job."
        );
    }

    #[test]
    fn validation_errors_name_the_key() {
        assert_eq!(
            invalid_key(&MINIMAL.replace("prompt = \"Ready?\"", "prompt = \" \"")),
            "questions[0].prompt"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("handoff = \"h\"", "handoff = \"\"")),
            "closing.handoff"
        );
        let bad_range = MINIMAL.replace(
            r#"answer = { type = "yes_no", expected = true }"#,
            r#"answer = { type = "number", min = 5, max = 1 }"#,
        );
        assert_eq!(invalid_key(&bad_range), "questions[0].answer.max");
        let bad_choice = MINIMAL.replace(
            r#"answer = { type = "yes_no", expected = true }"#,
            r#"answer = { type = "choice", options = [{ id = "a" }, { id = "b" }], accepted = ["c"] }"#,
        );
        assert_eq!(invalid_key(&bad_choice), "questions[0].answer.accepted");
    }

    #[test]
    fn duplicate_question_ids_are_rejected() {
        let dup = MINIMAL.replace(
            "[closing]",
            "[[questions]]\nid = \"q1\"\nprompt = \"Again?\"\nanswer = { type = \"free_text\" }\n[closing]",
        );
        assert_eq!(invalid_key(&dup), "questions[1].id");
    }

    #[test]
    fn unknown_keys_are_parse_errors_naming_the_key() {
        let text = MINIMAL.replace("prompt = \"Ready?\"", "prompt = \"Ready?\"\nmax_reask = 3");
        match Script::from_toml("x.toml", &text) {
            Err(ScriptError::Parse { file, message }) => {
                assert_eq!(file, "x.toml");
                assert!(message.contains("max_reask"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        let bad_type = MINIMAL.replace("yes_no", "yes_maybe");
        assert!(matches!(
            Script::from_toml("x.toml", &bad_type),
            Err(ScriptError::Parse { .. })
        ));
    }

    #[test]
    fn duplicate_script_ids_are_rejected() {
        let err = ScriptLibrary::from_sources([("a.toml", MINIMAL), ("b.toml", MINIMAL)])
            .expect_err("duplicate");
        assert!(
            err.to_string().contains("a.toml") && err.to_string().contains("b.toml"),
            "{err}"
        );
    }
}
