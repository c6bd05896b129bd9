//! Spoken numbers as ASR writes them: digits ("5", "5+", "2.5", "15th") and words ("five and a
//! half", "two thousand twenty-five", "a couple", "twenty first").

/// One number found in a token list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NumberMatch {
    /// The value.
    pub(crate) value: f64,
    /// First token.
    pub(crate) start: usize,
    /// One past the last token.
    pub(crate) end: usize,
    /// The confidence the words themselves carry ("a few" is vague).
    pub(crate) confidence: f32,
    /// Written as an ordinal ("15th", "fifteenth").
    pub(crate) ordinal: bool,
}

fn unit_word(w: &str) -> Option<u32> {
    Some(match w {
        "zero" => 0,
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        _ => return None,
    })
}

fn teen_word(w: &str) -> Option<u32> {
    Some(match w {
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        _ => return None,
    })
}

fn ten_word(w: &str) -> Option<u32> {
    Some(match w {
        "twenty" => 20,
        "thirty" => 30,
        "forty" | "fourty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        _ => return None,
    })
}

fn ordinal_word(w: &str) -> Option<u32> {
    Some(match w {
        "first" => 1,
        "second" => 2,
        "third" => 3,
        "fourth" => 4,
        "fifth" => 5,
        "sixth" => 6,
        "seventh" => 7,
        "eighth" => 8,
        "ninth" => 9,
        "tenth" => 10,
        "eleventh" => 11,
        "twelfth" => 12,
        "thirteenth" => 13,
        "fourteenth" => 14,
        "fifteenth" => 15,
        "sixteenth" => 16,
        "seventeenth" => 17,
        "eighteenth" => 18,
        "nineteenth" => 19,
        "twentieth" => 20,
        "thirtieth" => 30,
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Nothing,
    Unit,
    Teen,
    Ten,
    Hundred,
    Thousand,
}

/// Digits with an optional `+` or ordinal suffix: `5`, `5+`, `2.5`, `15th`.
fn digits(token: &str) -> Option<(f64, bool, bool)> {
    let (body, plus) = match token.strip_suffix('+') {
        Some(b) => (b, true),
        None => (token, false),
    };
    let (body, ordinal) = ["st", "nd", "rd", "th"]
        .iter()
        .find_map(|s| body.strip_suffix(s))
        .map_or((body, false), |b| (b, true));
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let value: f64 = body.parse().ok()?;
    value.is_finite().then_some((value, plus, ordinal))
}

/// "a couple", "a few", "half a", "a year": vague or implied quantities.
fn vague_at(tokens: &[&str], i: usize) -> Option<NumberMatch> {
    let tok = |k: usize| tokens.get(k).copied().unwrap_or("");
    let quantity = match (tok(i), tok(i + 1)) {
        ("a", "couple") | ("couple", _) => Some((2.0, 0.6, if tok(i) == "a" { 2 } else { 1 })),
        ("a", "few") => Some((3.0, 0.5, 2)),
        ("several", _) => Some((3.0, 0.4, 1)),
        ("a", "dozen") => Some((12.0, 0.8, 2)),
        ("half", "a") | ("a", "half") => Some((0.5, 0.85, 2)),
        ("a" | "an", "year" | "month" | "week" | "day") => Some((1.0, 0.85, 1)),
        _ => None,
    };
    let (value, confidence, len) = quantity?;
    let mut m = NumberMatch {
        value,
        start: i,
        end: i + len,
        confidence,
        ordinal: false,
    };
    if len == 1 && tok(i) == "a" {
        // "a year and a half": the article stands for one, the unit follows.
        if tok(i + 2) == "and" && tok(i + 3) == "a" && tok(i + 4) == "half" {
            m.value += 0.5;
            m.end = i + 5;
        }
    } else if tok(m.end) == "of" {
        m.end += 1;
    }
    Some(m)
}

/// The number starting at `tokens[i]`, if any.
fn number_at(tokens: &[&str], i: usize) -> Option<NumberMatch> {
    let tok = |k: usize| tokens.get(k).copied().unwrap_or("");
    if let Some((value, plus, ordinal)) = digits(tok(i)) {
        let mut m = NumberMatch {
            value,
            start: i,
            end: i + 1,
            confidence: if plus { 0.9 } else { 0.95 },
            ordinal,
        };
        extend_fraction(tokens, &mut m);
        return Some(m);
    }
    if let Some(m) = vague_at(tokens, i) {
        return Some(m);
    }
    let mut total: u64 = 0;
    let mut current: u64 = 0;
    let mut last = Last::Nothing;
    let mut k = i;
    let mut ordinal = false;
    while k < tokens.len() {
        let w = tokens[k];
        if let Some(n) = unit_word(w) {
            if matches!(last, Last::Unit | Last::Teen) {
                break;
            }
            current += u64::from(n);
            last = Last::Unit;
        } else if let Some(n) = teen_word(w) {
            if matches!(last, Last::Unit | Last::Teen | Last::Ten) {
                break;
            }
            current += u64::from(n);
            last = Last::Teen;
        } else if let Some(n) = ten_word(w) {
            if matches!(last, Last::Unit | Last::Teen | Last::Ten) {
                break;
            }
            current += u64::from(n);
            last = Last::Ten;
        } else if let Some(n) = ordinal_word(w) {
            if matches!(last, Last::Unit | Last::Teen)
                || (last == Last::Ten && n >= 10)
                || (last == Last::Nothing && k > 0 && tokens[k - 1] == "a")
            {
                break;
            }
            current += u64::from(n);
            ordinal = true;
            k += 1;
            break;
        } else if w == "hundred" && last != Last::Hundred {
            current = current.max(1) * 100;
            last = Last::Hundred;
        } else if w == "thousand" && last != Last::Thousand {
            total += current.max(1) * 1000;
            current = 0;
            last = Last::Thousand;
        } else if w == "and"
            && matches!(last, Last::Hundred | Last::Thousand)
            && (unit_word(tok(k + 1)).is_some()
                || teen_word(tok(k + 1)).is_some()
                || ten_word(tok(k + 1)).is_some())
        {
            // "one hundred and five"
        } else {
            break;
        }
        k += 1;
    }
    if last == Last::Nothing && !ordinal {
        return None;
    }
    // "a hundred": the article belongs to the number.
    let start = if tokens.get(i.wrapping_sub(1)) == Some(&"a") && tok(i) == "hundred" {
        i - 1
    } else {
        i
    };
    let mut m = NumberMatch {
        value: (total + current) as f64,
        start,
        end: k,
        confidence: 0.95,
        ordinal,
    };
    if !ordinal {
        extend_fraction(tokens, &mut m);
    }
    Some(m)
}

/// "and a half", "point five", "plus".
fn extend_fraction(tokens: &[&str], m: &mut NumberMatch) {
    let tok = |k: usize| tokens.get(k).copied().unwrap_or("");
    let e = m.end;
    if tok(e) == "and" && tok(e + 1) == "a" && tok(e + 2) == "half" {
        m.value += 0.5;
        m.end = e + 3;
    } else if tok(e) == "and" && tok(e + 1) == "half" {
        m.value += 0.5;
        m.end = e + 2;
    } else if tok(e) == "point" {
        if let Some(d) = unit_word(tok(e + 1)) {
            m.value += f64::from(d) / 10.0;
            m.end = e + 2;
        }
    } else if matches!(tok(e), "plus" | "+") {
        m.end = e + 1;
        m.confidence = m.confidence.min(0.9);
    }
}

/// Every number in `tokens`, left to right, non-overlapping.
pub(crate) fn find_numbers(tokens: &[&str]) -> Vec<NumberMatch> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match number_at(tokens, i) {
            Some(m) if m.end > i => {
                i = m.end;
                found.push(m);
            }
            _ => i += 1,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> f64 {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let found = find_numbers(&tokens);
        assert_eq!(found.len(), 1, "{text}: {found:?}");
        found[0].value
    }

    #[test]
    fn word_numbers_compose() {
        for (text, value) in [
            ("five", 5.0),
            ("twenty five", 25.0),
            ("one hundred and five", 105.0),
            ("a hundred", 100.0),
            ("two thousand twenty five", 2025.0),
            ("two thousand and twenty five", 2025.0),
            ("nineteen", 19.0),
            ("five and a half", 5.5),
            ("two point five", 2.5),
            ("5+", 5.0),
            ("2.5", 2.5),
            ("15th", 15.0),
            ("twenty first", 21.0),
            ("fifteenth", 15.0),
            ("a couple of", 2.0),
            ("a year and a half", 1.5),
        ] {
            assert!((one(text) - value).abs() < 1e-9, "{text}");
        }
    }

    #[test]
    fn adjacent_units_are_separate_numbers() {
        let tokens = ["five", "six"];
        assert_eq!(find_numbers(&tokens).len(), 2);
    }
}
