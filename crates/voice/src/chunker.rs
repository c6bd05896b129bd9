//! Cuts streamed bot text into sentences for speech synthesis (pure, no I/O).
//!
//! An LLM streams its answer a few characters at a time; the speech pipeline wants to send the
//! first *sentence* to TTS as soon as it is complete, without waiting for the rest. The
//! [`SentenceChunker`] buffers text pieces and yields each sentence once it is sure the
//! sentence has ended:
//!
//! - A sentence ends at `.`, `!`, `?` or `…` (runs like `?!` or `...` count as one), plus any
//!   closing quotes or brackets, followed by whitespace. A terminator with no whitespace after
//!   it yet is not an end: more may follow (`3.` + `5`, `e.` + `g.`), so numbers are never cut.
//! - Titles (`Dr.`, `Mr.`, `St.` ...) and single-letter initials (`J.`) never end a sentence.
//!   Dotted abbreviations (`e.g.`, `i.e.`, `a.m.`) and ellipses end one only if the next word
//!   starts with a capital letter or a digit, so the chunker waits for that word.
//! - The first chunk of a turn may be cut early: when its first sentence is longer than
//!   [`ChunkerConfig::first_chunk_chars`], it is cut at the last clause boundary (`,` `;` `:`
//!   or a dash, followed by whitespace) within those characters, so the caller hears something
//!   sooner. Any chunk longer than [`ChunkerConfig::max_chunk_chars`] is cut at the last clause
//!   boundary or space before the cap, so a model that never uses punctuation cannot hold
//!   speech back forever.
//! - [`SentenceChunker::finish`] flushes the remainder at the end of the turn.
//!
//! Sentences come out trimmed; the pipeline joins them with single spaces for the "heard" text.

pub use voxbridge_speech::config::ChunkerConfig;

/// Titles that are always followed by a name, never by the end of a sentence (compared
/// case-insensitively, without the dot).
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "no", "approx", "dept",
    "est", "inc", "ltd", "co", "corp", "ave", "blvd", "rd", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec",
];

/// Characters that end a sentence.
fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

/// Closing quotes and brackets that stay with the sentence they close.
fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»')
}

/// Streams text in, sentences out. One per bot turn (or [`SentenceChunker::finish`] between
/// turns, which also resets the first-chunk rule).
#[derive(Debug, Clone, Default)]
pub struct SentenceChunker {
    config: ChunkerConfig,
    buffer: String,
    /// Bytes of `buffer` already scanned without finding an end (rescanning starts a little
    /// before, see `scan_from`).
    scanned: usize,
    /// A chunk of this turn has been emitted.
    emitted: bool,
}

/// What the text after a terminator run says about it.
enum Verdict {
    /// A sentence ends after `end` bytes.
    End(usize),
    /// Not an end.
    No,
    /// Cannot tell until more text arrives.
    Wait,
}

impl SentenceChunker {
    /// A chunker with `config`.
    pub fn new(config: ChunkerConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Adds a piece of text; returns the sentences it completed, in order.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buffer.push_str(text);
        let mut out = Vec::new();
        while let Some(sentence) = self.next_sentence() {
            out.push(sentence);
        }
        out
    }

    /// The end of the turn: returns what is left (if anything but whitespace) and resets.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        self.scanned = 0;
        self.emitted = false;
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_owned())
    }

    /// Text buffered and not yet emitted.
    pub fn pending(&self) -> &str {
        &self.buffer
    }

    fn next_sentence(&mut self) -> Option<String> {
        let end = match self.find_sentence_end() {
            Some(end) => Some(self.early_cut(end).unwrap_or(end)),
            None => self
                .early_cut(self.buffer.len())
                .or_else(|| self.length_cut()),
        }?;
        let sentence: String = self.buffer.drain(..end).collect();
        self.scanned = 0;
        let sentence = sentence.trim();
        if sentence.is_empty() {
            // Only whitespace before the cut: keep looking in what is left.
            return self.next_sentence();
        }
        self.emitted = true;
        Some(sentence.to_owned())
    }

    /// The byte offset just after the first certain sentence end in the buffer.
    fn find_sentence_end(&mut self) -> Option<usize> {
        let text = self.buffer.as_str();
        // Rescan from a little before where the last scan stopped: a terminator run at the old
        // end of the buffer may have been waiting for the character after it.
        let mut start = self.scanned.saturating_sub(16);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut chars = text[start..]
            .char_indices()
            .map(|(i, c)| (i + start, c))
            .peekable();
        let mut wait_from: Option<usize> = None;
        while let Some((i, c)) = chars.next() {
            if !is_terminator(c) {
                continue;
            }
            match self.judge(i) {
                Verdict::End(end) => return Some(end),
                Verdict::No => {
                    // Skip the rest of this terminator run.
                    let run_end = run_end(text, i);
                    while chars.next_if(|&(j, _)| j < run_end).is_some() {}
                }
                Verdict::Wait => {
                    wait_from.get_or_insert(i);
                    break;
                }
            }
        }
        self.scanned = wait_from.unwrap_or(text.len());
        None
    }

    /// Whether the terminator run starting at byte `at` ends a sentence.
    fn judge(&self, at: usize) -> Verdict {
        let text = self.buffer.as_str();
        let run_end = run_end(text, at);
        let run = &text[at..run_end];
        let mut after = text[run_end..].chars();
        match after.next() {
            // Nothing after the run yet: `3.` may become `3.5`.
            None => return Verdict::Wait,
            Some(c) if !c.is_whitespace() => return Verdict::No,
            Some(_) => {}
        }
        let next_word = text[run_end..].trim_start().chars().next();
        let word = word_before(text, at);
        let ellipsis = run.starts_with("...") || run.starts_with('…');
        let only_dot = run.trim_end_matches(is_closer) == ".";
        let bare = word.trim_start_matches(|c: char| !c.is_alphanumeric());
        if only_dot && TITLES.iter().any(|t| bare.eq_ignore_ascii_case(t)) {
            return Verdict::No;
        }
        let dotted = only_dot && bare.contains('.');
        // An initial (`J. R. Jones`) is followed by a name far more often than it ends a
        // sentence.
        if only_dot && bare.chars().count() == 1 && bare.chars().all(char::is_alphabetic) {
            return Verdict::No;
        }
        if ellipsis || dotted {
            return match next_word {
                None => Verdict::Wait,
                Some(c) if c.is_uppercase() || c.is_ascii_digit() => Verdict::End(run_end),
                Some(_) => Verdict::No,
            };
        }
        Verdict::End(run_end)
    }

    /// The early cut of a turn's first chunk: when its first `end` bytes (a sentence, or all
    /// that is buffered) are longer than `first_chunk_chars`, the last clause boundary within
    /// those first characters.
    fn early_cut(&self, end: usize) -> Option<usize> {
        let cfg = &self.config;
        if self.emitted || cfg.first_chunk_chars == 0 {
            return None;
        }
        let head = &self.buffer[..end];
        if head.trim().chars().count() <= cfg.first_chunk_chars {
            return None;
        }
        // The boundary needs the whitespace after it, which may sit just past the limit.
        let byte_at = |n: usize| head.char_indices().nth(n).map_or(head.len(), |(i, _)| i);
        let limit = byte_at(cfg.first_chunk_chars);
        let window = &head[..byte_at(cfg.first_chunk_chars + 1)];
        last_clause_boundary(window, cfg.min_clause_chars).filter(|&cut| cut <= limit)
    }

    /// The cut when no sentence end is in sight and the buffer is over the length cap.
    fn length_cut(&self) -> Option<usize> {
        let text = self.buffer.as_str();
        let cfg = &self.config;
        if cfg.max_chunk_chars == 0 || text.chars().count() <= cfg.max_chunk_chars {
            return None;
        }
        let limit = text
            .char_indices()
            .nth(cfg.max_chunk_chars)
            .map_or(text.len(), |(i, _)| i);
        let head = &text[..limit];
        last_clause_boundary(head, cfg.min_clause_chars)
            .or_else(|| last_space(head, cfg.min_clause_chars))
            .or(Some(limit))
    }
}

/// The byte offset after the terminator run (with closers) that starts at `at`.
fn run_end(text: &str, at: usize) -> usize {
    let mut end = at;
    let mut seen_closer = false;
    for (i, c) in text[at..].char_indices() {
        if (is_terminator(c) && !seen_closer) || is_closer(c) {
            seen_closer |= is_closer(c);
            end = at + i + c.len_utf8();
        } else {
            break;
        }
    }
    end
}

/// The word (non-whitespace run) just before byte `at`.
fn word_before(text: &str, at: usize) -> &str {
    let head = &text[..at];
    let start = head
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    // Strip an opening quote or bracket: `("Dr.` is the title `Dr`.
    head[start..].trim_start_matches(['"', '\'', '(', '[', '“', '‘'])
}

/// The byte offset after the last clause mark (`,` `;` `:` `—` `–`, or ` - `) that is followed
/// by whitespace and leaves at least `min_chars` characters before it.
fn last_clause_boundary(text: &str, min_chars: usize) -> Option<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    (min_chars..chars.len().saturating_sub(1))
        .rev()
        .find(|&k| {
            let (_, c) = chars[k];
            let next_is_space = chars[k + 1].1.is_whitespace();
            let clause = matches!(c, ',' | ';' | ':' | '—' | '–')
                || (c == '-' && k > 0 && chars[k - 1].1.is_whitespace());
            clause && next_is_space
        })
        .map(|k| chars[k].0 + chars[k].1.len_utf8())
}

/// The byte offset of the last whitespace that leaves at least `min_chars` characters before.
fn last_space(text: &str, min_chars: usize) -> Option<usize> {
    text.char_indices()
        .skip(min_chars)
        .filter(|(_, c)| c.is_whitespace())
        .last()
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` and finishes; returns every chunk.
    fn chunks_of(config: ChunkerConfig, pieces: &[&str]) -> Vec<String> {
        let mut c = SentenceChunker::new(config);
        let mut out = Vec::new();
        for p in pieces {
            out.extend(c.push(p));
        }
        out.extend(c.finish());
        out
    }

    fn sentences(text: &str) -> Vec<String> {
        let no_early = ChunkerConfig {
            first_chunk_chars: 0,
            ..ChunkerConfig::default()
        };
        // Whole, and one character at a time: the result must not depend on the chunking.
        let whole = chunks_of(no_early, &[text]);
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let by_char = chunks_of(no_early, &refs);
        assert_eq!(whole, by_char, "chunking changed the result for {text:?}");
        whole
    }

    #[test]
    fn splits_plain_sentences_and_keeps_runs_together() {
        assert_eq!(
            sentences("Hello there. How are you?! Great... Bye!"),
            ["Hello there.", "How are you?!", "Great...", "Bye!"]
        );
    }

    #[test]
    fn titles_and_abbreviations_do_not_end_sentences() {
        assert_eq!(
            sentences(
                "Dr. Smith will call, e.g. tomorrow at 9 a.m. or later. Mr. J. R. Jones agrees."
            ),
            [
                "Dr. Smith will call, e.g. tomorrow at 9 a.m. or later.",
                "Mr. J. R. Jones agrees."
            ]
        );
        assert_eq!(
            sentences("We start at 9 a.m. Then we eat."),
            ["We start at 9 a.m.", "Then we eat."]
        );
    }

    #[test]
    fn numbers_are_never_split() {
        assert_eq!(
            sentences("It pays 3.5 dollars more, or $1,200.50 a month. Version 2.0.1 is out."),
            [
                "It pays 3.5 dollars more, or $1,200.50 a month.",
                "Version 2.0.1 is out."
            ]
        );
        // Streamed as the tokens an LLM sends: "3." then "5".
        let mut c = SentenceChunker::default();
        assert!(c.push("That is 3.").is_empty(), "3. may become 3.5");
        assert!(c.push("5").is_empty());
        assert_eq!(c.push(" years. And"), ["That is 3.5 years."]);
        assert_eq!(c.finish().as_deref(), Some("And"));
    }

    #[test]
    fn ellipsis_continues_before_lowercase_and_ends_before_a_capital() {
        assert_eq!(
            sentences("Well... let me think. Hmm… Okay."),
            ["Well... let me think.", "Hmm…", "Okay."]
        );
    }

    #[test]
    fn closing_quotes_stay_with_their_sentence() {
        assert_eq!(
            sentences(r#"He said "yes." Then (quietly.) it ended."#),
            [r#"He said "yes.""#, "Then (quietly.)", "it ended."]
        );
    }

    #[test]
    fn a_sentence_is_emitted_as_soon_as_it_is_certain() {
        let mut c = SentenceChunker::default();
        assert!(c.push("Great").is_empty());
        assert!(c.push(".").is_empty(), "no whitespace after the dot yet");
        assert_eq!(c.push(" Next"), ["Great."]);
        assert_eq!(c.pending(), " Next");
        // A title waits for nothing: it is never an end.
        assert!(c.push(" is Dr. ").is_empty());
        assert_eq!(c.push("Who? "), ["Next is Dr. Who?"]);
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn finish_flushes_the_rest_and_resets() {
        let mut c = SentenceChunker::default();
        assert!(c.push("No punctuation here").is_empty());
        assert_eq!(c.finish().as_deref(), Some("No punctuation here"));
        assert_eq!(c.finish(), None);
        assert!(c.push("   ").is_empty());
        assert_eq!(c.finish(), None, "whitespace is not a sentence");
    }

    #[test]
    fn a_long_first_chunk_is_cut_at_a_clause_boundary() {
        let config = ChunkerConfig::default();
        let text = "Thanks for calling about the warehouse position, I have a few quick \
                    questions for you, and it takes two minutes. Ready?";
        let out = chunks_of(config, &[text]);
        assert_eq!(
            out,
            [
                "Thanks for calling about the warehouse position,",
                "I have a few quick questions for you, and it takes two minutes.",
                "Ready?"
            ],
            "only the first chunk is cut early"
        );
        // A short first sentence is not cut.
        assert_eq!(
            chunks_of(config, &["Yes, sure. Go on."]),
            ["Yes, sure.", "Go on."]
        );
        // Commas inside numbers are not clause boundaries.
        let n = "The pay is 1,200 dollars for 40 hours of work per week on average with overtime";
        assert_eq!(chunks_of(config, &[n]), [n]);
    }

    #[test]
    fn an_endless_clause_is_cut_at_the_length_cap() {
        let config = ChunkerConfig {
            first_chunk_chars: 0,
            min_clause_chars: 5,
            max_chunk_chars: 30,
        };
        let out = chunks_of(
            config,
            &["one two three four five six seven eight nine ten"],
        );
        assert!(out.len() >= 2, "{out:?}");
        assert!(out.iter().all(|c| c.chars().count() <= 30), "{out:?}");
        assert_eq!(
            out.join(" "),
            "one two three four five six seven eight nine ten"
        );
    }

    #[test]
    fn arbitrary_text_never_panics_and_loses_nothing() {
        use proptest::prelude::*;
        proptest!(|(text in "[a-zA-Z0-9 .,!?…\"'()é:-]{0,200}", split in 1usize..8)| {
            let pieces: Vec<String> = text
                .chars()
                .collect::<Vec<_>>()
                .chunks(split)
                .map(|c| c.iter().collect())
                .collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let out = chunks_of(ChunkerConfig::default(), &refs);
            let squash = |s: &str| s.split_whitespace().collect::<String>();
            prop_assert_eq!(squash(&out.join(" ")), squash(&text));
            prop_assert!(out.iter().all(|c| !c.trim().is_empty()));
        });
    }
}
