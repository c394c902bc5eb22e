//! Argument-to-library glue shared by several commands: the output format, `--variant`
//! values, loading and preparing a flow (diagnostics become exit status 2), the settings a
//! run starts with and the executor options they make, and how a failed line exits.

use std::path::{Path, PathBuf};

use super::output::{Failure, print_warnings};
use super::settings::ModelArgs;
use flow::cache::{CacheMode, ResponseCache};
use flow::connection::EnvVars;
use flow::executor::{Executor, ExecutorOptions};
use flow::model::{Flow, VariantSelection};
use flow::record::{ErrorInfo, ErrorKind};
use flow::run_store::RunSettings;

pub use super::settings::OutputFormat;

/// Parse `--variant` values.
pub fn parse_variants(values: &[String]) -> Result<Vec<VariantSelection>, Failure> {
    values
        .iter()
        .map(|v| {
            v.parse::<VariantSelection>()
                .map_err(|e| Failure::usage(format!("error: {e}")))
        })
        .collect()
}

/// Load a flow and check its DAG, printing warnings; errors become exit status 2.
pub fn load_flow(path: &Path, selections: &[VariantSelection]) -> Result<Flow, Failure> {
    let flow =
        flow::model::load(path, selections).map_err(|e| Failure::diagnostics(&e.diagnostics))?;
    print_warnings(&flow.warnings);
    Ok(flow)
}

/// `--init` values (`NAME=VALUE`, repeatable, or a JSON file holding an object, as
/// promptflow's `pf run create --init`) checked against the flex flow's class entry and set as
/// its init. With no `--init`, `sample.init` and the `init:` defaults apply; a class whose
/// `__init__` still lacks an argument is refused (exit 2) before anything runs.
pub fn apply_init(flow: &mut Flow, values: &[String]) -> Result<(), Failure> {
    let parsed = parse_name_values(
        "--init",
        "init arguments",
        "\n  help: --init max_tokens=256, or --init init.json holding {\"max_tokens\": 256}",
        values,
    )?;
    let (given, file) = (parsed.values, parsed.last_file);
    let source = match (&file, values.len()) {
        (_, 0) => None,
        (Some(f), 1) => Some(flow::model::InitSource::File(f.as_path())),
        _ => Some(flow::model::InitSource::Flag),
    };
    flow::model::apply_init(flow, given, source).map_err(|d| Failure::diagnostics(&d))
}

/// The init a run recorded (`--init` values, and values such as an experiment's `init:`),
/// applied as when it started: to resume it, merge its shards, or sample it again.
pub fn apply_recorded_init(
    flow: &mut Flow,
    init: &[String],
    values: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), Failure> {
    if values.is_empty() {
        return apply_init(flow, init);
    }
    let parsed = parse_name_values("--init", "init arguments", "", init)?;
    let mut given = parsed.values;
    given.extend(values.clone());
    flow::model::apply_init(flow, given, Some(flow::model::InitSource::Flag))
        .map_err(|d| Failure::diagnostics(&d))
}

/// `--init` values as a run records them (to resume it with the same init): a file made
/// absolute, `NAME=VALUE` as given.
pub fn init_record(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|raw| {
            if Path::new(raw).is_file() {
                absolute(Path::new(raw)).display().to_string()
            } else {
                raw.clone()
            }
        })
        .collect()
}

/// `NAME=VALUE` arguments and JSON files of objects, as `--inputs` and `--init` take them.
pub struct NameValues {
    /// Every value, the later winning.
    pub values: serde_json::Map<String, serde_json::Value>,
    /// The names that came from JSON files (not named on purpose with `NAME=VALUE`).
    pub from_files: std::collections::BTreeSet<String>,
    /// The last JSON file read, if any.
    pub last_file: Option<PathBuf>,
}

/// Read `flag`'s values: `NAME=VALUE` (the value as a string), or a JSON file holding an object
/// of `what`. An argument that names an existing file is a file even when it holds `=`.
pub fn parse_name_values(
    flag: &str,
    what: &str,
    help: &str,
    values: &[String],
) -> Result<NameValues, Failure> {
    let mut out = NameValues {
        values: serde_json::Map::new(),
        from_files: std::collections::BTreeSet::new(),
        last_file: None,
    };
    for raw in values {
        match raw.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !Path::new(raw).is_file() => {
                out.values.insert(
                    k.trim().to_string(),
                    serde_json::Value::String(v.to_string()),
                );
            }
            _ => {
                let text = std::fs::read_to_string(raw).map_err(|e| {
                    Failure::usage(format!(
                        "error: {flag} `{raw}` is neither NAME=VALUE nor a readable JSON file ({e}){help}"
                    ))
                })?;
                match flow::non_finite::from_str::<serde_json::Value>(&text) {
                    Ok(serde_json::Value::Object(map)) => {
                        out.from_files.extend(map.keys().cloned());
                        out.values.extend(map);
                    }
                    Ok(_) => {
                        return Err(Failure::usage(format!(
                            "error: {flag} {raw} must hold a JSON object of {what}"
                        )));
                    }
                    Err(e) => {
                        return Err(Failure::usage(format!(
                            "error: {flag} {raw}:{}:{}: invalid JSON: {e}",
                            e.line(),
                            e.column()
                        )));
                    }
                }
                out.last_file = Some(PathBuf::from(raw));
            }
        }
    }
    Ok(out)
}

/// `p` made absolute against the working directory (as given when that fails).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The settings a run started with these model flags records (paths made absolute), with
/// `line_timeout_s` (`--line-timeout`). Evaluation, sample and upload settings are the
/// caller's to add.
pub fn run_settings(model: &ModelArgs, line_timeout_s: Option<f64>) -> RunSettings {
    let path = |p: &Path| absolute(p).display().to_string();
    RunSettings {
        env_file: model.env_file.as_deref().map(&path),
        connections: model.connections.as_deref().map(&path),
        line_timeout_s,
        request_timeout_s: Some(model.request_timeout_s()),
        max_retries: Some(model.retries()),
        cache: Some(model.cache.mode().as_str().to_string()),
        require_base_line: false,
        cache_dir: model.cache.cache_dir.as_deref().map(&path),
        prices: model.prices.as_deref().map(&path),
        sample: None,
        upload: None,
        init: Vec::new(),
        init_values: serde_json::Map::new(),
    }
}

/// Where the command works: the current directory and its project root (where `.flow/` is).
pub fn workdir() -> Result<flow::project::Workdir, Failure> {
    let work = flow::project::Workdir::current()
        .map_err(|e| Failure::usage(format!("error: cannot read the current directory: {e}")))?;
    if let Some((line, text)) = work.root_file_setting() {
        return Err(Failure::usage(format!(
            "error: {}:{line}: `{}`: flow reads no settings from {} (it only marks the project root)\n  help: remove the line, or give the setting as a flag or variable (flow --help)",
            work.root.join(flow::project::ROOT_FILE).display(),
            text.trim(),
            flow::project::ROOT_FILE
        )));
    }
    Ok(work)
}

/// Everything the executor needs from the command line and the environment.
pub fn executor_options(model: &ModelArgs, flow: &Flow) -> Result<ExecutorOptions, Failure> {
    let work = workdir()?;
    let env = EnvVars::load_with(
        model.env_file.as_deref(),
        model.connections.as_deref(),
        &work.cwd,
    )
    .map_err(|e| Failure::usage(format!("error: {e}")))?;
    if !model.offline {
        for warning in env.near_misses(&flow.connection_names()) {
            eprintln!("{warning}");
        }
    }
    let mut options = ExecutorOptions::new(env);
    options.offline = model.offline;
    let request_timeout = model.request_timeout_s();
    if !(request_timeout > 0.0 && request_timeout.is_finite()) {
        return Err(Failure::usage(
            "error: --request-timeout must be a positive number of seconds",
        ));
    }
    options.request_timeout = std::time::Duration::from_secs_f64(request_timeout);
    options.max_retries = model.retries();
    options.prices = std::sync::Arc::new(
        flow::cost::PriceTable::from_env_and_file(model.prices.as_deref(), &work.root)
            .map_err(|e| Failure::usage(format!("error: {e}")))?,
    );
    options.cache = match model.cache.mode() {
        CacheMode::Off => None,
        mode => Some(ResponseCache::new(model.cache.dir(&work.root), mode)),
    };
    let python_nodes = flow
        .nodes
        .iter()
        .filter(|n| n.kind == flow::model::NodeKind::Python)
        .count();
    options.python_workers = python_nodes.clamp(1, 4);
    Ok(options)
}

/// Build the DAG and prepare the executor; problems become exit status 2.
pub async fn prepare(flow: Flow, options: &ExecutorOptions) -> Result<Executor, Failure> {
    let (dag, warnings) = flow::dag::build(&flow).map_err(|d| Failure::diagnostics(&d))?;
    print_warnings(&warnings);
    Executor::new(flow, dag, options)
        .await
        .map_err(|e| Failure::diagnostics(&e.diagnostics))
}

/// A failed line: exit 3 when the endpoint was unusable, else 1.
pub fn line_failure(err: &ErrorInfo) -> Failure {
    let mut message = format!("error: {}", err.message);
    if let Some(tb) = &err.traceback {
        message.push_str("\n\n");
        message.push_str(tb.trim_end());
    }
    match err.kind {
        ErrorKind::Endpoint => Failure::endpoint(message),
        ErrorKind::Connection => Failure::usage(message),
        _ => Failure::quality(message),
    }
}

/// How a batch that stopped early exits, for `flow run` and `flow eval` alike: an unusable
/// endpoint (3), every line failing the same way (2), Ctrl-C (130).
pub fn stop_failure(stop: &flow::eval::verdict::BatchStop) -> Failure {
    use flow::eval::verdict::BatchStop;
    match stop {
        BatchStop::EndpointUnusable { failed, error } => Failure::endpoint(format!(
            "error: stopped after {failed} lines: the endpoint could not be used\n{}",
            line_failure(error).message
        )),
        BatchStop::Canceled { kept, resume } => Failure::interrupted(format!(
            "stopped: {kept} lines are kept. Resume with: {resume}"
        )),
        BatchStop::Misconfigured {
            failed,
            error,
            resume,
        } => Failure::usage(format!(
            "error: stopped after {failed} lines: every line failed the same way, so the flow or its settings are wrong, not the data\n{}\n  help: fix it, then finish with: {resume}",
            line_failure(error).message
        )),
        BatchStop::EveryLineEndpoint {
            failed,
            total,
            resume,
        } => Failure::endpoint(format!(
            "{failed} of {total} lines failed. Rerun just those with: {resume}"
        )),
    }
}
