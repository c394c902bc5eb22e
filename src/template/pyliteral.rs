//! A small `ast.literal_eval` for the literals a chat template can hold (`tool_calls:` lists):
//! strings, numbers, `True`/`False`/`None`, lists, tuples and dicts. JSON's `true`/`null` are not
//! Python and are rejected, as promptflow rejects them.

use serde_json::{Map, Number, Value};

/// Parses one Python literal; `None` when the text is not exactly one valid literal.
pub fn literal_eval(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        src: text,
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'[' => self.seq(b']', depth).map(Value::Array),
            b'(' => self.seq(b')', depth).map(Value::Array),
            b'{' => self.dict(depth),
            b'\'' | b'"' => self.string().map(Value::String),
            b'-' | b'+' | b'0'..=b'9' | b'.' => self.number(),
            _ => self.name(),
        }
    }

    fn seq(&mut self, close: u8, depth: usize) -> Option<Vec<Value>> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek()? == close {
                self.i += 1;
                return Some(items);
            }
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {}
                _ => return None,
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Option<Value> {
        self.i += 1;
        let mut map = Map::new();
        loop {
            self.ws();
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(Value::Object(map));
            }
            let key = match self.value(depth + 1)? {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => if b { "True" } else { "False" }.to_string(),
                Value::Null => "None".to_string(),
                _ => return None,
            };
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            let v = self.value(depth + 1)?;
            map.insert(key, v);
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {}
                _ => return None,
            }
        }
    }

    fn name(&mut self) -> Option<Value> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        match &self.src[start..self.i] {
            "True" => Some(Value::Bool(true)),
            "False" => Some(Value::Bool(false)),
            "None" => Some(Value::Null),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-' | b'_'
            )
        {
            self.i += 1;
        }
        let text: String = self.src[start..self.i]
            .chars()
            .filter(|c| *c != '_')
            .collect();
        if let Ok(n) = text.parse::<i64>() {
            return Some(Value::Number(n.into()));
        }
        let f: f64 = text.parse().ok()?;
        Number::from_f64(f).map(Value::Number)
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        let mut chars = self.src[self.i..].char_indices();
        while let Some((off, c)) = chars.next() {
            match c {
                c if c as u32 == quote as u32 => {
                    self.i += off + 1;
                    return Some(out);
                }
                '\n' => return None,
                '\\' => {
                    let (_, e) = chars.next()?;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        '\\' | '\'' | '"' => out.push(e),
                        '\n' => {}
                        'x' | 'u' | 'U' => {
                            let len = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let mut code = 0u32;
                            for _ in 0..len {
                                code = code * 16 + chars.next()?.1.to_digit(16)?;
                            }
                            out.push(char::from_u32(code)?);
                        }
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_python_tool_calls() {
        let text = "[{'id': 'call_1', 'type': 'function', 'function': {'name': 'get_weather', \
                    'arguments': '{\"location\": \"Boston\"}'}}]";
        let v = literal_eval(text).unwrap();
        assert_eq!(
            v[0]["function"]["arguments"],
            json!("{\"location\": \"Boston\"}")
        );
        assert_eq!(v[0]["id"], json!("call_1"));
    }

    #[test]
    fn parses_scalars_and_nesting() {
        assert_eq!(
            literal_eval("[1, -2.5, True, None, (1, 2), {'a': [ ]}, \"\\u00e9\\n\",]"),
            Some(json!([1, -2.5, true, null, [1, 2], {"a": []}, "é\n"]))
        );
    }

    #[test]
    fn rejects_non_python() {
        assert_eq!(literal_eval("[true]"), None);
        assert_eq!(literal_eval("[1, 2"), None);
        assert_eq!(literal_eval("[1] x"), None);
        assert_eq!(literal_eval("['a]"), None);
        assert_eq!(literal_eval(&"[".repeat(200)), None);
    }
}
