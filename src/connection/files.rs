//! promptflow connection files: the YAML `pf connection create -f` takes
//! (`$schema: …/OpenAIConnection.schema.json`, `name:`, `type: open_ai`, `api_key: ${env:VAR}`),
//! read from the project's `connections/` folder or `--connections DIR`.
//!
//! No secret is stored in such a file: a secret value (`api_key`, every entry under a custom
//! connection's `secrets:`) must be a `${env:VAR}` reference, which is read from `.env` and the
//! environment when the connection is resolved. A literal secret is refused with its location;
//! promptflow's template placeholders (`"<user-input>"`, `"<to-be-replaced>"`) count as unset.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::Value;

use super::{ApiType, ConnectionError, env_prefix};
use crate::model::locate::YamlIndex;

/// The folder of connection files read by default, under the project root.
pub const DEFAULT_DIR: &str = "connections";

/// The keys a connection file may hold (every promptflow connection type's, together), plus
/// `model` and `deployment`, which `flow` reads as `X_MODEL` / `X_DEPLOYMENT`.
const KNOWN_KEYS: [&str; 20] = [
    "$schema",
    "name",
    "type",
    "module",
    "api_key",
    "api_base",
    "base_url",
    "api_type",
    "api_version",
    "organization",
    "auth_mode",
    "resource_id",
    "endpoint",
    "configs",
    "secrets",
    "custom_type",
    "package",
    "package_version",
    "model",
    "deployment",
];

/// Keys that say what the file is, not a field of the connection.
const META_KEYS: [&str; 7] = [
    "$schema",
    "name",
    "type",
    "module",
    "custom_type",
    "package",
    "package_version",
];

/// promptflow's connection types and the kind of endpoint each is to `flow`.
const TYPES: [(&str, ApiType); 11] = [
    ("open_ai", ApiType::OpenAi),
    ("azure_open_ai", ApiType::Azure),
    ("serverless", ApiType::OpenAi),
    ("custom", ApiType::Custom),
    ("azure_content_safety", ApiType::Custom),
    ("cognitive_search", ApiType::Custom),
    ("serp", ApiType::Custom),
    ("form_recognizer", ApiType::Custom),
    ("azure_ai_services", ApiType::Custom),
    ("qdrant", ApiType::Custom),
    ("weaviate", ApiType::Custom),
];

/// A field's value as the file writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum FileValue {
    /// A plain value (never a secret: those are refused when literal).
    Literal(String),
    /// `${env:VAR}`: read `VAR` from `.env` and the environment.
    Env(String),
    /// A template placeholder (`<user-input>`): unset, for a variable to supply.
    Unset,
}

/// One field of a connection file and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct FileField {
    /// Its value.
    pub value: FileValue,
    /// Whether it is a secret (`api_key`, an entry of `secrets:`).
    pub secret: bool,
    /// 1-based line of the value.
    pub line: usize,
    /// 1-based column of the value.
    pub col: usize,
}

/// One connection read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileConnection {
    /// Its name (`name:`, else the file's stem).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// promptflow's type (`open_ai`, `azure_open_ai`, `custom`, ...).
    pub pf_type: String,
    /// The endpoint kind it maps to.
    pub api_type: ApiType,
    /// Its fields by `flow`'s name: `api_key`, `api_base`, `api_version`, `model`,
    /// `deployment`, and any other field (`organization`, a custom connection's `configs` and
    /// `secrets` entries) kept as an extra field for Python tools. Unset ones are absent.
    pub fields: IndexMap<String, FileField>,
}

impl FileConnection {
    /// The variable that overrides `field` (promptflow's `{NAME}_{FIELD}` convention, the same
    /// one `X_*` variables follow).
    pub fn override_var(&self, field: &str) -> String {
        format!("{}_{}", env_prefix(&self.name), env_prefix(field))
    }
}

/// Every connection file of one folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionFiles {
    /// The folder read, when it exists.
    pub dir: Option<PathBuf>,
    /// The connections, in file order.
    pub connections: Vec<FileConnection>,
    /// Things worth fixing that do not stop a run: unknown keys, placeholders, skipped files.
    pub warnings: Vec<String>,
}

impl ConnectionFiles {
    /// Reads every `*.yml` / `*.yaml` file of `dir`. A missing folder is an error when
    /// `explicit` (`--connections DIR`), and no connections otherwise.
    pub fn load(dir: &Path, explicit: bool) -> Result<ConnectionFiles, ConnectionError> {
        if !dir.is_dir() {
            if explicit {
                return Err(ConnectionError::ConnectionsDirMissing {
                    path: dir.to_path_buf(),
                });
            }
            return Ok(ConnectionFiles::default());
        }
        let read_err = |source| ConnectionError::ConnectionsDirRead {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            let yaml = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e == "yml" || e == "yaml");
            if yaml && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut files = ConnectionFiles {
            dir: Some(dir.to_path_buf()),
            ..ConnectionFiles::default()
        };
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| {
                ConnectionError::ConnectionsDirRead {
                    path: path.clone(),
                    source,
                }
            })?;
            let Some(conn) = parse(&path, &text, &mut files.warnings)? else {
                continue;
            };
            if let Some(first) = files
                .connections
                .iter()
                .find(|c| env_prefix(&c.name) == env_prefix(&conn.name))
            {
                let index = YamlIndex::build(&text);
                return Err(located(
                    &path,
                    &text,
                    index.value("name"),
                    false,
                    format!(
                        "connection '{}' is also defined in {}: keep one definition (or give them different names)",
                        conn.name,
                        first.path.display()
                    ),
                ));
            }
            files.connections.push(conn);
        }
        Ok(files)
    }

    /// The connection named `name` (names compare as their variable prefixes do).
    pub fn get(&self, name: &str) -> Option<&FileConnection> {
        let prefix = env_prefix(name);
        self.connections
            .iter()
            .find(|c| env_prefix(&c.name) == prefix)
    }

    /// Every variable a `${env:VAR}` of these files reads.
    pub fn referenced_vars(&self) -> impl Iterator<Item = &str> {
        self.connections
            .iter()
            .flat_map(|c| c.fields.values())
            .filter_map(|f| match &f.value {
                FileValue::Env(v) => Some(v.as_str()),
                FileValue::Literal(_) | FileValue::Unset => None,
            })
    }
}

/// `${env:VAR}` → `VAR` (the whole value, as promptflow matches it).
fn env_reference(value: &str) -> Option<&str> {
    let inner = value.trim().strip_prefix("${env:")?.strip_suffix('}')?;
    (!inner.is_empty()).then_some(inner.trim())
}

/// promptflow's template placeholders: `<user-input>`, `<to-be-replaced>`, `<your-key>`.
fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    v.len() > 2 && v.starts_with('<') && v.ends_with('>') && !v[1..v.len() - 1].contains(['<', '>'])
}

/// A scalar as text; `None` for null, an error message for a mapping or a list.
fn scalar(value: &Value) -> Result<Option<String>, &'static str> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => {
            Err("must be a single value, not a list or a mapping")
        }
    }
}

/// One file's connection; `None` (with a warning) for a YAML file that is no connection.
fn parse(
    path: &Path,
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<FileConnection>, ConnectionError> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        ConnectionError::ConnectionFile {
            path: path.to_path_buf(),
            line,
            col,
            message: format!("not valid YAML: {e}"),
            snippet: snippet(text, line, col, 1, false),
        }
    })?;
    let index = YamlIndex::build(text);
    let Value::Mapping(map) = doc else {
        warnings.push(format!(
            "warning: {}: skipped: not a promptflow connection file (no `type:`)",
            path.display()
        ));
        return Ok(None);
    };
    let get = |k: &str| map.get(Value::String(k.to_string()));
    let Some(type_value) = get("type") else {
        warnings.push(format!(
            "warning: {}: skipped: not a promptflow connection file (no `type:`)",
            path.display()
        ));
        return Ok(None);
    };
    let pf_type_text = scalar(type_value).ok().flatten().unwrap_or_default();
    let known_type = TYPES
        .iter()
        .any(|(t, _)| *t == pf_type_text.trim().to_ascii_lowercase());
    let says_connection = get("$schema")
        .and_then(Value::as_str)
        .is_some_and(|s| s.contains("Connection"))
        || ["api_key", "configs", "secrets"]
            .iter()
            .any(|k| get(k).is_some());
    if !known_type && !says_connection {
        // Some other YAML with a `type:` (a Kubernetes manifest, ...): not ours to refuse.
        warnings.push(format!(
            "warning: {}: skipped: `type: {}` is not a promptflow connection type, and nothing else says this is a connection file",
            path.display(),
            pf_type_text.trim()
        ));
        return Ok(None);
    }
    let refuse =
        |key: &str, message: String| Err(located(path, text, index.value(key), false, message));
    let pf_type = match scalar(type_value) {
        Ok(Some(t)) => t.trim().to_ascii_lowercase(),
        _ => return refuse("type", "`type` must name a connection type".to_string()),
    };
    let Some(api_type) = TYPES.iter().find(|(t, _)| *t == pf_type).map(|(_, a)| *a) else {
        let names: Vec<&str> = TYPES.iter().map(|(t, _)| *t).collect();
        let hint = crate::model::closest(&pf_type, names.iter().copied())
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        return refuse(
            "type",
            format!(
                "`type: {pf_type}` is not a promptflow connection type: {hint}known types: {}",
                names.join(", ")
            ),
        );
    };
    let name = match get("name").map(scalar) {
        Some(Ok(Some(n))) if !n.trim().is_empty() => n.trim().to_string(),
        Some(Err(m)) => return refuse("name", format!("`name` {m}")),
        _ => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let mut conn = FileConnection {
        name,
        path: path.to_path_buf(),
        pf_type,
        api_type,
        fields: IndexMap::new(),
    };
    for (key, value) in &map {
        let Some(key) = key.as_str() else { continue };
        if !KNOWN_KEYS.contains(&key) {
            let loc = index
                .key(key)
                .unwrap_or(crate::diagnostic::Location::new(1, 1, 1));
            let hint = crate::model::closest(key, KNOWN_KEYS.iter().copied())
                .map(|c| format!(": did you mean `{c}`?"))
                .unwrap_or_default();
            warnings.push(format!(
                "warning: {}:{}:{}: unknown key `{key}` in connection '{}' is ignored{hint}",
                path.display(),
                loc.line,
                loc.col,
                conn.name
            ));
            continue;
        }
        if META_KEYS.contains(&key) {
            continue;
        }
        match key {
            "configs" | "secrets" => {
                let Value::Mapping(entries) = value else {
                    if value.is_null() {
                        continue;
                    }
                    return refuse(key, format!("`{key}` must be a mapping of names to values"));
                };
                for (k, v) in entries {
                    let Some(k) = scalar(k).ok().flatten() else {
                        continue;
                    };
                    let at = format!("{key}.{k}");
                    add_field(
                        &mut conn,
                        &k,
                        &at,
                        v,
                        key == "secrets",
                        path,
                        text,
                        &index,
                        warnings,
                    )?;
                }
            }
            // The type already says this (`azure` for azure_open_ai, ...).
            "api_type" => {}
            "base_url" => add_field(
                &mut conn, "api_base", key, value, false, path, text, &index, warnings,
            )?,
            _ => add_field(
                &mut conn,
                key,
                key,
                value,
                key == "api_key",
                path,
                text,
                &index,
                warnings,
            )?,
        }
    }
    Ok(Some(conn))
}

/// Adds one field (`at` is its path in the file); refuses a literal secret.
#[allow(clippy::too_many_arguments)]
fn add_field(
    conn: &mut FileConnection,
    field: &str,
    at: &str,
    value: &Value,
    secret: bool,
    path: &Path,
    text: &str,
    index: &YamlIndex,
    warnings: &mut Vec<String>,
) -> Result<(), ConnectionError> {
    let loc = index.value(at);
    let (line, col) = loc.map_or((1, 1), |l| (l.line, l.col));
    let value = match scalar(value) {
        Ok(Some(v)) if !v.trim().is_empty() => v,
        Ok(_) => return Ok(()),
        Err(m) => return Err(located(path, text, loc, false, format!("`{at}` {m}"))),
    };
    let var = conn.override_var(field);
    let leaf = at.rsplit('.').next().unwrap_or(at);
    let value = match env_reference(&value) {
        _ if is_placeholder(&value) => {
            warnings.push(format!(
                "warning: {}:{line}:{col}: `{at}` of connection '{}' is the placeholder {value:?}: treated as unset; write `{leaf}: ${{env:VAR}}` naming the variable that holds it, or set {var}",
                path.display(),
                conn.name
            ));
            FileValue::Unset
        }
        Some(var) => FileValue::Env(var.to_string()),
        None if value.contains("${") => {
            return Err(located(
                path,
                text,
                loc,
                secret,
                format!(
                    "`{at}` of connection '{}' must be a whole `${{env:VAR}}` reference or a plain value",
                    conn.name
                ),
            ));
        }
        None if secret => {
            return Err(located(
                path,
                text,
                loc,
                true,
                format!(
                    "`{at}` of connection '{}' holds a secret in the file: connection files never store secrets; write `{at}: ${{env:VAR}}` and set VAR in .env or the environment (or remove the line and set {var})",
                    conn.name
                ),
            ));
        }
        None => FileValue::Literal(value),
    };
    conn.fields.insert(
        field.to_string(),
        FileField {
            value,
            secret,
            line,
            col,
        },
    );
    Ok(())
}

/// An error at `loc` in `path`, with the line shown and a caret under the value; `redact`
/// masks the value in the line shown (a secret never reaches the terminal).
fn located(
    path: &Path,
    text: &str,
    loc: Option<crate::diagnostic::Location>,
    redact: bool,
    message: String,
) -> ConnectionError {
    let (line, col) = loc.map_or((1, 1), |l| (l.line, l.col));
    let len = text
        .lines()
        .nth(line.saturating_sub(1))
        .map(|l| {
            l.chars()
                .skip(col.saturating_sub(1))
                .take_while(|c| *c != '#')
                .collect::<String>()
                .trim_end()
                .chars()
                .count()
        })
        .unwrap_or(1);
    ConnectionError::ConnectionFile {
        path: path.to_path_buf(),
        line,
        col,
        message,
        snippet: snippet(text, line, col, len, redact),
    }
}

/// `line` of `text` with a gutter and a caret line under `len` characters from `col`.
fn snippet(text: &str, line: usize, col: usize, len: usize, redact: bool) -> String {
    let Some(body) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let len = len.max(1);
    let shown: String = body
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if redact && i + 1 >= col && i + 1 < col + len {
                '*'
            } else {
                c
            }
        })
        .collect();
    let gutter = line.to_string();
    let pad = " ".repeat(gutter.len());
    format!(
        "{pad} |\n{gutter} | {shown}\n{pad} | {}{}",
        " ".repeat(col.saturating_sub(1)),
        "^".repeat(len)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> (Result<Option<FileConnection>, ConnectionError>, Vec<String>) {
        let mut warnings = Vec::new();
        let r = parse(Path::new("connections/c.yml"), text, &mut warnings);
        (r, warnings)
    }

    #[test]
    fn env_references_and_plain_values_are_read() {
        let (r, w) = parse_text(
            "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/AzureOpenAIConnection.schema.json\nname: aoai\ntype: azure_open_ai\napi_key: ${env:AOAI_KEY}\napi_base: https://x.openai.azure.com\napi_type: azure\napi_version: 2024-06-01\n",
        );
        let c = r.unwrap().unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.name, "aoai");
        assert_eq!(c.api_type, ApiType::Azure);
        assert_eq!(c.fields["api_key"].value, FileValue::Env("AOAI_KEY".into()));
        assert_eq!(c.fields["api_key"].line, 4);
        assert_eq!(
            c.fields["api_base"].value,
            FileValue::Literal("https://x.openai.azure.com".into())
        );
        assert!(!c.fields.contains_key("api_type"));
    }

    #[test]
    fn a_literal_secret_is_refused_at_its_place_without_showing_it() {
        let (r, _) = parse_text("name: c\ntype: open_ai\napi_key: sk-live-123456789\n");
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with("connections/c.yml:3:10: "), "{e}");
        assert!(e.contains("${env:VAR}"), "{e}");
        assert!(!e.contains("sk-live"), "{e}");
        assert!(e.contains("3 | api_key: *****************"), "{e}");
        assert!(e.contains("  |          ^^^^^^^^^^^^^^^^^"), "{e}");
        let (r, _) = parse_text("name: c\ntype: custom\nsecrets:\n  token: abc\n");
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with("connections/c.yml:4:10: `secrets.token`"),
            "{e}"
        );
    }

    #[test]
    fn placeholders_are_unset_and_unknown_keys_warn() {
        let (r, w) =
            parse_text("name: c\ntype: open_ai\napi_key: \"<user-input>\"\norganisation: x\n");
        let c = r.unwrap().unwrap();
        assert_eq!(c.fields["api_key"].value, FileValue::Unset);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("placeholder") && w[0].contains("C_API_KEY"),
            "{w:?}"
        );
        assert!(w[1].contains("did you mean `organization`?"), "{w:?}");
    }

    #[test]
    fn custom_configs_and_secrets_become_fields() {
        let (r, _) = parse_text(
            "name: my_custom\ntype: custom\nconfigs:\n  endpoint: https://svc\n  retries: 3\nsecrets:\n  api-key: ${env:SVC_KEY}\n",
        );
        let c = r.unwrap().unwrap();
        assert_eq!(c.api_type, ApiType::Custom);
        assert_eq!(c.fields["retries"].value, FileValue::Literal("3".into()));
        assert!(c.fields["api-key"].secret);
        assert_eq!(c.override_var("api-key"), "MY_CUSTOM_API_KEY");
    }

    #[test]
    fn unknown_types_and_partial_references_are_refused() {
        let (r, _) = parse_text("name: c\ntype: open_ia\napi_key: ${env:K}\n");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("did you mean `open_ai`?"), "{e}");
        // Another YAML with a `type:` is not a connection file: skipped, not refused.
        let (r, w) = parse_text("kind: Secret\ntype: Opaque\n");
        assert!(r.unwrap().is_none());
        assert!(w[0].contains("skipped: `type: Opaque`"), "{w:?}");
        let (r, _) = parse_text("name: c\ntype: open_ai\napi_key: Bearer ${env:K}\n");
        assert!(r.unwrap_err().to_string().contains("whole `${env:VAR}`"));
        let (r, w) = parse_text("just: data\n");
        assert!(r.unwrap().is_none());
        assert!(w[0].contains("skipped"));
    }
}
