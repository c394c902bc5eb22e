//! A JSON Schema validator for the common subset of the standard, without a dependency.
//!
//! Supported keywords: `type` (a name or a list; `integer` is a number without a fraction),
//! `enum`, `const`, `properties`, `required`, `additionalProperties` (boolean or schema),
//! `minProperties`, `maxProperties`, `items` (one schema for every item), `minItems`,
//! `maxItems`, `uniqueItems`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`
//! (numbers, as drafts 6 and later), `multipleOf`, `minLength`, `maxLength` (in characters),
//! `pattern` (unanchored, Rust `regex` syntax), `allOf`, `anyOf`, `oneOf`, `not`, and the
//! boolean schemas `true` / `false`. Annotations (`title`, `description`, `$schema`, `$id`,
//! `default`, `examples`, `format`, ...) are ignored. Keywords that would change the verdict
//! but are not supported (`$ref`, `patternProperties`, `if`, `prefixItems`, ...) are refused
//! when the schema is loaded, never silently skipped.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Value};

/// A schema that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema uses a keyword this validator does not implement.
    #[error(
        "JSON Schema keyword `{keyword}` at `{path}` is not supported; supported: {}",
        SUPPORTED.join(", ")
    )]
    Unsupported {
        /// The keyword.
        keyword: String,
        /// Where in the schema (JSON pointer).
        path: String,
    },
    /// A keyword has a value of the wrong shape.
    #[error("JSON Schema keyword `{keyword}` at `{path}` must be {expected}")]
    BadKeyword {
        /// The keyword.
        keyword: String,
        /// Where in the schema (JSON pointer).
        path: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A `pattern` is not a valid regular expression.
    #[error("JSON Schema `pattern` at `{path}` is not a valid regular expression: {source}")]
    Pattern {
        /// Where in the schema (JSON pointer).
        path: String,
        /// Why it does not compile.
        source: regex::Error,
    },
}

const SUPPORTED: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

const UNSUPPORTED: &[&str] = &[
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "patternProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
    "if",
    "then",
    "else",
    "prefixItems",
    "additionalItems",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedItems",
    "unevaluatedProperties",
];

const TYPES: &[&str] = &[
    "null", "boolean", "object", "array", "number", "integer", "string",
];

/// A checked schema, ready to validate many instances.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Value,
    patterns: HashMap<String, Regex>,
}

impl Schema {
    /// Checks `root` for unsupported keywords and malformed values and compiles its patterns.
    pub fn new(root: Value) -> Result<Self, SchemaError> {
        let mut patterns = HashMap::new();
        check(&root, "", &mut patterns)?;
        Ok(Schema { root, patterns })
    }

    /// Every way `instance` breaks the schema, each as "`/json/pointer`: what is wrong"; empty
    /// when it is valid.
    pub fn validate(&self, instance: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.walk(&self.root, instance, "", &mut errors);
        errors
    }

    fn walk(&self, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        let s = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return errors.push(err(at, "no value is allowed here")),
            Value::Object(s) => s,
            _ => return,
        };
        if let Some(t) = s.get("type") {
            let names: Vec<&str> = match t {
                Value::String(n) => vec![n.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !names.iter().any(|n| has_type(v, n)) {
                errors.push(err(
                    at,
                    &format!("expected {}, got {}", names.join(" or "), type_of(v)),
                ));
                return;
            }
        }
        if let Some(Value::Array(options)) = s.get("enum") {
            if !options.iter().any(|o| json_eq(o, v)) {
                errors.push(err(
                    at,
                    &format!(
                        "{} is not one of {}",
                        short(v),
                        Value::Array(options.clone())
                    ),
                ));
            }
        }
        if let Some(c) = s.get("const") {
            if !json_eq(c, v) {
                errors.push(err(at, &format!("{} is not {c}", short(v))));
            }
        }
        match v {
            Value::Object(o) => self.walk_object(s, o, at, errors),
            Value::Array(items) => self.walk_array(s, items, at, errors),
            Value::Number(n) => walk_number(s, n.as_f64().unwrap_or(f64::NAN), at, errors),
            Value::String(text) => self.walk_string(s, text, at, errors),
            _ => {}
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            for sub in all {
                self.walk(sub, v, at, errors);
            }
        }
        if let Some(Value::Array(any)) = s.get("anyOf") {
            if !any.iter().any(|sub| self.is_valid(sub, v)) {
                errors.push(err(at, "matches none of the `anyOf` schemas"));
            }
        }
        if let Some(Value::Array(one)) = s.get("oneOf") {
            let n = one.iter().filter(|sub| self.is_valid(sub, v)).count();
            if n != 1 {
                errors.push(err(
                    at,
                    &format!("matches {n} of the `oneOf` schemas, not exactly one"),
                ));
            }
        }
        if let Some(not) = s.get("not") {
            if self.is_valid(not, v) {
                errors.push(err(at, "matches the `not` schema"));
            }
        }
    }

    fn is_valid(&self, schema: &Value, v: &Value) -> bool {
        let mut e = Vec::new();
        self.walk(schema, v, "", &mut e);
        e.is_empty()
    }

    fn walk_object(
        &self,
        s: &Map<String, Value>,
        o: &Map<String, Value>,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        if let Some(Value::Array(req)) = s.get("required") {
            for name in req.iter().filter_map(Value::as_str) {
                if !o.contains_key(name) {
                    errors.push(err(at, &format!("missing required property `{name}`")));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, val) in o {
            let child = format!("{at}/{}", escape(k));
            match props.and_then(|p| p.get(k)) {
                Some(sub) => self.walk(sub, val, &child, errors),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(err(at, &format!("property `{k}` is not allowed")))
                    }
                    Some(sub) => self.walk(sub, val, &child, errors),
                    None => {}
                },
            }
        }
        if let Some(min) = s.get("minProperties").and_then(Value::as_u64) {
            if (o.len() as u64) < min {
                errors.push(err(
                    at,
                    &format!("has {} properties, fewer than {min}", o.len()),
                ));
            }
        }
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
            if o.len() as u64 > max {
                errors.push(err(
                    at,
                    &format!("has {} properties, more than {max}", o.len()),
                ));
            }
        }
    }

    fn walk_array(
        &self,
        s: &Map<String, Value>,
        items: &[Value],
        at: &str,
        errors: &mut Vec<String>,
    ) {
        if let Some(sub) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.walk(sub, item, &format!("{at}/{i}"), errors);
            }
        }
        if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                errors.push(err(
                    at,
                    &format!("has {} items, fewer than {min}", items.len()),
                ));
            }
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            if items.len() as u64 > max {
                errors.push(err(
                    at,
                    &format!("has {} items, more than {max}", items.len()),
                ));
            }
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) {
            let dup = items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b)));
            if dup {
                errors.push(err(at, "has duplicate items"));
            }
        }
    }

    fn walk_string(&self, s: &Map<String, Value>, text: &str, at: &str, errors: &mut Vec<String>) {
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
            if len < min {
                errors.push(err(
                    at,
                    &format!("is {len} characters long, shorter than {min}"),
                ));
            }
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                errors.push(err(
                    at,
                    &format!("is {len} characters long, longer than {max}"),
                ));
            }
        }
        if let Some(Value::String(p)) = s.get("pattern") {
            if let Some(re) = self.patterns.get(p) {
                if !re.is_match(text) {
                    errors.push(err(
                        at,
                        &format!(
                            "{} does not match pattern {p}",
                            short(&Value::String(text.to_string()))
                        ),
                    ));
                }
            }
        }
    }
}

fn walk_number(s: &Map<String, Value>, n: f64, at: &str, errors: &mut Vec<String>) {
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    if let Some(m) = num("minimum").filter(|m| n < *m) {
        errors.push(err(at, &format!("{n} is less than the minimum {m}")));
    }
    if let Some(m) = num("maximum").filter(|m| n > *m) {
        errors.push(err(at, &format!("{n} is greater than the maximum {m}")));
    }
    if let Some(m) = num("exclusiveMinimum").filter(|m| n <= *m) {
        errors.push(err(at, &format!("{n} is not greater than {m}")));
    }
    if let Some(m) = num("exclusiveMaximum").filter(|m| n >= *m) {
        errors.push(err(at, &format!("{n} is not less than {m}")));
    }
    if let Some(m) = num("multipleOf") {
        let q = n / m;
        if (q - q.round()).abs() > 1e-9 * q.abs().max(1.0) {
            errors.push(err(at, &format!("{n} is not a multiple of {m}")));
        }
    }
}

fn check(
    schema: &Value,
    path: &str,
    patterns: &mut HashMap<String, Regex>,
) -> Result<(), SchemaError> {
    let s = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(s) => s,
        _ => return Err(bad("(schema)", path, "an object or a boolean")),
    };
    for (k, v) in s {
        let here = format!("{path}/{}", escape(k));
        if UNSUPPORTED.contains(&k.as_str()) {
            return Err(SchemaError::Unsupported {
                keyword: k.clone(),
                path: here,
            });
        }
        match k.as_str() {
            "type" => {
                let ok = match v {
                    Value::String(t) => TYPES.contains(&t.as_str()),
                    Value::Array(a) => a
                        .iter()
                        .all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))),
                    _ => false,
                };
                if !ok {
                    return Err(bad(
                        k,
                        path,
                        "a type name (null, boolean, object, array, number, integer, string) or a list of them",
                    ));
                }
            }
            "enum" if !v.is_array() => return Err(bad(k, path, "an array")),
            "required" if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) => {
                return Err(bad(k, path, "an array of property names"));
            }
            "properties" => {
                let Some(props) = v.as_object() else {
                    return Err(bad(k, path, "an object of schemas"));
                };
                for (name, sub) in props {
                    check(sub, &format!("{here}/{}", escape(name)), patterns)?;
                }
            }
            "additionalProperties" | "items" | "not" => check(v, &here, patterns)?,
            "allOf" | "anyOf" | "oneOf" => {
                let Some(subs) = v.as_array().filter(|a| !a.is_empty()) else {
                    return Err(bad(k, path, "a non-empty array of schemas"));
                };
                for (i, sub) in subs.iter().enumerate() {
                    check(sub, &format!("{here}/{i}"), patterns)?;
                }
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" if !v.is_number() => {
                return Err(bad(k, path, "a number"));
            }
            "multipleOf" if !v.as_f64().is_some_and(|m| m > 0.0) => {
                return Err(bad(k, path, "a number greater than 0"));
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
            | "maxProperties"
                if v.as_u64().is_none() =>
            {
                return Err(bad(k, path, "a non-negative integer"));
            }
            "uniqueItems" if !v.is_boolean() => return Err(bad(k, path, "true or false")),
            "pattern" => {
                let Some(p) = v.as_str() else {
                    return Err(bad(k, path, "a string"));
                };
                let re = Regex::new(p).map_err(|source| SchemaError::Pattern {
                    path: here.clone(),
                    source,
                })?;
                patterns.insert(p.to_string(), re);
            }
            _ => {}
        }
    }
    Ok(())
}

fn bad(keyword: &str, path: &str, expected: &'static str) -> SchemaError {
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    };
    SchemaError::BadKeyword {
        keyword: keyword.to_string(),
        path,
        expected,
    }
}

fn err(at: &str, what: &str) -> String {
    let at = if at.is_empty() { "/" } else { at };
    format!("{at}: {what}")
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn has_type(v: &Value, name: &str) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "string" => v.is_string(),
        _ => false,
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
    }
}

/// JSON equality where 1 and 1.0 are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person() -> Schema {
        Schema::new(json!({
            "type": "object",
            "required": ["name", "age"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[A-Z]"},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2, "uniqueItems": true}
            },
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn valid_instance_has_no_errors() {
        assert!(
            person()
                .validate(&json!({"name": "Ann", "age": 30, "tags": ["a"]}))
                .is_empty()
        );
        assert!(
            person()
                .validate(&json!({"name": "Ann", "age": 30.0}))
                .is_empty()
        );
    }

    #[test]
    fn each_violation_is_reported_with_its_path() {
        let errors =
            person().validate(&json!({"name": "ann", "age": 1.5, "tags": ["a", "c", "a"], "x": 1}));
        assert!(
            errors.contains(&"/name: \"ann\" does not match pattern ^[A-Z]".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"/age: expected integer, got number".to_string()),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("/tags/1: \"c\" is not one of")),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"/tags: has 3 items, more than 2".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"/tags: has duplicate items".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"/: property `x` is not allowed".to_string()),
            "{errors:?}"
        );
        let errors = person().validate(&json!({"age": 200}));
        assert_eq!(
            errors,
            [
                "/: missing required property `name`",
                "/age: 200 is greater than the maximum 150"
            ]
        );
        assert_eq!(
            person().validate(&json!([1])),
            ["/: expected object, got array"]
        );
    }

    #[test]
    fn combinators() {
        let s = Schema::new(
            json!({"anyOf": [{"type": "string"}, {"type": "number", "exclusiveMinimum": 0}]}),
        )
        .unwrap();
        assert!(s.validate(&json!("x")).is_empty());
        assert!(s.validate(&json!(2)).is_empty());
        assert_eq!(
            s.validate(&json!(0)),
            ["/: matches none of the `anyOf` schemas"]
        );
        let s = Schema::new(
            json!({"oneOf": [{"type": "integer"}, {"type": "number"}], "not": {"const": 7}}),
        )
        .unwrap();
        assert!(s.validate(&json!(1.5)).is_empty());
        assert_eq!(s.validate(&json!(2)).len(), 1);
        assert_eq!(s.validate(&json!(2)).len(), 1);
        assert!(
            Schema::new(json!(false))
                .unwrap()
                .validate(&json!(null))
                .len()
                == 1
        );
        let s = Schema::new(json!({"multipleOf": 0.1})).unwrap();
        assert!(s.validate(&json!(0.3)).is_empty());
        assert_eq!(s.validate(&json!(0.35)).len(), 1);
    }

    #[test]
    fn unsupported_and_malformed_schemas_are_refused() {
        let e = Schema::new(json!({"properties": {"a": {"$ref": "#/defs/x"}}})).unwrap_err();
        assert!(
            e.to_string()
                .contains("`$ref` at `/properties/a/$ref` is not supported"),
            "{e}"
        );
        let e = Schema::new(json!({"type": "str"})).unwrap_err();
        assert!(
            e.to_string().contains("`type` at `/` must be a type name"),
            "{e}"
        );
        let e = Schema::new(json!({"pattern": "("})).unwrap_err();
        assert!(
            e.to_string().contains("not a valid regular expression"),
            "{e}"
        );
        assert!(Schema::new(json!({"title": "t", "format": "email", "description": "d"})).is_ok());
    }
}
