//! `flow build FLOW --format docker`: a Docker build context that serves the flow — the flow
//! with its variants applied (`node_variants` dropped), a multi-stage `Dockerfile` (rendered
//! from `templates/docker/`, compiled in), a `.dockerignore`, a `README.md` naming the
//! environment variables the container needs, and `sample-request.json`.
//!
//! Nothing secret enters the context: `.env` files, key and certificate files are left out by
//! name, and any file holding the value of a secret the build can see (the connection keys in
//! `.env` and the environment) is left out too.

pub mod binary;
pub mod secrets;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::connection::{self, ApiType, EnvVars};
use crate::model::{Flow, NodeKind, ValueType};

/// The port the image serves on unless `flow build --port` says otherwise.
pub const PORT: u16 = 8080;

const DOCKERFILE: &str = include_str!("../../templates/docker/Dockerfile.tera");
const README: &str = include_str!("../../templates/docker/README.md.tera");
const DOCKERIGNORE: &str = include_str!("../../templates/docker/dockerignore");

/// Where the image's `flow` binary comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinarySource {
    /// Build it in the image's first stage from this checkout of flow's source.
    Source(PathBuf),
    /// Copy this Linux binary (glibc ≤ 2.36, checked by [`binary::check`]).
    Binary(PathBuf),
}

/// Where the Python stage's pip finds packages (only with a requirements file).
#[derive(Debug, Clone, Default)]
pub struct PipOptions {
    /// `--index-url`: another package index than PyPI.
    pub index_url: Option<String>,
    /// `--extra-index-url`, each.
    pub extra_index_urls: Vec<String>,
    /// A CA bundle (PEM) to trust for the index: copied into the context as `pip-ca.crt`,
    /// used in the build stage only, not in the runtime image.
    pub cert: Option<PathBuf>,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct DockerBuild {
    /// The context directory (must not exist or be empty).
    pub output: PathBuf,
    pub binary: BinarySource,
    /// The port the image serves on (its `FLOW_SERVE_PORT`, `EXPOSE` and health check).
    pub port: u16,
    pub pip: PipOptions,
    /// Variables of `.env` and the environment: to describe connections and to recognise
    /// secret values.
    pub env: EnvVars,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    /// Files of the flow directory left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// The context's files, relative to it.
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Whether the image installs Python.
    pub python: bool,
    /// The copied binary's platform and glibc need (none when built from source).
    pub binary: Option<binary::BinaryInfo>,
    /// The environment variables the image needs, by connection.
    pub connections: Vec<ConnectionVars>,
}

/// The variables of one connection, for the README and for deployment manifests.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionVars {
    pub name: String,
    pub variables: Vec<VarDoc>,
    /// The API type it resolved to where the build ran (empty when it did not resolve).
    pub api_type: String,
    /// The variables it resolved from, as a sentence (names only).
    pub resolved_from: String,
}

/// One variable and what it is for.
#[derive(Debug, Clone, Serialize)]
pub struct VarDoc {
    pub name: String,
    pub meaning: String,
    /// Whether it holds a secret (a Kubernetes Secret rather than plain env).
    pub secret: bool,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0} is not empty: give a new or empty directory to --output")]
    OutputNotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the binary {0} does not exist")]
    MissingBinary(PathBuf),
    #[error(transparent)]
    Binary(#[from] binary::BinaryError),
    #[error("--{flag} {url}: {why}")]
    PipIndex {
        flag: &'static str,
        url: String,
        why: &'static str,
    },
    #[error("--pip-cert {0}: no such file")]
    MissingPipCert(PathBuf),
    #[error("--port 0: give the port the image serves on (1-65535)")]
    Port,
    #[error(
        "{0} is not a checkout of flow's source (no Cargo.toml and src/main.rs): pass --source DIR, or --binary PATH to copy a built Linux binary"
    )]
    NotSource(PathBuf),
    #[error("the Dockerfile template did not render: {0}")]
    Template(String),
    #[error("{0}")]
    Flow(String),
}

impl crate::error::Classify for BuildError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            BuildError::Io { .. } => crate::error::ErrorClass::Io,
            _ => crate::error::ErrorClass::Config,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the flow has Python nodes.
pub fn has_python(flow: &Flow) -> bool {
    flow.nodes.iter().any(|n| n.kind == NodeKind::Python)
}

/// The flow's requirements file, relative to its directory: `environment.python_requirements_txt`
/// or `requirements.txt`, when it exists.
pub fn requirements_file(flow: &Flow) -> Option<PathBuf> {
    let declared = flow
        .environment
        .as_ref()
        .and_then(|e| e.get("python_requirements_txt"))
        .and_then(Value::as_str)
        .map(PathBuf::from);
    let rel = declared.unwrap_or_else(|| PathBuf::from("requirements.txt"));
    flow.dir.join(&rel).is_file().then_some(rel)
}

/// The connections of the flow's nodes (variants applied) and their variables.
pub fn connection_vars(flow: &Flow, env: &EnvVars) -> Vec<ConnectionVars> {
    let mut names: Vec<&str> = Vec::new();
    for n in &flow.nodes {
        if let Some(c) = n.connection.as_deref() {
            if !names.contains(&c) {
                names.push(c);
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let p = connection::env_prefix(name);
            let resolved = connection::resolve(name, env, false).ok();
            let azure = resolved
                .as_ref()
                .is_some_and(|c| c.api_type == ApiType::Azure);
            let var = |suffix: &str, meaning: &str, secret: bool| VarDoc {
                name: format!("{p}_{suffix}"),
                meaning: meaning.to_string(),
                secret,
            };
            let mut variables = vec![
                var("API_KEY", "the key (secret; not needed for ollama)", true),
                var(
                    "API_TYPE",
                    "openai (default), azure, ollama, anthropic",
                    false,
                ),
                var(
                    "API_BASE",
                    "the API root (default https://api.openai.com/v1 for openai)",
                    false,
                ),
                var(
                    "API_VERSION",
                    if azure {
                        "Azure OpenAI api-version (required for azure)"
                    } else {
                        "Azure OpenAI api-version (azure only)"
                    },
                    false,
                ),
                var("MODEL", "the model nodes use when they name none", false),
                var(
                    "DEPLOYMENT",
                    "the Azure deployment nodes use when they name none",
                    false,
                ),
                var(
                    "HEADERS",
                    "extra request headers, a JSON object (secret if it carries credentials)",
                    true,
                ),
            ];
            // Only what the connection actually uses is required; keep the key first.
            if let Some(c) = &resolved {
                if c.api_type == ApiType::Ollama {
                    variables.retain(|v| !v.name.ends_with("_API_KEY"));
                }
                if c.entra.is_some() {
                    // keyless (auth_mode: meid_token): the service principal's variables instead
                    let doc = |name: &str, meaning: &str, secret: bool| VarDoc {
                        name: name.to_string(),
                        meaning: meaning.to_string(),
                        secret,
                    };
                    variables.retain(|v| !v.name.ends_with("_API_KEY"));
                    variables.splice(
                        0..0,
                        [
                            doc("AZURE_CLIENT_SECRET", "the service principal's secret, for the Entra ID token (auth_mode meid_token); on a platform that gives the container an identity, its variables instead: AZURE_FEDERATED_TOKEN_FILE (workload identity) or IDENTITY_ENDPOINT and IDENTITY_HEADER (managed identity)", true),
                            doc("AZURE_TENANT_ID", "its tenant", false),
                            doc("AZURE_CLIENT_ID", "its client (application) id", false),
                            doc("AZURE_AUTHORITY_HOST", "where tokens come from (default https://login.microsoftonline.com)", false),
                        ],
                    );
                }
            }
            ConnectionVars {
                name: name.to_string(),
                variables,
                api_type: resolved
                    .as_ref()
                    .map(|c| c.api_type.as_str().to_string())
                    .unwrap_or_default(),
                resolved_from: resolved
                    .as_ref()
                    .filter(|c| !c.source.is_empty())
                    .map(|c| {
                        c.source
                            .iter()
                            .map(|s| format!("`{s}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// A request body built from the flow's input defaults (placeholders where there are none), or
/// the flow's own `sample-request.json` / promptflow's `samples.json` when it has one.
pub fn sample_request(flow: &Flow) -> Value {
    for name in ["sample-request.json", "samples.json"] {
        if let Ok(text) = std::fs::read_to_string(flow.dir.join(name)) {
            if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
                return v;
            }
        }
    }
    let mut m = Map::new();
    for (name, input) in &flow.inputs {
        let v = match (&input.default, &input.ty) {
            (Some(d), _) => d.clone(),
            (None, _) if input.is_chat_history => Value::Array(Vec::new()),
            (None, ValueType::String) => Value::String(format!("<{name}>")),
            (None, ValueType::Int) => Value::from(0),
            (None, ValueType::Double) => Value::from(0.0),
            (None, ValueType::Bool) => Value::Bool(false),
            (None, ValueType::List) => Value::Array(Vec::new()),
            (None, ValueType::Object | ValueType::Image) => Value::Object(Map::new()),
        };
        m.insert(name.clone(), v);
    }
    Value::Object(m)
}

/// Files of flow's source a from-source build needs.
const SOURCE_ITEMS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "src",
    "templates",
    "benches",
    "build.rs",
    "rust-toolchain.toml",
];

/// Whether `dir` holds flow's source.
pub fn is_source_dir(dir: &Path) -> bool {
    dir.join("Cargo.toml").is_file() && dir.join("src/main.rs").is_file()
}

/// A pip index URL the Dockerfile may hold: http(s), and no credentials (they would be in the
/// Dockerfile and the image's history).
fn check_index_url(flag: &'static str, url: &str) -> Result<(), BuildError> {
    let err = |why| BuildError::PipIndex {
        flag,
        url: url.to_string(),
        why,
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| err("give an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        // Show the URL without what precedes the @.
        return Err(BuildError::PipIndex {
            flag,
            url: url.replace(
                authority.rsplit_once('@').map_or("", |(creds, _)| creds),
                "***",
            ),
            why: "a URL with credentials would be written into the Dockerfile and the image's history; use an index that needs none from the build (a mirror or proxy)",
        });
    }
    // It is written single-quoted into a RUN line.
    if authority.is_empty()
        || url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\\' | '\'' | '"'))
    {
        return Err(err("not a URL"));
    }
    Ok(())
}

/// Write the build context. Nothing is left behind when it fails: a directory it created is
/// removed, an empty one it was given is emptied again.
pub fn docker_context(flow: &Flow, build: &DockerBuild) -> Result<BuildReport, BuildError> {
    let out = &build.output;
    let existed = out.exists();
    if existed {
        let mut entries = std::fs::read_dir(out).map_err(io_err(out))?;
        if entries.next().is_some() {
            return Err(BuildError::OutputNotEmpty(out.clone()));
        }
    }
    if build.port == 0 {
        return Err(BuildError::Port);
    }
    let binary_info = match &build.binary {
        BinarySource::Binary(p) if !p.is_file() => {
            return Err(BuildError::MissingBinary(p.clone()));
        }
        BinarySource::Binary(p) => Some(binary::check(p)?),
        BinarySource::Source(dir) if !is_source_dir(dir) => {
            return Err(BuildError::NotSource(dir.clone()));
        }
        BinarySource::Source(_) => None,
    };
    if let Some(url) = &build.pip.index_url {
        check_index_url("pip-index-url", url)?;
    }
    for url in &build.pip.extra_index_urls {
        check_index_url("pip-extra-index-url", url)?;
    }
    if let Some(cert) = &build.pip.cert
        && !cert.is_file()
    {
        return Err(BuildError::MissingPipCert(cert.clone()));
    }
    // The flow, variants applied, without secrets.
    let guard = secrets::SecretGuard::new(&build.env, &flow.dir);
    if let Some(why) = guard.reason_to_skip(&flow.file) {
        return Err(BuildError::Flow(format!(
            "{} cannot go into an image: {why}; move the value to a variable of the container's environment",
            flow.file.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let result = write_context(flow, build, guard, binary_info);
    if result.is_err() {
        if existed {
            if let Ok(entries) = std::fs::read_dir(out) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() && !p.is_symlink() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(out);
        }
    }
    result
}

fn write_context(
    flow: &Flow,
    build: &DockerBuild,
    guard: secrets::SecretGuard,
    binary_info: Option<binary::BinaryInfo>,
) -> Result<BuildReport, BuildError> {
    let out = &build.output;
    let mut report = BuildReport {
        python: has_python(flow),
        connections: connection_vars(flow, &build.env),
        binary: binary_info,
        ..BuildReport::default()
    };
    let skipped = std::cell::RefCell::new(Vec::new());
    let flow_out = out.join("flow");
    let root = crate::project::root_of(&flow.dir);
    let reason = |path: &Path| {
        // A link out of the project would ship whatever it points at.
        if path.is_symlink()
            && let Some(real) = crate::project::outside(path, &root)
        {
            return Some(format!("a link to {}, outside the project", real.display()));
        }
        guard.reason_to_skip(path)
    };
    crate::run_store::copy_flow(flow, &flow_out, &|path| match reason(path) {
        Some(why) => {
            skipped.borrow_mut().push((path.to_path_buf(), why));
            true
        }
        None => false,
    })
    .map_err(io_err(&flow_out))?;
    let connection_files = copy_connection_files(build, &out.join("connections"), &|path| {
        let why = reason(path)?;
        skipped.borrow_mut().push((path.to_path_buf(), why.clone()));
        Some(why)
    })?;
    report.skipped = skipped.into_inner();

    // The binary or the source.
    let binary = match &build.binary {
        BinarySource::Binary(p) => {
            let dest = out.join("bin").join("flow");
            std::fs::create_dir_all(out.join("bin")).map_err(io_err(out))?;
            std::fs::copy(p, &dest).map_err(io_err(&dest))?;
            set_executable(&dest).map_err(io_err(&dest))?;
            true
        }
        BinarySource::Source(dir) => {
            let dest = out.join("flow-src");
            for item in SOURCE_ITEMS {
                let src = dir.join(item);
                if src.is_dir() {
                    copy_source_tree(&src, &dest.join(item)).map_err(io_err(&dest))?;
                } else if src.is_file() {
                    std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
                    std::fs::copy(&src, dest.join(item)).map_err(io_err(&dest))?;
                }
            }
            false
        }
    };

    let requirements = report.python.then(|| requirements_file(flow)).flatten();
    let mut ctx = tera::Context::new();
    ctx.insert("version", env!("CARGO_PKG_VERSION"));
    ctx.insert("flow_name", &flow.name());
    ctx.insert(
        "variants",
        &flow
            .selected_variants
            .iter()
            .map(|(n, v)| format!("${{{n}.{v}}}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    ctx.insert("binary", &binary);
    ctx.insert("connection_files", &connection_files);
    ctx.insert("python", &report.python);
    ctx.insert(
        "requirements",
        &requirements
            .as_ref()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default(),
    );
    ctx.insert("port", &build.port);
    ctx.insert(
        "platform",
        &report
            .binary
            .as_ref()
            .map(|b| b.platform.clone())
            .unwrap_or_default(),
    );
    ctx.insert(
        "glibc",
        &report
            .binary
            .as_ref()
            .and_then(|b| b.glibc)
            .map(|(a, b)| format!("{a}.{b}"))
            .unwrap_or_default(),
    );
    // pip's options, only where there is something to install.
    let mut pip_options = String::new();
    let mut pip_cert = false;
    if requirements.is_some() {
        if let Some(url) = &build.pip.index_url {
            pip_options.push_str(&format!(" --index-url '{url}'"));
        }
        for url in &build.pip.extra_index_urls {
            pip_options.push_str(&format!(" --extra-index-url '{url}'"));
        }
        if let Some(cert) = &build.pip.cert {
            let dest = out.join("pip-ca.crt");
            std::fs::copy(cert, &dest).map_err(io_err(&dest))?;
            pip_options.push_str(" --cert /tmp/pip-ca.crt");
            pip_cert = true;
        }
    }
    ctx.insert("pip_options", &pip_options);
    ctx.insert("pip_cert", &pip_cert);
    ctx.insert("connections", &report.connections);
    let dockerfile = render(DOCKERFILE, &ctx)?;
    // The requirements file sits at flow/<path> in the context.
    let dockerfile = match &requirements {
        Some(rel) => dockerfile.replace(
            "COPY flow/requirements.txt",
            &format!("COPY flow/{}", rel.to_string_lossy().replace('\\', "/")),
        ),
        None => dockerfile,
    };
    write(out, "Dockerfile", &squeeze_blank_lines(&dockerfile))?;
    write(out, ".dockerignore", DOCKERIGNORE)?;
    write(
        out,
        "README.md",
        &squeeze_blank_lines(&render(README, &ctx)?),
    )?;
    let sample = serde_json::to_string_pretty(&sample_request(flow)).unwrap_or_default();
    write(out, "sample-request.json", &format!("{sample}\n"))?;

    let mut files = Vec::new();
    list_files(out, out, &mut files).map_err(io_err(out))?;
    files.sort();
    report.bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(out.join(f)).ok())
        .map(|m| m.len())
        .sum();
    report.files = files;
    Ok(report)
}

/// The project's promptflow connection files (`connections/`, or `--connections DIR`), copied to
/// `dest`, so the image resolves its connections the same way (`/app/connections` is the
/// served flow's project folder). They hold no secret — a literal secret is refused when they
/// are read, secrets are `${env:VAR}` for the container's environment — and a file the secret
/// guard objects to stays out anyway. Whether any was copied.
fn copy_connection_files(
    build: &DockerBuild,
    dest: &Path,
    reason: &dyn Fn(&Path) -> Option<String>,
) -> Result<bool, BuildError> {
    let files = build.env.files();
    if files.dir.is_none() || files.connections.is_empty() {
        return Ok(false);
    }
    let mut copied = false;
    for conn in &files.connections {
        let Some(name) = conn.path.file_name() else {
            continue;
        };
        if reason(&conn.path).is_some() {
            continue;
        }
        std::fs::create_dir_all(dest).map_err(io_err(dest))?;
        let to = dest.join(name);
        std::fs::copy(&conn.path, &to).map_err(io_err(&to))?;
        copied = true;
    }
    Ok(copied)
}

fn render(template: &str, ctx: &tera::Context) -> Result<String, BuildError> {
    tera::Tera::one_off(template, ctx, false).map_err(|e| {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        BuildError::Template(msg)
    })
}

/// At most one blank line in a row (template conditionals leave runs of them).
fn squeeze_blank_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), BuildError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(io_err(&path))
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

/// Copy a source directory, without build output and editor/VCS litter.
fn copy_source_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(
            name.to_str(),
            Some("target" | ".git" | "__pycache__" | ".env")
        ) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            copy_source_tree(&path, &dest.join(&name))?;
        } else if path.is_file() {
            std::fs::copy(&path, dest.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms)
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_squeezed() {
        assert_eq!(squeeze_blank_lines("a\n\n\n\nb  \n"), "a\n\nb\n");
    }
}
