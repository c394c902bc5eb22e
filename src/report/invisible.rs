//! Characters that change how text reads without being seen — Unicode bidi overrides and
//! isolates, zero-width characters, control characters — shown visibly as `⟨U+202E⟩` in the
//! HTML report, so a model output or a dataset value cannot make a reader see something other
//! than what is there (an answer that reads "approved" but is stored reversed, a hidden word).

/// Whether `c` is shown as its code point: bidi controls, zero-width and invisible formatting
/// characters, and control characters other than tab, newline and carriage return.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{0000}'..='\u{0008}'
        | '\u{000B}'
        | '\u{000C}'
        | '\u{000E}'..='\u{001F}'
        | '\u{007F}'..='\u{009F}'
        | '\u{00AD}'
        | '\u{061C}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// How an invisible character is shown.
fn marker(c: char) -> String {
    format!("⟨U+{:04X}⟩", u32::from(c))
}

/// `text` with every invisible character shown as its code point.
pub fn show(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_invisible) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_invisible(c) {
            out.push_str(&marker(c));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// JSON text (as serde_json writes it) whose strings show every invisible character as its code
/// point: raw ones, and control characters written as `\u00XX`, `\b` or `\f` escapes. The result
/// is still valid JSON.
pub fn show_in_json(json: &str) -> std::borrow::Cow<'_, str> {
    let needs = json.chars().any(is_invisible)
        || json.contains("\\u00")
        || json.contains("\\b")
        || json.contains("\\f");
    if !needs {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if is_invisible(c) {
                out.push_str(&marker(c));
            } else {
                out.push(c);
            }
            continue;
        }
        match chars.next() {
            Some('b') => out.push_str(&marker('\u{0008}')),
            Some('f') => out.push_str(&marker('\u{000C}')),
            Some('u') => {
                let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if is_invisible(ch) => out.push_str(&marker(ch)),
                    _ => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_zero_width_and_controls_are_shown() {
        assert_eq!(show("plain text\nwith a tab\t"), "plain text\nwith a tab\t");
        assert_eq!(
            show("pay \u{202E}01$\u{202C} now\u{200B}!\u{7}"),
            "pay ⟨U+202E⟩01$⟨U+202C⟩ now⟨U+200B⟩!⟨U+0007⟩"
        );
        assert_eq!(
            show("\u{2067}x\u{2069}\u{FEFF}"),
            "⟨U+2067⟩x⟨U+2069⟩⟨U+FEFF⟩"
        );
    }

    #[test]
    fn json_stays_json_and_shows_escaped_controls() {
        let value =
            serde_json::json!({"o": "a\u{202E}b\u{1}c\u{8}d\u{c}e\n\\u0001 literal", "n": 1});
        let text = serde_json::to_string(&value).unwrap();
        let shown = show_in_json(&text);
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(
            back["o"],
            "a⟨U+202E⟩b⟨U+0001⟩c⟨U+0008⟩d⟨U+000C⟩e\n\\u0001 literal"
        );
        assert_eq!(back["n"], 1);
        // Text with nothing to show is not copied.
        assert!(matches!(
            show_in_json("{\"a\":\"b\\n\"}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
