//! XML 1.0 escaping for text and attribute values.

/// Whether XML 1.0 allows `c` at all: tab, LF, CR and everything from U+0020 except U+FFFE and
/// U+FFFF (Rust `char`s are never surrogates).
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Escapes text content: `&`, `<`, `>` become entities, CR becomes `&#13;` (parsers would
/// otherwise turn CRLF into LF), and characters XML forbids (control characters, U+FFFE,
/// U+FFFF) are removed.
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| allowed(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes an attribute value for either quote style: like [`xml_text`] plus `"` and `'`, and
/// tab, LF and CR as character references so parsers keep them instead of turning them into
/// spaces.
pub fn xml_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| allowed(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}
