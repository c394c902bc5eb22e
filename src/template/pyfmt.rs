//! Render template values the way Python's `str()` does, so output matches promptflow's jinja2.
//!
//! jinja2 prints `{{ x }}` with `str(x)`: `True`/`False`, `None`, `1.0`, `['a', 'b']`,
//! `{'k': 1}`. minijinja would print `true`, `none`, `[\"a\", \"b\"]`; this module fixes that.

use std::fmt::Write;

use minijinja::value::{Value, ValueKind};

/// How a list printed directly (`{{ items }}`) is rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListStyle {
    /// Python `str(list)`: `['a', 'b']`. What promptflow's `prompt` nodes and `.prompty` do.
    #[default]
    Python,
    /// One item per line. promptflow's Azure OpenAI chat tool (`aoai.py`, not its OpenAI one)
    /// wraps list inputs in `ChatInputList`, whose `str()` joins the items' `str()` with newlines.
    Lines,
}

/// Appends Python's `str(value)` to `out`; lists follow `style` (containers inside dicts use repr).
pub fn write_str(out: &mut String, value: &Value, style: ListStyle) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable if style == ListStyle::Lines => {
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    write_str(out, &item, style);
                }
            }
        }
        _ => write_repr(out, value),
    }
}

/// Appends Python's `repr(value)` to `out` (strings quoted, containers recursive).
pub fn write_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => write_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &item);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = value.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &key);
                    out.push_str(": ");
                    let item = value.get_item(&key).unwrap_or_default();
                    write_repr(out, &item);
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else if let Ok(f) = f64::try_from(value.clone()) {
        write_float(out, f);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Appends Python's `repr(float)`: shortest round-trip digits, `.0` on whole numbers, exponent
/// form (`1e+16`, `1e-05`) outside `1e-4 <= |f| < 1e16`.
pub fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e2", "1e16", "5e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// Appends Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
pub fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let code = c as u32;
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// An approximation of Python's `str.isprintable` (controls, separators, format and
/// private-use characters and noncharacters are not printable; the space is).
fn is_printable(c: char) -> bool {
    let code = c as u32;
    !(c.is_control()
        || matches!(
            code,
            0xA0 | 0xAD
                | 0x1680
                | 0x180E
                | 0x2000..=0x200F
                | 0x2028..=0x202F
                | 0x205F..=0x2064
                | 0x2066..=0x206F
                | 0x3000
                | 0xD800..=0xF8FF
                | 0xFDD0..=0xFDEF
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0xFFFE..=0xFFFF
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(f: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, f);
        s
    }

    fn repr(v: serde_json::Value) -> String {
        let mut s = String::new();
        write_repr(&mut s, &Value::from_serialize(&v));
        s
    }

    #[test]
    fn floats_render_like_python_repr() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(-2.5), "-2.5");
        assert_eq!(float(123.456), "123.456");
        assert_eq!(float(1e16), "1e+16");
        assert_eq!(float(1.5e16), "1.5e+16");
        assert_eq!(float(1e15), "1000000000000000.0");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(float(1.25e-7), "1.25e-07");
        assert_eq!(float(-0.0), "-0.0");
        assert_eq!(float(f64::INFINITY), "inf");
        assert_eq!(float(1e300), "1e+300");
    }

    #[test]
    fn strings_repr_like_python() {
        assert_eq!(repr(serde_json::json!("a")), "'a'");
        assert_eq!(repr(serde_json::json!("it's")), "\"it's\"");
        assert_eq!(repr(serde_json::json!("'\"")), "'\\'\"'");
        assert_eq!(repr(serde_json::json!("a\nb\\")), "'a\\nb\\\\'");
        assert_eq!(repr(serde_json::json!("\u{1}é")), "'\\x01é'");
    }

    #[test]
    fn containers_repr_like_python() {
        let v = serde_json::json!({"b": [1, 2.0, true, null], "a": {"x": "y"}});
        assert_eq!(repr(v), "{'b': [1, 2.0, True, None], 'a': {'x': 'y'}}");
        assert_eq!(repr(serde_json::json!([])), "[]");
        assert_eq!(repr(serde_json::json!({})), "{}");
    }

    #[test]
    fn lines_style_joins_top_level_lists() {
        let v = Value::from_serialize(serde_json::json!(["a", {"k": [1]}, ["b", "c"]]));
        let mut s = String::new();
        write_str(&mut s, &v, ListStyle::Lines);
        assert_eq!(s, "a\n{'k': [1]}\nb\nc");
        let mut p = String::new();
        write_str(&mut p, &v, ListStyle::Python);
        assert_eq!(p, "['a', {'k': [1]}, ['b', 'c']]");
    }
}

/// Python's `str(value)` of a JSON value read from YAML: strings as they are, `True`/`False`,
/// `None`, integers, floats as `repr(float)`; lists and objects as [`python_json_dumps`] (how
/// promptflow turns a flow's `environment_variables` into strings).
pub fn python_str(value: &serde_json::Value) -> String {
    use serde_json::Value as J;
    let mut out = String::new();
    match value {
        J::String(s) => out.push_str(s),
        J::Bool(true) => out.push_str("True"),
        J::Bool(false) => out.push_str("False"),
        J::Null => out.push_str("None"),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => write_float(&mut out, f),
            _ => out.push_str(&n.to_string()),
        },
        J::Array(_) | J::Object(_) => python_json_dumps(&mut out, value),
    }
    out
}

/// Appends Python's `json.dumps(value)` with its defaults: `", "` and `": "` separators,
/// non-ASCII escaped as `\uXXXX` (`ensure_ascii`), floats as `repr(float)`.
pub fn python_json_dumps(out: &mut String, value: &serde_json::Value) {
    use serde_json::Value as J;
    match value {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) if f.is_nan() => out.push_str("NaN"),
            (_, _, Some(f)) if f.is_infinite() => {
                out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
            }
            (_, _, Some(f)) => write_float(out, f),
            _ => out.push_str(&n.to_string()),
        },
        J::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json_dumps(out, item);
            }
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json_dumps(out, &J::String(k.clone()));
                out.push_str(": ");
                python_json_dumps(out, v);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod python_text_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn str_and_json_dumps_print_as_python_does() {
        for (value, shown) in [
            (json!("text"), "text"),
            (json!(true), "True"),
            (json!(null), "None"),
            (json!(3), "3"),
            (json!(1.0), "1.0"),
            (json!(0.5), "0.5"),
            (json!([1, "a"]), "[1, \"a\"]"),
            (
                json!({"k": [true, null], "é": 1e20}),
                "{\"k\": [true, null], \"\\u00e9\": 1e+20}",
            ),
        ] {
            assert_eq!(python_str(&value), shown, "{value}");
        }
    }
}
