//! Reading a 1–5 score out of a judge's reply, however chatty.

use std::sync::LazyLock;

use regex::Regex;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("constant regex is valid: {e}"))
}

/// A mention of the scale itself ("(1-5)", "1 to 5", "scale of 1–5"), which is not a score.
static SCALE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\bfrom\s+1\s+to\s+5\b|\b1\s*(?:-|–|—|to)\s*5\b"));

/// A number.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"\d+(?:\.\d+)?"));

/// A label naming the score, then (within a short clause) the number.
static LABELLED: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?i)\b(?:score|rating|rated|rate|grade|stars)\b[^0-9\n.!?;]{0,16}?(\d+(?:\.\d+)?)"#)
});

/// A number written against the scale: "4/5", "4 out of 5", "4 stars".
static AGAINST_SCALE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(\d+(?:\.\d+)?)\s*(?:/\s*5\b|out\s+of\s+5\b|stars?\b)"));

/// A connective that makes a number one of two ("3 or 4", "3-4", "3 to 4").
static ALTERNATIVE_AFTER: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\s*(?:or|-|–|to)\s*\d"));
static ALTERNATIVE_BEFORE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\d\s*(?:or|-|–|to)\s*$"));

/// Reads a 1–5 score from a judge's reply, or `None` when the reply has no unambiguous one.
///
/// Markdown emphasis (`**4**`) and mentions of the scale itself ("on a scale of 1-5") are
/// ignored. Then, in order:
/// 1. a reply that is just a number: that number ("4", "4.5");
/// 2. otherwise the *last* number that is labelled as the score ("Score: 4", "Rating: 4.5",
///    "I'd rate this a 4", `{"score": 4}`) or written against the scale ("4/5", "4 out of 5",
///    "4 stars"): judges restate their verdict at the end, and a label beats other numbers
///    ("5 reasons ... Score: 2" is 2);
/// 3. otherwise the last standalone number from 1 to 5 ("... overall I'd say 3.").
///
/// The chosen number must lie in 1..=5 ("Score: 7" or "8/10" is `None`, never clamped). A
/// number offered as one of two ("3 or 4", "3-4") is ambiguous: `None`, never a guess.
pub fn parse_score(reply: &str) -> Option<f64> {
    let text: String = reply
        .chars()
        .map(|c| {
            if matches!(c, '*' | '_' | '`' | '#') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let text = SCALE.replace_all(&text, " ");
    let text = text.trim();
    if let Ok(v) = text.trim_end_matches('.').trim().parse::<f64>() {
        return in_range(v);
    }
    let labelled = LABELLED
        .captures_iter(text)
        .chain(AGAINST_SCALE.captures_iter(text))
        .filter_map(|c| c.get(1))
        .max_by_key(|m| m.start());
    if let Some(m) = labelled {
        return checked(text, m.start(), m.end());
    }
    let last = NUMBER
        .find_iter(text)
        .filter(|m| standalone(text, m.start(), m.end()))
        .filter(|m| m.as_str().parse::<f64>().ok().and_then(in_range).is_some())
        .last()?;
    checked(text, last.start(), last.end())
}

/// The value at `start..end` when in range and not one of two alternatives.
fn checked(text: &str, start: usize, end: usize) -> Option<f64> {
    if ALTERNATIVE_AFTER.is_match(&text[end..]) || ALTERNATIVE_BEFORE.is_match(&text[..start]) {
        return None;
    }
    text[start..end].parse::<f64>().ok().and_then(in_range)
}

fn in_range(v: f64) -> Option<f64> {
    (1.0..=5.0).contains(&v).then_some(v)
}

/// Not glued to letters or other digits ("gpt-4o", "v2", "1990" are not scores).
fn standalone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    // "gpt-4" and "3.1.2": a number after a hyphen that follows a letter, or a dotted run.
    let hyphenated = text[..start].ends_with('-')
        && text[..start.saturating_sub(1)]
            .chars()
            .next_back()
            .is_some_and(char::is_alphabetic);
    let dotted = (text[end..].starts_with('.')
        && text[end + 1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()))
        || (text[..start].ends_with('.')
            && text[..start - 1]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_digit()));
    !glued(before) && !glued(after) && !hyphenated && !dotted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Option<f64>)] = &[
            ("4", Some(4.0)),
            (" 5\n", Some(5.0)),
            ("3.", Some(3.0)),
            ("Score: 4", Some(4.0)),
            ("score:4", Some(4.0)),
            ("4/5", Some(4.0)),
            ("**4**", Some(4.0)),
            ("**Score:** **3**", Some(3.0)),
            (
                "I'd rate this a 4 out of 5 because it covers the main points.",
                Some(4.0),
            ),
            ("Rating: 4.5", Some(4.5)),
            (
                "{\"score\": 2, \"reason\": \"misses 3 of the 5 points\"}",
                Some(2.0),
            ),
            (
                "The answer gives 5 reasons, but none is relevant. Overall: 2",
                Some(2.0),
            ),
            ("The answer gives 5 reasons. Score: 2", Some(2.0)),
            ("On a scale of 1-5, I would give it a 3.", Some(3.0)),
            ("Score (1-5): 4", Some(4.0)),
            ("Relevance score from 1 to 5: 5", Some(5.0)),
            ("It deserves 4 stars.", Some(4.0)),
            (
                "Score: 3\nReason: it has 2 factual errors in 1990s dates",
                Some(3.0),
            ),
            (
                "Initially I thought 2, but on reflection the score is 4.",
                Some(4.0),
            ),
            ("I'd say 3 or 4", None),
            ("Score: 3-4", None),
            ("somewhere from 2 to 3", None),
            ("Score: 7", None),
            ("8/10", None),
            ("0", None),
            ("10", None),
            ("5.5", None),
            ("", None),
            ("I cannot judge this answer.", None),
            ("Compared with gpt-4o and v2 in 1990, it is fine.", None),
            ("The answer cites version 3.1.2.", None),
        ];
        for (reply, want) in cases {
            assert_eq!(parse_score(reply), *want, "reply: {reply:?}");
        }
    }
}
