//! Connections: named LLM endpoints resolved from `.env` and the process environment.
//!
//! A connection named `X` reads `X_API_TYPE`, `X_API_KEY`, `X_API_BASE`, `X_API_VERSION`,
//! `X_MODEL`, `X_DEPLOYMENT` and `X_HEADERS`, where the prefix is the name upper-cased with
//! every non-alphanumeric character replaced by `_`. Any other `X_<FIELD>` variable is kept as an
//! extra field for Python tools' custom connections. Secrets are wrapped in [`Secret`] so they
//! never print, and a [`Redactor`] scrubs them from any text shown to users.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

pub mod entra;
pub mod files;

pub use files::{ConnectionFiles, FileConnection, FileValue};

/// Default base URL of the OpenAI API.
pub const OPENAI_DEFAULT_BASE: &str = "https://api.openai.com/v1";
/// Default base URL of a local Ollama server's OpenAI-compatible endpoint.
pub const OLLAMA_DEFAULT_BASE: &str = "http://localhost:11434/v1";
/// Default base URL of the Anthropic API.
pub const ANTHROPIC_DEFAULT_BASE: &str = "https://api.anthropic.com";
/// Default Azure OpenAI `api-version` (promptflow's `ConnectionDefaultApiVersion.AZURE_OPEN_AI`).
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-02-01";

/// Errors resolving connections or loading `.env`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// `--env-file` names a file that does not exist.
    #[error("env file '{}' does not exist: check the --env-file path", path.display())]
    EnvFileMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The env file exists but could not be read.
    #[error("cannot read env file '{}': {source}", path.display())]
    EnvFileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the env file is not `NAME=value`.
    #[error(
        "{}:{line}: malformed line in env file (column {column}): write it as NAME=value, quoting values that contain spaces or '#'",
        path.display()
    )]
    EnvFileParse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based column where parsing failed.
        column: usize,
    },
    /// No variable configures this connection.
    #[error(
        "connection '{name}' is not configured: set {prefix}_API_KEY (and {prefix}_API_BASE for a non-OpenAI server) in {env_file}, or OPENAI_API_KEY (or AZURE_OPENAI_API_KEY with AZURE_OPENAI_ENDPOINT); use --offline to run without a model"
    )]
    NotConfigured {
        /// Connection name.
        name: String,
        /// Its variable prefix.
        prefix: String,
        /// The env file the variables were read from, as [`EnvVars::file_text`] says it.
        env_file: String,
    },
    /// The connection needs an API key and has none.
    #[error(
        "connection '{name}' ({api_type}) has no API key: set {var} in {env_file} or the environment"
    )]
    MissingKey {
        /// Connection name.
        name: String,
        /// Its api type.
        api_type: ApiType,
        /// The variable to set.
        var: String,
        /// The env file the variables were read from.
        env_file: String,
    },
    /// A keyless Azure connection (`auth_mode: meid_token`) without the identity variables
    /// its Entra ID token comes from.
    #[error(
        "connection '{name}' has auth_mode meid_token (Microsoft Entra ID, no key) but {} not set: set {} in {env_file} or the environment (a service principal's tenant, client id and secret; AZURE_AUTHORITY_HOST optionally, default https://login.microsoftonline.com), or AZURE_FEDERATED_TOKEN_FILE instead of the secret (workload identity), or IDENTITY_ENDPOINT and IDENTITY_HEADER (managed identity); or give the connection an API key and auth_mode key",
        if .missing.len() == 1 { "this variable is" } else { "these variables are" },
        .missing.join(", ")
    )]
    MissingIdentity {
        /// Connection name.
        name: String,
        /// The unset variables.
        missing: Vec<String>,
        /// The env file the variables were read from.
        env_file: String,
    },
    /// The connection needs a base URL and has none.
    #[error(
        "connection '{name}' ({api_type}) has no endpoint: set {var} (e.g. https://<resource>.openai.azure.com) in {env_file} or the environment"
    )]
    MissingBase {
        /// Connection name.
        name: String,
        /// Its api type.
        api_type: ApiType,
        /// The variable to set.
        var: String,
        /// The env file the variables were read from.
        env_file: String,
    },
    /// `X_API_TYPE` holds an unknown value.
    #[error(
        "connection '{name}': {var}='{value}' is not a known api type; valid values: openai, azure, ollama, anthropic, echo, custom"
    )]
    UnknownApiType {
        /// Connection name.
        name: String,
        /// The variable read.
        var: String,
        /// Its value.
        value: String,
    },
    /// `X_HEADERS` is not a JSON object of strings.
    #[error(
        "connection '{name}': {var} must be a JSON object of header names to string values, e.g. {{\"X-Team\": \"search\"}} ({reason})"
    )]
    BadHeaders {
        /// Connection name.
        name: String,
        /// The variable read.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// `X_POOL` is malformed: empty, names the pool itself, repeats a member, or is mixed with
    /// other `X_*` fields.
    #[error("connection '{name}': {var} {reason}")]
    BadPool {
        /// Pool name.
        name: String,
        /// The variable read (`X_POOL`).
        var: String,
        /// What is wrong, and the fix.
        reason: String,
    },
    /// The base URL holds credentials (`https://user:pw@host`) that cannot be sent as asked.
    #[error("connection '{name}': {var} holds credentials ({reason})")]
    BadBaseCredentials {
        /// Connection name.
        name: String,
        /// The variable read.
        var: String,
        /// What is wrong, and the fix.
        reason: String,
    },
    /// Two standard variables for the same thing disagree (`OPENAI_BASE_URL` and
    /// `OPENAI_API_BASE`).
    #[error(
        "connection '{name}': {first} and {second} are both set, to different values: remove one, or configure the connection with its own variables"
    )]
    ConflictingStandard {
        /// Connection name.
        name: String,
        /// The variable that would win.
        first: String,
        /// The other one.
        second: String,
    },
    /// The connection's key would go to the vendor's default host while a standard base-URL
    /// variable names another host.
    #[error(
        "connection '{name}': {key_var} would be sent to {default}, but {base_var} is set to another host: set {prefix}_API_BASE to the endpoint this key belongs to (or to {default} to mean it)",
        default = default_base(*.api_type),
        prefix = env_prefix(.name)
    )]
    UnusedBase {
        /// Connection name.
        name: String,
        /// Its api type (whose default host the key would go to).
        api_type: ApiType,
        /// The key's variable.
        key_var: String,
        /// The standard base-URL variable that is set.
        base_var: String,
    },
    /// `--connections DIR` names a folder that does not exist.
    #[error("connections folder '{}' does not exist: check the --connections path", path.display())]
    ConnectionsDirMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The connections folder or one of its files could not be read.
    #[error("cannot read '{}': {source}", path.display())]
    ConnectionsDirRead {
        /// The folder or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A connection file is refused: a literal secret, an unknown type, a second definition of
    /// a connection, malformed YAML.
    #[error("{}:{line}:{col}: {message}\n{snippet}", path.display())]
    ConnectionFile {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong, and the fix.
        message: String,
        /// The line, secrets masked, with a caret under the place.
        snippet: String,
    },
    /// A connection file's `${env:VAR}` names a variable that is not set.
    #[error(transparent)]
    FileEnvUnset(Box<FileEnvUnset>),
    /// A connection file's key would be sent to a host other than the file's.
    #[error(
        "connection '{name}': {base_var} sends the key of {} (api_key) to another host than the file's api_base: set {prefix}_API_KEY too, or remove {base_var}",
        path.display(),
        prefix = env_prefix(.name)
    )]
    FileKeyOtherHost {
        /// Connection name.
        name: String,
        /// The file.
        path: PathBuf,
        /// The variable that overrides the file's base URL.
        base_var: String,
    },
    /// A member of a pool could not be resolved.
    #[error("connection '{pool}' (a pool): member {source}")]
    PoolMember {
        /// Pool name.
        pool: String,
        /// Why the member did not resolve.
        source: Box<ConnectionError>,
    },
}

/// A connection file's `${env:VAR}` names a variable that is not set.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}:{line}:{col}: connection '{name}': `{field}` is ${{env:{var}}}, and {var} is not set: set it in {env_file} or the environment (or set {override_var})",
    path.display()
)]
pub struct FileEnvUnset {
    /// Connection name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The field.
    pub field: String,
    /// The variable referenced.
    pub var: String,
    /// The `X_*` variable that would set the field instead.
    pub override_var: String,
    /// The env file the variables were read from.
    pub env_file: String,
}

impl crate::error::Classify for ConnectionError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

/// A snapshot of configuration variables: `.env` overlaid by the real process environment.
#[derive(Debug, Clone, Default)]
pub struct EnvVars {
    vars: HashMap<String, String>,
    file: EnvFile,
    files: ConnectionFiles,
}

/// The env file a snapshot read, for messages that tell the user where to set a variable.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum EnvFile {
    /// No file was looked for (a snapshot made from pairs).
    #[default]
    None,
    /// This file was read.
    Read(PathBuf),
    /// No `.env` was found; this is where one would be read from (the project root's).
    Absent(PathBuf),
}

impl EnvVars {
    /// A copy with one more variable set (it wins over an existing value).
    pub fn with(&self, name: &str, value: &str) -> EnvVars {
        let mut vars = self.vars.clone();
        vars.insert(name.to_string(), value.to_string());
        EnvVars {
            vars,
            file: self.file.clone(),
            files: self.files.clone(),
        }
    }

    /// The env file this snapshot read, or where one would be read from.
    pub fn file(&self) -> &EnvFile {
        &self.file
    }

    /// The env file as messages name it: its path, `PATH (there is none yet)`, or `.env`.
    pub fn file_text(&self) -> String {
        match &self.file {
            EnvFile::None => ".env".to_string(),
            EnvFile::Read(p) => p.display().to_string(),
            EnvFile::Absent(p) => format!("{} (there is none yet)", p.display()),
        }
    }

    /// Loads `env_file` (which must exist; relative to `cwd`) or else the nearest `.env` from
    /// `cwd` up to its project root ([`crate::project::Workdir::dotenv`]), if there is one,
    /// without touching the process environment; then overlays the process environment (real
    /// variables win). The project root's `connections/` files are read too
    /// ([`EnvVars::load_with`]).
    pub fn load(env_file: Option<&Path>, cwd: &Path) -> Result<EnvVars, ConnectionError> {
        EnvVars::load_with(env_file, None, cwd)
    }

    /// [`EnvVars::load`], plus the promptflow connection files of `connections` (relative to
    /// `cwd`; it must exist) or else of the project root's `connections/` folder, if there is
    /// one ([`ConnectionFiles`]).
    pub fn load_with(
        env_file: Option<&Path>,
        connections: Option<&Path>,
        cwd: &Path,
    ) -> Result<EnvVars, ConnectionError> {
        let mut env = EnvVars::load_vars(env_file, cwd)?;
        env.files = match connections {
            Some(dir) => ConnectionFiles::load(&cwd.join(dir), true)?,
            None => ConnectionFiles::load(
                &crate::project::Workdir::at(cwd.to_path_buf())
                    .root
                    .join(files::DEFAULT_DIR),
                false,
            )?,
        };
        Ok(env)
    }

    /// These connection files in place of the ones read (for tests and embedding).
    pub fn with_files(mut self, files: ConnectionFiles) -> EnvVars {
        self.files = files;
        self
    }

    /// The promptflow connection files read.
    pub fn files(&self) -> &ConnectionFiles {
        &self.files
    }

    fn load_vars(env_file: Option<&Path>, cwd: &Path) -> Result<EnvVars, ConnectionError> {
        let mut vars = HashMap::new();
        let mut file = EnvFile::None;
        let path = match env_file {
            Some(p) => {
                let p = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    cwd.join(p)
                };
                if !p.is_file() {
                    return Err(ConnectionError::EnvFileMissing { path: p });
                }
                Some(p)
            }
            None => match crate::project::Workdir::at(cwd.to_path_buf()).dotenv() {
                Ok(found) => Some(found),
                Err(would_be) => {
                    file = EnvFile::Absent(would_be);
                    None
                }
            },
        };
        if let Some(path) = path {
            read_env_file(&path, &mut vars)?;
            file = EnvFile::Read(path);
        }
        for (k, v) in std::env::vars_os() {
            if let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) {
                vars.insert(k, v);
            }
        }
        Ok(EnvVars {
            vars,
            file,
            files: ConnectionFiles::default(),
        })
    }

    /// A snapshot holding exactly these pairs (for tests and embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> EnvVars {
        EnvVars {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            file: EnvFile::None,
            files: ConnectionFiles::default(),
        }
    }

    /// The value of `name`, if set (an empty value counts as unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Variables that look like a misspelling of one a connection in `names` reads, or of a
    /// standard one (`OPEN_AI_CONECTION_API_KEY`, `OPENAI_KEY`): each a warning naming the
    /// variable that is read. Such a variable is never used, so without the warning the
    /// connection would quietly resolve without it (or not at all).
    pub fn near_misses(&self, names: &[String]) -> Vec<String> {
        const FIELDS: [&str; 8] = [
            "API_KEY",
            "API_BASE",
            "API_TYPE",
            "API_VERSION",
            "MODEL",
            "DEPLOYMENT",
            "HEADERS",
            "POOL",
        ];
        const STANDARD: [&str; 15] = [
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENAI_API_BASE",
            "OPENAI_ORG_ID",
            "OPENAI_API_VERSION",
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
            "AZURE_OPENAI_API_VERSION",
            "AZURE_OPENAI_DEPLOYMENT",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "OLLAMA_HOST",
            "FLOW_PRICES",
            "FLOW_CACHE_DIR",
            "FLOW_SERVE_TOKEN",
        ];
        let mut wanted: Vec<String> = names
            .iter()
            .flat_map(|n| {
                let prefix = env_prefix(n);
                FIELDS.iter().map(move |f| format!("{prefix}_{f}"))
            })
            .collect();
        wanted.extend(STANDARD.iter().map(|s| s.to_string()));
        wanted.extend(self.files.referenced_vars().map(str::to_string));
        let mut out: Vec<String> = self
            .vars
            .keys()
            .filter(|k| !wanted.iter().any(|w| w == *k))
            .filter_map(|k| {
                let close = wanted.iter().find(|w| {
                    let d = strsim::damerau_levenshtein(k, w);
                    // A letter or two off, or the same words joined differently.
                    (d > 0 && d <= 2 && w.len() >= 8) || k.replace('_', "") == w.replace('_', "")
                })?;
                Some(format!(
                    "warning: {k} is set but not read: did you mean {close}?"
                ))
            })
            .collect();
        out.sort();
        out.extend(self.files.warnings.iter().cloned());
        // A variable overriding a connection file's field: the variable wins (as promptflow's
        // `{NAME}_{FIELD}` override does); say so, so an old variable is not a silent surprise.
        for name in names {
            let Some(file) = self.files.get(name) else {
                continue;
            };
            for (field, f) in &file.fields {
                let var = file.override_var(field);
                let supplies =
                    matches!(&f.value, FileValue::Unset) || f.value == FileValue::Env(var.clone());
                if self.get(&var).is_some() && !supplies {
                    out.push(format!(
                        "note: {var} is set and wins over `{field}` in {}:{}",
                        file.path.display(),
                        f.line
                    ));
                }
            }
        }
        out
    }

    /// Every variable whose name starts with `prefix`, as (full name, value).
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.vars
            .iter()
            .filter(move |(k, v)| k.starts_with(prefix) && !v.trim().is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn read_env_file(path: &Path, vars: &mut HashMap<String, String>) -> Result<(), ConnectionError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConnectionError::EnvFileRead {
        path: path.to_path_buf(),
        source,
    })?;
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((k, v)) => {
                vars.insert(k, v);
            }
            Err(dotenvy::Error::LineParse(bad, index)) => {
                // dotenvy hands back the bad line, or only its bad value, with an index into
                // that text: find the line it came from.
                let first = bad.lines().next().unwrap_or("").trim();
                let at = |i: usize, l: &str| l.find(first).map(|p| (i + 1, p + index + 1));
                let (line, column) = text
                    .lines()
                    .enumerate()
                    .find(|(_, l)| l.trim() == first)
                    .and_then(|(i, l)| at(i, l))
                    .or_else(|| {
                        text.lines()
                            .enumerate()
                            .filter(|_| !first.is_empty())
                            .find_map(|(i, l)| at(i, l))
                    })
                    .unwrap_or((1, index + 1));
                return Err(ConnectionError::EnvFileParse {
                    path: path.to_path_buf(),
                    line,
                    column,
                });
            }
            Err(other) => {
                return Err(ConnectionError::EnvFileRead {
                    path: path.to_path_buf(),
                    source: std::io::Error::other(other.to_string()),
                });
            }
        }
    }
    Ok(())
}

/// The kind of endpoint a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiType {
    /// OpenAI or anything OpenAI-compatible (vLLM, llama.cpp, LM Studio, LiteLLM).
    OpenAi,
    /// Azure OpenAI: deployment in the URL, `api-key` header, `api-version` query.
    Azure,
    /// Ollama's OpenAI-compatible endpoint (no key).
    Ollama,
    /// Anthropic Messages API.
    Anthropic,
    /// Built-in offline provider: no network, deterministic reply.
    Echo,
    /// No model endpoint: fields for Python tools only (promptflow's `CustomConnection`).
    Custom,
}

impl ApiType {
    /// The lower-case name used in `X_API_TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiType::OpenAi => "openai",
            ApiType::Azure => "azure",
            ApiType::Ollama => "ollama",
            ApiType::Anthropic => "anthropic",
            ApiType::Echo => "echo",
            ApiType::Custom => "custom",
        }
    }
}

impl fmt::Display for ApiType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "openai" | "open_ai" => Ok(ApiType::OpenAi),
            "azure" | "azure_openai" | "azure_open_ai" | "azureopenai" => Ok(ApiType::Azure),
            "ollama" => Ok(ApiType::Ollama),
            "anthropic" | "claude" => Ok(ApiType::Anthropic),
            "echo" | "offline" => Ok(ApiType::Echo),
            "custom" => Ok(ApiType::Custom),
            _ => Err(()),
        }
    }
}

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value itself: only for sending it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// A safe display form, see [`mask`].
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Masks a secret for display: long values show their first 3 and last 4 characters and their
/// length (`sk-…f3a9 (51 chars)`), values under 20 characters show only `*** (N chars)`.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let n = chars.len();
    if n < 20 {
        return format!("*** ({n} chars)");
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[n - 4..].iter().collect();
    format!("{head}…{tail} ({n} chars)")
}

/// Replaces every known secret in text with `***`. Secrets shorter than 6 characters are ignored
/// (they would mangle ordinary text and are not worth hiding).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Adds a secret value to hide.
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() >= 6 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            // Longest first so a secret containing another is replaced whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Adds every secret of a connection (key, header values, secret-looking extras).
    pub fn add_connection(&mut self, conn: &Connection) {
        for s in conn.secrets() {
            self.add(s);
        }
    }

    /// A redactor for these connections.
    pub fn from_connections<'a>(conns: impl IntoIterator<Item = &'a Connection>) -> Self {
        let mut r = Redactor::new();
        for c in conns {
            r.add_connection(c);
        }
        r
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return std::borrow::Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        std::borrow::Cow::Owned(out)
    }
}

/// A resolved connection: where to send requests and how to authenticate. `Debug` hides
/// secrets (the key, header values and secret-looking extras).
#[derive(Clone)]
pub struct Connection {
    /// The name flows use (`connection:` in the node).
    pub name: String,
    /// Which protocol to speak.
    pub api_type: ApiType,
    /// API key, if any.
    pub api_key: Option<Secret>,
    /// Base URL (defaults filled in for openai, ollama and anthropic).
    pub api_base: Option<String>,
    /// Azure `api-version` (defaulted for azure).
    pub api_version: Option<String>,
    /// Default model for nodes that name none.
    pub model: Option<String>,
    /// Default Azure deployment for nodes that name none.
    pub deployment: Option<String>,
    /// Extra HTTP headers sent with every request (`X_HEADERS`); values are treated as secrets.
    pub headers: IndexMap<String, Secret>,
    /// Other `X_<FIELD>` variables, keyed by lower-cased field name.
    pub extra: IndexMap<String, String>,
    /// The variables this connection was read from (names only), for `flow connections`.
    pub source: Vec<String>,
    /// The promptflow connection file it was read from (with `source`'s variables), if any.
    pub file: Option<PathBuf>,
    /// Extra fields a connection file declares, and whether each is a secret (`secrets:`) or
    /// not (`configs:`, `organization`, ...), whatever its name says.
    pub declared_extra: IndexMap<String, bool>,
    /// For a pool (`X_POOL=member_a,member_b`): its members, each a whole connection with its
    /// own limiter. The pool's other fields are its first member's (what Python tools see).
    /// Empty for an ordinary connection.
    pub pool: Vec<Connection>,
    /// For a keyless Azure connection (`auth_mode: meid_token`): the service principal whose
    /// Entra ID token is sent as `Authorization: Bearer` instead of an `api-key`.
    pub entra: Option<entra::Identity>,
    /// Made from fields a Python tool gave in code (a connection object it built with a key
    /// and endpoint): messages name "the api_key given in code", not the private variables
    /// the fields were resolved through.
    pub given_in_code: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: IndexMap<&str, &str> = self
            .extra
            .iter()
            .map(|(k, v)| {
                let v = if self.is_secret_extra(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("api_type", &self.api_type)
            .field("api_key", &self.api_key)
            .field("api_base", &self.api_base)
            .field("api_version", &self.api_version)
            .field("model", &self.model)
            .field("deployment", &self.deployment)
            .field("headers", &self.headers)
            .field("extra", &extra)
            .field("source", &self.source)
            .field("file", &self.file)
            .field("pool", &self.pool)
            .finish()
    }
}

/// The variable prefix for a connection name: upper-cased, non-alphanumerics as `_`.
pub fn env_prefix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn is_secret_field(field: &str) -> bool {
    let f = field.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential"]
        .iter()
        .any(|w| f.contains(w))
}

/// Resolves connection `name` from `env`. With `offline`, every name resolves to an `echo`
/// connection without reading the environment.
///
/// Prefixed variables (`X_*`) take precedence. A connection with none falls back to the standard
/// variables: when the connection name contains `azure`, `AZURE_OPENAI_API_KEY` +
/// `AZURE_OPENAI_ENDPOINT` (+ `OPENAI_API_VERSION`) are tried first and `OPENAI_API_KEY` second;
/// for any other name `OPENAI_API_KEY` (+ `OPENAI_BASE_URL`) is tried first and the Azure
/// variables second. So with both sets present, `open_ai_connection` uses OpenAI and
/// `azure_open_ai_connection` uses Azure.
pub fn resolve(name: &str, env: &EnvVars, offline: bool) -> Result<Connection, ConnectionError> {
    let mut conn = Connection {
        name: name.to_string(),
        api_type: ApiType::Echo,
        api_key: None,
        api_base: None,
        api_version: None,
        model: None,
        deployment: None,
        headers: IndexMap::new(),
        extra: IndexMap::new(),
        source: Vec::new(),
        file: None,
        declared_extra: IndexMap::new(),
        entra: None,
        pool: Vec::new(),
        given_in_code: false,
    };
    if offline {
        conn.source.push("--offline".to_string());
        return Ok(conn);
    }
    let prefix = env_prefix(name);
    let scan = format!("{prefix}_");
    let file = env.files.get(name);
    let mut found: Vec<(&str, &str)> = env.with_prefix(&scan).collect();
    if let Some(file) = file {
        // A variable the file reads (`api-key: ${env:SVC_KEY}` of connection `svc`) is the
        // file's value, not a field of its own.
        found.retain(|(var, _)| {
            !file.fields.iter().any(|(field, f)| {
                f.value == FileValue::Env(var.to_string()) && file.override_var(field) != *var
            })
        });
    }
    found.sort_unstable();
    if found.is_empty() && file.is_none() {
        return resolve_standard(conn, &prefix, env);
    }
    let pool_var = format!("{prefix}_POOL");
    if let Some(members) = env.get(&pool_var) {
        if let Some(file) = file {
            return Err(ConnectionError::BadPool {
                name: name.to_string(),
                var: pool_var,
                reason: format!(
                    "makes '{name}' a pool, but {} defines it too: keep one of the two",
                    file.path.display()
                ),
            });
        }
        let others: Vec<&str> = found
            .iter()
            .map(|(var, _)| *var)
            .filter(|v| *v != pool_var)
            .collect();
        return resolve_pool(name, &pool_var, members, others, env);
    }
    for (var, value) in found {
        let field = &var[scan.len()..];
        conn.source.push(var.to_string());
        let value = value.trim();
        // A variable overriding a file's own field (`api-key` of a custom connection, by
        // `X_API_KEY`) keeps that field's name.
        let file_field = file.and_then(|f| {
            f.fields.keys().find(|k| {
                f.override_var(k) == var
                    && !["api_key", "api_base", "api_version", "model", "deployment"]
                        .contains(&k.as_str())
            })
        });
        if let Some(k) = file_field {
            conn.extra.insert(k.clone(), value.to_string());
            continue;
        }
        match field {
            "API_TYPE" => {
                conn.api_type = value
                    .parse()
                    .map_err(|()| ConnectionError::UnknownApiType {
                        name: name.to_string(),
                        var: var.to_string(),
                        value: value.to_string(),
                    })?;
            }
            "API_KEY" => conn.api_key = Some(Secret::new(value)),
            "API_BASE" => conn.api_base = Some(value.to_string()),
            "API_VERSION" => conn.api_version = Some(value.to_string()),
            "MODEL" => conn.model = Some(value.to_string()),
            "DEPLOYMENT" => conn.deployment = Some(value.to_string()),
            "HEADERS" => conn.headers = parse_headers(name, var, value)?,
            _ if !field.is_empty() => {
                conn.extra
                    .insert(field.to_ascii_lowercase(), value.to_string());
            }
            _ => {}
        }
    }
    let mut key_from_file = false;
    if let Some(file) = file {
        key_from_file = apply_file(&mut conn, file, env)?;
    }
    let type_var = format!("{prefix}_API_TYPE");
    if env.get(&type_var).is_none() {
        conn.api_type = if let Some(file) = file {
            file.api_type
        } else if conn.api_version.is_some() {
            ApiType::Azure
        } else if conn.api_key.is_none()
            && conn.api_base.is_none()
            && conn.model.is_none()
            && conn.deployment.is_none()
            && conn.headers.is_empty()
        {
            // Only custom fields (`X_KEY1`): promptflow's CustomConnection, for Python tools.
            ApiType::Custom
        } else {
            ApiType::OpenAi
        };
    }
    if let Some(file) = file {
        let base_var = format!("{prefix}_API_BASE");
        // The file's key goes only to the file's host: a variable moving the host elsewhere
        // must bring its own key.
        if key_from_file && file.fields.contains_key("api_base") && env.get(&base_var).is_some() {
            return Err(ConnectionError::FileKeyOtherHost {
                name: name.to_string(),
                path: file.path.clone(),
                base_var,
            });
        }
    }
    refuse_unused_base(&conn, env)?;
    if conn.api_type == ApiType::Ollama
        && conn.api_base.is_none()
        && let Some(host) = env.get("OLLAMA_HOST")
    {
        // Ollama's own convention for where its server listens.
        conn.api_base = Some(ollama_base(host));
        conn.source.push("OLLAMA_HOST".to_string());
    }
    finish(conn, &prefix, env)
}

/// Sets the fields of a connection file that no `X_*` variable sets (the variables win, as
/// promptflow's `{NAME}_{FIELD}` overrides do), reading `${env:VAR}` references. Returns whether
/// the API key came from the file.
fn apply_file(
    conn: &mut Connection,
    file: &FileConnection,
    env: &EnvVars,
) -> Result<bool, ConnectionError> {
    conn.file = Some(file.path.clone());
    let mut key_from_file = false;
    for (field, f) in &file.fields {
        let override_var = file.override_var(field);
        if !["api_key", "api_base", "api_version", "model", "deployment"].contains(&field.as_str())
        {
            // Declared secret or not: it stays so whichever of file or variable sets it.
            conn.declared_extra.insert(field.clone(), f.secret);
        }
        if env.get(&override_var).is_some() {
            continue;
        }
        let value = match &f.value {
            FileValue::Unset => continue,
            FileValue::Literal(v) => v.trim().to_string(),
            FileValue::Env(var) => match env.get(var) {
                Some(v) => {
                    conn.source.push(var.clone());
                    v.trim().to_string()
                }
                None => {
                    return Err(ConnectionError::FileEnvUnset(Box::new(FileEnvUnset {
                        name: conn.name.clone(),
                        path: file.path.clone(),
                        line: f.line,
                        col: f.col,
                        field: field.clone(),
                        var: var.clone(),
                        override_var,
                        env_file: env.file_text(),
                    })));
                }
            },
        };
        match field.as_str() {
            "api_key" => {
                conn.api_key = Some(Secret::new(value));
                key_from_file = true;
            }
            "api_base" => conn.api_base = Some(value),
            "api_version" => conn.api_version = Some(value),
            "model" => conn.model = Some(value),
            "deployment" => conn.deployment = Some(value),
            other => {
                conn.extra.insert(other.to_string(), value);
            }
        }
    }
    Ok(key_from_file)
}

/// Resolves a pool: `X_POOL` lists member connections (commas or spaces between names), each
/// configured with its own variables. Members may not be pools themselves.
fn resolve_pool(
    name: &str,
    var: &str,
    members: &str,
    mut others: Vec<&str>,
    env: &EnvVars,
) -> Result<Connection, ConnectionError> {
    let bad = |reason: String| ConnectionError::BadPool {
        name: name.to_string(),
        var: var.to_string(),
        reason,
    };
    let names: Vec<&str> = members
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|m| !m.is_empty())
        .collect();
    // `AOAI_EASTUS_API_KEY` belongs to the member `aoai_eastus`, not to the pool `aoai`.
    others.retain(|v| {
        !names
            .iter()
            .any(|m| v.starts_with(&format!("{}_", env_prefix(m))))
    });
    if !others.is_empty() {
        return Err(bad(format!(
            "makes '{name}' a pool, so its other variables ({}) would be ignored: configure each member with its own variables and remove these",
            others.join(", ")
        )));
    }
    if names.is_empty() {
        return Err(bad(
            "is empty: list the member connections, e.g. aoai_eastus,aoai_westeurope".to_string(),
        ));
    }
    let mut resolved: Vec<Connection> = Vec::with_capacity(names.len());
    for (i, member) in names.iter().enumerate() {
        if env_prefix(member) == env_prefix(name) {
            return Err(bad(format!(
                "lists the pool itself ('{member}'): list other connections"
            )));
        }
        if names[..i]
            .iter()
            .any(|m| env_prefix(m) == env_prefix(member))
        {
            return Err(bad(format!(
                "lists '{member}' twice: list each member once"
            )));
        }
        let conn = resolve(member, env, false).map_err(|e| ConnectionError::PoolMember {
            pool: name.to_string(),
            source: Box::new(e),
        })?;
        if !conn.pool.is_empty() {
            return Err(bad(format!(
                "lists '{member}', which is itself a pool: list its members instead"
            )));
        }
        resolved.push(conn);
    }
    let mut pool = resolved[0].clone();
    pool.name = name.to_string();
    pool.source = std::iter::once(var.to_string())
        .chain(resolved.iter().flat_map(|m| m.source.iter().cloned()))
        .collect();
    pool.pool = resolved;
    Ok(pool)
}

/// The host a connection of `api_type` goes to when it names none.
fn default_base(api_type: ApiType) -> &'static str {
    match api_type {
        ApiType::Anthropic => ANTHROPIC_DEFAULT_BASE,
        ApiType::Ollama => OLLAMA_DEFAULT_BASE,
        ApiType::OpenAi | ApiType::Azure | ApiType::Echo | ApiType::Custom => OPENAI_DEFAULT_BASE,
    }
}

/// The standard variables of each vendor's SDK, in order of precedence within a family.
const OPENAI_BASE_VARS: [&str; 2] = ["OPENAI_BASE_URL", "OPENAI_API_BASE"];
const AZURE_VERSION_VARS: [&str; 2] = ["AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION"];
const ANTHROPIC_BASE_VAR: &str = "ANTHROPIC_BASE_URL";

/// The first of `vars` that is set, with its value; two of them set to different values is an
/// error (which one was meant is unclear).
fn one_of<'e>(
    name: &str,
    env: &'e EnvVars,
    vars: &[&'static str],
) -> Result<Option<(&'static str, &'e str)>, ConnectionError> {
    let set: Vec<(&'static str, &str)> = vars
        .iter()
        .filter_map(|v| env.get(v).map(|value| (*v, value.trim())))
        .collect();
    if let [(a, va), rest @ ..] = set.as_slice() {
        if let Some((b, _)) = rest.iter().find(|(_, vb)| vb != va) {
            return Err(ConnectionError::ConflictingStandard {
                name: name.to_string(),
                first: (*a).to_string(),
                second: (*b).to_string(),
            });
        }
        return Ok(Some((a, va)));
    }
    Ok(None)
}

/// The base URL for `host` as Ollama's `OLLAMA_HOST` writes it (`host:port`, `http://host:port`,
/// or a URL with a path).
fn ollama_base(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    };
    if with_scheme.ends_with("/v1") {
        with_scheme
    } else {
        format!("{with_scheme}/v1")
    }
}

/// For a connection configured with its own `X_*` variables but no `X_API_BASE`: a vendor's
/// standard base-URL variable in the environment means the key could be meant for that host, so
/// sending it to the vendor's default host is refused rather than guessed.
fn refuse_unused_base(conn: &Connection, env: &EnvVars) -> Result<(), ConnectionError> {
    if conn.api_base.is_some() || conn.api_key.is_none() {
        return Ok(());
    }
    let vars: &[&str] = match conn.api_type {
        ApiType::OpenAi => &OPENAI_BASE_VARS,
        ApiType::Anthropic => &[ANTHROPIC_BASE_VAR],
        _ => return Ok(()),
    };
    if let Some(var) = vars.iter().find(|v| env.get(v).is_some()) {
        return Err(ConnectionError::UnusedBase {
            name: conn.name.clone(),
            api_type: conn.api_type,
            key_var: conn.key_var(),
            base_var: (*var).to_string(),
        });
    }
    Ok(())
}

/// A connection with no `X_*` variable, from the vendors' standard variables: OpenAI
/// (`OPENAI_API_KEY`, `OPENAI_BASE_URL` or `OPENAI_API_BASE`, `OPENAI_ORG_ID`), Azure OpenAI
/// (`AZURE_OPENAI_API_KEY`, `AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_VERSION` or
/// `OPENAI_API_VERSION`, `AZURE_OPENAI_DEPLOYMENT`), and, for a connection whose name says so,
/// Anthropic (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`) and Ollama (`OLLAMA_HOST`). Each key
/// goes only with its own family's base URL.
fn resolve_standard(
    mut conn: Connection,
    prefix: &str,
    env: &EnvVars,
) -> Result<Connection, ConnectionError> {
    let name = conn.name.clone();
    let lower = name.to_ascii_lowercase();
    let has = |vars: &[&str]| vars.iter().any(|v| env.get(v).is_some());
    let openai = has(&["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"]);
    let azure = has(&["AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"]);
    let anthropic = has(&["ANTHROPIC_API_KEY", ANTHROPIC_BASE_VAR]);
    let ollama = has(&["OLLAMA_HOST"]);
    let family = if azure && lower.contains("azure") {
        ApiType::Azure
    } else if anthropic && (lower.contains("anthropic") || lower.contains("claude")) {
        ApiType::Anthropic
    } else if ollama && lower.contains("ollama") {
        ApiType::Ollama
    } else if openai {
        ApiType::OpenAi
    } else if azure {
        ApiType::Azure
    } else {
        return Err(ConnectionError::NotConfigured {
            name,
            prefix: prefix.to_string(),
            env_file: env.file_text(),
        });
    };
    let take = |conn: &mut Connection, var: &str| -> Option<String> {
        let v = env.get(var)?.trim().to_string();
        conn.source.push(var.to_string());
        Some(v)
    };
    conn.api_type = family;
    match family {
        ApiType::Azure => {
            conn.api_key = take(&mut conn, "AZURE_OPENAI_API_KEY").map(Secret::new);
            conn.api_base = take(&mut conn, "AZURE_OPENAI_ENDPOINT");
            if let Some((var, _)) = one_of(&name, env, &AZURE_VERSION_VARS)? {
                conn.api_version = take(&mut conn, var);
            }
            conn.deployment = take(&mut conn, "AZURE_OPENAI_DEPLOYMENT");
        }
        ApiType::Anthropic => {
            conn.api_key = take(&mut conn, "ANTHROPIC_API_KEY").map(Secret::new);
            conn.api_base = take(&mut conn, ANTHROPIC_BASE_VAR);
        }
        ApiType::Ollama => {
            conn.api_base = take(&mut conn, "OLLAMA_HOST").map(|h| ollama_base(&h));
        }
        ApiType::OpenAi | ApiType::Echo | ApiType::Custom => {
            conn.api_key = take(&mut conn, "OPENAI_API_KEY").map(Secret::new);
            if let Some((var, _)) = one_of(&name, env, &OPENAI_BASE_VARS)? {
                conn.api_base = take(&mut conn, var);
            }
            if let Some(org) = take(&mut conn, "OPENAI_ORG_ID") {
                conn.headers
                    .insert("OpenAI-Organization".into(), Secret::new(org));
            }
        }
    }
    finish(conn, prefix, env)
}

fn parse_headers(
    name: &str,
    var: &str,
    value: &str,
) -> Result<IndexMap<String, Secret>, ConnectionError> {
    let bad = |reason: String| ConnectionError::BadHeaders {
        name: name.to_string(),
        var: var.to_string(),
        reason,
    };
    let parsed: Value =
        serde_json::from_str(value).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Value::Object(map) = parsed else {
        return Err(bad("not a JSON object".to_string()));
    };
    let mut out = IndexMap::new();
    for (k, v) in map {
        let v = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(bad(format!("the value of '{k}' is not a string"))),
        };
        out.insert(k, Secret::new(v));
    }
    Ok(out)
}

/// Credentials written into the base URL (`https://user:pw@host/v1`) leave it: they are sent as
/// HTTP Basic auth in an `Authorization` header (secret, like every header), so the URL that
/// errors, `flow connections`, run records and reports show never holds them.
fn move_url_credentials(conn: &mut Connection) -> Result<(), ConnectionError> {
    let Some(base) = conn.api_base.as_deref() else {
        return Ok(());
    };
    let Ok(mut url) = reqwest::Url::parse(base) else {
        return Ok(());
    };
    if url.username().is_empty() && url.password().is_none() {
        return Ok(());
    }
    let bad = |conn: &Connection, reason: &str| ConnectionError::BadBaseCredentials {
        name: conn.name.clone(),
        var: conn.base_var(),
        reason: reason.to_string(),
    };
    let bearer =
        conn.api_key.is_some() && matches!(conn.api_type, ApiType::OpenAi | ApiType::Ollama);
    if bearer
        || conn
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization"))
    {
        return Err(bad(
            conn,
            "they would be sent as an Authorization header, which the API key or the connection's headers already set: keep one of the two",
        ));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(url.username());
    let password = url.password().map(decode).unwrap_or_default();
    let token = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    if url.set_username("").is_err() || url.set_password(None).is_err() {
        return Err(bad(conn, "the URL cannot hold credentials; remove them"));
    }
    conn.headers.insert(
        "Authorization".into(),
        Secret::new(format!("Basic {token}")),
    );
    conn.api_base = Some(url.to_string().trim_end_matches('/').to_string());
    Ok(())
}

/// Fills defaults and checks required fields for the connection's api type.
fn finish(
    mut conn: Connection,
    prefix: &str,
    env: &EnvVars,
) -> Result<Connection, ConnectionError> {
    move_url_credentials(&mut conn)?;
    let from_standard = conn.file.is_none() && !conn.source.iter().any(|v| v.starts_with(prefix));
    let key_var = conn.key_var();
    let missing_key = |conn: &Connection| ConnectionError::MissingKey {
        name: conn.name.clone(),
        api_type: conn.api_type,
        var: key_var.clone(),
        env_file: env.file_text(),
    };
    match conn.api_type {
        ApiType::OpenAi => {
            // A custom base (vLLM, llama.cpp, LM Studio) may take no key; api.openai.com always does.
            if conn.api_key.is_none() && conn.api_base.is_none() {
                return Err(missing_key(&conn));
            }
            if conn.api_base.is_none() {
                conn.api_base = Some(OPENAI_DEFAULT_BASE.to_string());
            }
        }
        ApiType::Azure => {
            let keyless = conn
                .extra
                .get("auth_mode")
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(entra::MEID_TOKEN));
            if keyless {
                let identity = entra::Identity::from_env(env).map_err(|missing| {
                    ConnectionError::MissingIdentity {
                        name: conn.name.clone(),
                        missing: missing.iter().map(|v| v.to_string()).collect(),
                        env_file: env.file_text(),
                    }
                })?;
                conn.entra = Some(identity);
            } else if conn.api_key.is_none() {
                return Err(missing_key(&conn));
            }
            if conn.api_base.is_none() {
                let var = if from_standard {
                    "AZURE_OPENAI_ENDPOINT".to_string()
                } else {
                    format!("{prefix}_API_BASE")
                };
                return Err(ConnectionError::MissingBase {
                    name: conn.name.clone(),
                    api_type: conn.api_type,
                    var,
                    env_file: env.file_text(),
                });
            }
            if conn.api_version.is_none() {
                conn.api_version = Some(AZURE_DEFAULT_API_VERSION.to_string());
            }
        }
        ApiType::Ollama => {
            if conn.api_base.is_none() {
                conn.api_base = Some(OLLAMA_DEFAULT_BASE.to_string());
            }
        }
        ApiType::Anthropic => {
            if conn.api_key.is_none() {
                return Err(missing_key(&conn));
            }
            if conn.api_base.is_none() {
                conn.api_base = Some(ANTHROPIC_DEFAULT_BASE.to_string());
            }
        }
        ApiType::Echo | ApiType::Custom => {}
    }
    Ok(conn)
}

impl Connection {
    /// The variable the API key comes from (or would come from).
    pub fn key_var(&self) -> String {
        if self.given_in_code {
            return "the api_key given in code".into();
        }
        if let Some(v) = self.source.iter().find(|v| v.ends_with("API_KEY")) {
            return v.clone();
        }
        format!("{}_API_KEY", env_prefix(&self.name))
    }

    /// Where the base URL comes from (or would): its variable, else the connection file.
    pub fn base_var(&self) -> String {
        if self.given_in_code {
            return "the endpoint (api_base, base_url or azure_endpoint) given in code".into();
        }
        if let Some(v) = self
            .source
            .iter()
            .find(|v| v.ends_with("API_BASE") || v.ends_with("BASE_URL") || v.ends_with("ENDPOINT"))
        {
            return v.clone();
        }
        if let Some(file) = &self.file {
            // the base came from (or belongs in) the connection file, not a variable
            return format!("the api_base (base_url) of {}", file.display());
        }
        format!("{}_API_BASE", env_prefix(&self.name))
    }

    /// The variable the default model (the deployment, for Azure) comes from (or would).
    pub fn model_var(&self) -> String {
        let field = if self.api_type == ApiType::Azure {
            "DEPLOYMENT"
        } else {
            "MODEL"
        };
        if let Some(v) = self.source.iter().find(|v| v.ends_with(field)) {
            return v.clone();
        }
        format!("{}_{field}", env_prefix(&self.name))
    }

    /// Whether the extra field `field` is a secret: as a connection file declares it
    /// (`secrets:` or `configs:`), else when named like one (`key`, `secret`, `token`,
    /// `password`, `credential`).
    pub fn is_secret_extra(&self, field: &str) -> bool {
        self.declared_extra
            .get(field)
            .copied()
            .unwrap_or_else(|| is_secret_field(field))
    }

    /// Whether this connection is the offline echo provider.
    pub fn is_offline(&self) -> bool {
        self.api_type == ApiType::Echo
    }

    /// Every secret value of this connection: the key, header values, secret-looking extras
    /// (of every member, for a pool).
    pub fn secrets(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        let own = self
            .api_key
            .iter()
            .map(Secret::expose)
            .chain(self.headers.values().map(Secret::expose))
            .chain(
                self.extra
                    .iter()
                    .filter(|(k, _)| self.is_secret_extra(k))
                    .map(|(_, v)| v.as_str()),
            );
        Box::new(own.chain(self.pool.iter().flat_map(|m| m.secrets())))
    }

    /// Whether this connection is a pool of member connections (`X_POOL`).
    pub fn is_pool(&self) -> bool {
        !self.pool.is_empty()
    }

    /// A redactor for this connection's secrets.
    pub fn redactor(&self) -> Redactor {
        Redactor::from_connections([self])
    }

    /// The promptflow connection class Python tools receive: `AzureOpenAIConnection`,
    /// `OpenAIConnection`, or `CustomConnection` (ollama, anthropic, echo).
    pub fn python_class(&self) -> &'static str {
        match self.api_type {
            ApiType::Azure => "AzureOpenAIConnection",
            ApiType::OpenAi => "OpenAIConnection",
            _ => "CustomConnection",
        }
    }

    /// The fields promptflow's connection object exposes to Python tools, with secrets exposed
    /// (only ever hand this to the Python worker). Azure: `api_key`, `api_base`, `api_type`,
    /// `api_version`; OpenAI: `api_key`, `organization`, `base_url` (plus `api_base`/`api_type`
    /// for convenience); others: `api_key`, `api_base`, `api_type`; all: `model`, `deployment`
    /// when set, and every extra field; `name`, and the extra fields again split into
    /// `configs` and `secrets` (what a `CustomConnection` holds).
    pub fn to_python(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        let opt = |s: &Option<String>| s.as_ref().map_or(Value::Null, |v| json!(v));
        m.insert(
            "api_key".into(),
            self.api_key
                .as_ref()
                .map_or(Value::Null, |k| json!(k.expose())),
        );
        match self.api_type {
            ApiType::Azure => {
                m.insert("api_base".into(), opt(&self.api_base));
                m.insert("api_type".into(), json!("azure"));
                m.insert("api_version".into(), opt(&self.api_version));
            }
            ApiType::OpenAi => {
                m.insert(
                    "organization".into(),
                    self.extra
                        .get("organization")
                        .map_or(Value::Null, |v| json!(v)),
                );
                m.insert("base_url".into(), opt(&self.api_base));
                m.insert("api_base".into(), opt(&self.api_base));
                m.insert("api_type".into(), json!("openai"));
            }
            ApiType::Custom => {
                if self.api_base.is_some() {
                    m.insert("api_base".into(), opt(&self.api_base));
                }
            }
            other => {
                m.insert("api_base".into(), opt(&self.api_base));
                m.insert("api_type".into(), json!(other.as_str()));
            }
        }
        if self.model.is_some() {
            m.insert("model".into(), opt(&self.model));
        }
        if self.deployment.is_some() {
            m.insert("deployment".into(), opt(&self.deployment));
        }
        let (mut configs, mut secrets) = (Map::new(), Map::new());
        for (k, v) in &self.extra {
            m.entry(k.clone()).or_insert_with(|| json!(v));
            let side = if self.is_secret_extra(k) {
                &mut secrets
            } else {
                &mut configs
            };
            side.insert(k.clone(), json!(v));
        }
        m.insert("configs".into(), Value::Object(configs));
        m.insert("secrets".into(), Value::Object(secrets));
        Value::Object(m)
    }

    /// The names of the fields of [`Connection::to_python`] that are secrets (promptflow's
    /// `secret_keys`).
    pub fn python_secret_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if self.api_key.is_some() {
            keys.push("api_key".to_string());
        }
        keys.extend(
            self.extra
                .keys()
                .filter(|k| self.is_secret_extra(k) && k.as_str() != "api_key")
                .cloned(),
        );
        keys
    }
}
