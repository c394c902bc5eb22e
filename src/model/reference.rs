//! References: `${inputs.x}`, `${node.output.a[0]['k']}` — what a node input, an `activate.when`
//! or a flow output points at. A value is a reference only when the whole string is `${...}`.

use std::fmt;

use serde_json::Value;

/// One step into a value: an object key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `${inputs.name...}` or `${flow.name...}`.
    FlowInput { name: String, path: Vec<PathStep> },
    /// `${node.output...}` or `${node}`.
    NodeOutput { node: String, path: Vec<PathStep> },
}

/// A node input, flow output or `activate.when`: a literal or a reference.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSource {
    Literal(Value),
    Reference(Reference),
}

impl ValueSource {
    /// Classify a YAML value: a string that is exactly `${...}` is a reference, anything else is
    /// a literal. A malformed reference is an error message.
    pub fn parse(value: &Value) -> Result<ValueSource, String> {
        match value.as_str() {
            Some(s) if is_reference(s) => Reference::parse(s).map(ValueSource::Reference),
            _ => Ok(ValueSource::Literal(value.clone())),
        }
    }

    /// The node this value depends on, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            ValueSource::Reference(Reference::NodeOutput { node, .. }) => Some(node),
            _ => None,
        }
    }
}

/// Whether `s` has the shape of a reference: the whole string is `${...}`.
pub fn is_reference(s: &str) -> bool {
    let t = s.trim();
    t.starts_with("${") && t.ends_with('}')
}

impl Reference {
    /// Parse `${...}`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let t = text.trim();
        let inner = t
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a reference: write `${{inputs.name}}` or `${{node.output}}`"
                )
            })?
            .trim();
        let (head, rest) = split_head(inner);
        if head.is_empty() {
            return Err(format!(
                "`{text}` names nothing: write `${{inputs.name}}` or `${{node.output}}`"
            ));
        }
        let steps = parse_path(rest).map_err(|e| format!("in `{text}`: {e}"))?;
        if head == "inputs" || head == "flow" {
            let mut steps = steps.into_iter();
            match steps.next() {
                Some(PathStep::Key(name)) => Ok(Reference::FlowInput {
                    name,
                    path: steps.collect(),
                }),
                _ => Err(format!(
                    "`{text}` does not name an input: write `${{{head}.<input name>}}`"
                )),
            }
        } else {
            let mut steps = steps.into_iter();
            match steps.next() {
                None => Ok(Reference::NodeOutput {
                    node: head.to_string(),
                    path: Vec::new(),
                }),
                Some(PathStep::Key(k)) if k == "output" => Ok(Reference::NodeOutput {
                    node: head.to_string(),
                    path: steps.collect(),
                }),
                Some(other) => Err(format!(
                    "`{text}`: a node exposes only `output` (found `{}`); write `${{{head}.output}}`",
                    match other {
                        PathStep::Key(k) => k,
                        PathStep::Index(i) => format!("[{i}]"),
                    }
                )),
            }
        }
    }
}

/// Split `name.rest` / `name[0]...` into the head identifier and the path text after it.
fn split_head(s: &str) -> (&str, &str) {
    let cut = s.find(['.', '[']).unwrap_or(s.len());
    (s[..cut].trim(), &s[cut..])
}

/// Parse `.a.b[0]['k']["k2"]` into steps.
pub fn parse_path(mut s: &str) -> Result<Vec<PathStep>, String> {
    let mut steps = Vec::new();
    while !s.is_empty() {
        if let Some(rest) = s.strip_prefix('.') {
            let cut = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = rest[..cut].trim();
            if key.is_empty() {
                return Err("empty property name after `.`".into());
            }
            steps.push(PathStep::Key(key.to_string()));
            s = &rest[cut..];
        } else if let Some(rest) = s.strip_prefix('[') {
            let close = rest.find(']').ok_or("`[` without a closing `]`")?;
            let inside = rest[..close].trim();
            let quoted = inside
                .strip_prefix('\'')
                .and_then(|x| x.strip_suffix('\''))
                .or_else(|| inside.strip_prefix('"').and_then(|x| x.strip_suffix('"')));
            match quoted {
                Some(k) => steps.push(PathStep::Key(k.to_string())),
                None => match inside.parse::<usize>() {
                    Ok(i) => steps.push(PathStep::Index(i)),
                    Err(_) => {
                        return Err(format!(
                            "`[{inside}]` is neither an index nor a quoted key: write [0] or ['key']"
                        ));
                    }
                },
            }
            s = &rest[close + 1..];
        } else {
            return Err(format!("unexpected `{s}`"));
        }
    }
    Ok(steps)
}

/// Follow `path` into `value`. A missing key or index is an error naming the path so far.
pub fn follow<'v>(value: &'v Value, path: &[PathStep]) -> Result<&'v Value, String> {
    let mut current = value;
    for (i, step) in path.iter().enumerate() {
        let next = match (step, current) {
            (PathStep::Key(k), Value::Object(map)) => map.get(k),
            (PathStep::Index(n), Value::Array(items)) => items.get(*n),
            // A JSON string holding an object is followed too, as promptflow does for LLM replies.
            _ => None,
        };
        current = next.ok_or_else(|| {
            let shown = display_path(&path[..=i]);
            match current {
                Value::Object(map) => {
                    let keys: Vec<&str> = map.keys().map(String::as_str).take(10).collect();
                    format!(
                        "`{shown}` does not exist (available keys: {})",
                        keys.join(", ")
                    )
                }
                Value::Array(items) => {
                    format!(
                        "`{shown}` is out of range (the list has {} items)",
                        items.len()
                    )
                }
                other => format!(
                    "`{shown}` cannot be followed: the value there is {}",
                    type_name(other)
                ),
            }
        })?;
    }
    Ok(current)
}

/// A JSON value's type in words, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `.a[0]['k']`
pub fn display_path(path: &[PathStep]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            PathStep::Key(k) if k.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                out.push('.');
                out.push_str(k);
            }
            PathStep::Key(k) => out.push_str(&format!("['{k}']")),
            PathStep::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::FlowInput { name, path } => {
                write!(f, "${{inputs.{name}{}}}", display_path(path))
            }
            Reference::NodeOutput { node, path } => {
                write!(f, "${{{node}.output{}}}", display_path(path))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(k: &str) -> PathStep {
        PathStep::Key(k.into())
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Reference::parse("${inputs.q}").unwrap(),
            Reference::FlowInput {
                name: "q".into(),
                path: vec![]
            }
        );
        assert_eq!(
            Reference::parse("${flow.q.a}").unwrap(),
            Reference::FlowInput {
                name: "q".into(),
                path: vec![key("a")]
            }
        );
        assert_eq!(
            Reference::parse("${n}").unwrap(),
            Reference::NodeOutput {
                node: "n".into(),
                path: vec![]
            }
        );
        assert_eq!(
            Reference::parse("${n.output.a.b[0]['k k'][\"z\"]}").unwrap(),
            Reference::NodeOutput {
                node: "n".into(),
                path: vec![key("a"), key("b"), PathStep::Index(0), key("k k"), key("z")]
            }
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(
            Reference::parse("${n.outputs}")
                .unwrap_err()
                .contains("only `output`")
        );
        assert!(
            Reference::parse("${inputs}")
                .unwrap_err()
                .contains("does not name an input")
        );
        assert!(
            Reference::parse("${n.output[x]}")
                .unwrap_err()
                .contains("neither an index")
        );
        assert!(Reference::parse("${}").is_err());
    }

    #[test]
    fn only_whole_strings_are_references() {
        assert!(matches!(
            ValueSource::parse(&json!("Hello ${inputs.q}")).unwrap(),
            ValueSource::Literal(_)
        ));
        assert!(matches!(
            ValueSource::parse(&json!("${inputs.q}")).unwrap(),
            ValueSource::Reference(_)
        ));
        assert!(matches!(
            ValueSource::parse(&json!(3)).unwrap(),
            ValueSource::Literal(_)
        ));
    }

    #[test]
    fn follows_paths_and_names_missing_ones() {
        let v = json!({"a": {"b": [10, {"k": "x"}]}});
        let p = parse_path(".a.b[1]['k']").unwrap();
        assert_eq!(follow(&v, &p).unwrap(), &json!("x"));
        let missing = parse_path(".a.c").unwrap();
        let err = follow(&v, &missing).unwrap_err();
        assert!(
            err.contains("`.a.c` does not exist (available keys: b)"),
            "{err}"
        );
        let oob = parse_path(".a.b[5]").unwrap();
        assert!(follow(&v, &oob).unwrap_err().contains("out of range"));
    }

    #[test]
    fn displays_round_trip() {
        let r = Reference::parse("${n.output.a[0]['k-k']}").unwrap();
        assert_eq!(r.to_string(), "${n.output.a[0]['k-k']}");
    }
}
