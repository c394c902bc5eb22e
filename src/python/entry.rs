//! Describing a flex flow's entry: its signature, read by importing the module once in a
//! short-lived `python3` (the same `worker.py` and shim the workers run), before any line runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::shim::{WORKER_SCRIPT, install_shim};

/// What a flex flow's `entry` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A plain function.
    Function,
    /// An `async def` function (or async generator).
    Async,
    /// A class with `__call__`: made once per worker (without arguments), then called;
    /// `params` are those of `__call__`.
    Class,
}

/// One parameter of the entry function.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EntryParam {
    pub name: String,
    /// The flow input type promptflow gives it: `string`, `int`, `double`, `bool`, `list`,
    /// `object` (from the annotation, else from the default's type, else `object`).
    #[serde(rename = "type")]
    pub ty: String,
    pub has_default: bool,
    /// The default as JSON (a non-JSON default is its `repr`).
    #[serde(default)]
    pub default: Value,
    /// The connection class its annotation names, e.g. `AzureOpenAIConnection`.
    #[serde(default)]
    pub connection_type: Option<String>,
}

/// The entry's signature.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EntryDescription {
    pub kind: EntryKind,
    pub function: String,
    pub params: Vec<EntryParam>,
    pub accepts_kwargs: bool,
    /// A class entry's `__init__` parameters (`self` excluded).
    #[serde(default)]
    pub init_params: Vec<InitParam>,
    /// Whether a class entry's `__init__` takes `**kwargs`.
    #[serde(default)]
    pub init_accepts_kwargs: bool,
    /// Whether a class entry defines `__aggregate__`.
    #[serde(default)]
    pub has_aggregate: bool,
    /// The one parameter of `__aggregate__` (the list of line outputs).
    #[serde(default)]
    pub aggregate_param: Option<String>,
}

/// One parameter of a class entry's `__init__`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InitParam {
    pub name: String,
    pub has_default: bool,
    /// The type promptflow gives it, as for an input (`string`, `int`, ..., `object`).
    #[serde(default, rename = "type")]
    pub ty: String,
    /// The default as JSON.
    #[serde(default)]
    pub default: Value,
    /// The connection class its annotation names: it takes a connection name.
    #[serde(default)]
    pub connection_type: Option<String>,
    /// `AzureOpenAIModelConfiguration` or `OpenAIModelConfiguration` when annotated so: it
    /// takes a dict of that class's fields (or `connection` and the deployment / model).
    #[serde(default)]
    pub model_config: Option<String>,
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    #[serde(flatten)]
    description: Option<EntryDescription>,
    error: Option<super::pool::ErrorReply>,
}

/// Why an entry could not be described.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("{0}")]
    Python(#[from] super::PythonError),
    #[error("cannot run {python} to read the entry: {source}")]
    Spawn {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{message}")]
    Import { message: String, traceback: String },
    #[error("{message}{}", found_list(.found))]
    NotFound { message: String, found: Vec<String> },
    #[error("{0}")]
    Other(String),
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!(" (it defines: {})", found.join(", "))
    }
}

/// How long importing the entry's module may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(120);

enum Waited {
    Io(std::io::Error),
    TimedOut,
}

/// Wait for `child`, reading its output on threads (no pipe can fill up); kill it after `limit`.
fn wait_with_timeout(mut child: Child, limit: Duration) -> Result<Output, Waited> {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().map_err(Waited::Io)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Waited::TimedOut);
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Import `file` (relative to `working_dir`) and describe `name` in it. Blocking: spawns Python.
pub fn describe_entry(
    working_dir: &Path,
    env: &[(String, String)],
    file: &Path,
    name: &str,
) -> Result<EntryDescription, EntryError> {
    let shim = install_shim()?;
    let candidates: Vec<PathBuf> = match std::env::var_os("FLOW_PYTHON") {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => vec![PathBuf::from("python3"), PathBuf::from("python")],
    };
    let mut last = None;
    for python in candidates {
        let child = Command::new(&python)
            .arg(shim.join(WORKER_SCRIPT))
            .arg(&shim)
            .arg("--describe-entry")
            .arg(file)
            .arg(name)
            .current_dir(working_dir)
            .env("PYTHONIOENCODING", "utf-8")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                last.get_or_insert(EntryError::Spawn {
                    python: python.display().to_string(),
                    source,
                });
                continue;
            }
            Err(source) => {
                return Err(EntryError::Spawn {
                    python: python.display().to_string(),
                    source,
                });
            }
        };
        let output = wait_with_timeout(child, DESCRIBE_TIMEOUT).map_err(|e| match e {
            Waited::Io(source) => EntryError::Spawn {
                python: python.display().to_string(),
                source,
            },
            Waited::TimedOut => EntryError::Other(format!(
                "importing {} took more than {}s (does the module do work at import time?)",
                file.display(),
                DESCRIBE_TIMEOUT.as_secs()
            )),
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout.lines().find(|l| !l.trim().is_empty()) else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(EntryError::Other(format!(
                "{} exited ({}) without describing the entry: {}",
                python.display(),
                output.status,
                tail.join("\n")
            )));
        };
        let reply: Reply = serde_json::from_str(line)
            .map_err(|e| EntryError::Other(format!("unreadable reply from the worker: {e}")))?;
        return match (reply.ok, reply.description, reply.error) {
            (true, Some(d), _) => Ok(d),
            (_, _, Some(e))
                if matches!(
                    e.kind.as_str(),
                    "function_not_found" | "not_found" | "not_a_function"
                ) =>
            {
                Err(EntryError::NotFound {
                    message: e.message,
                    found: e.found,
                })
            }
            (_, _, Some(e)) if e.kind == "load" || e.kind == "exception" => {
                Err(EntryError::Import {
                    message: if e.type_name.is_empty() {
                        e.message
                    } else {
                        format!("{}: {}", e.type_name, e.message)
                    },
                    traceback: e.traceback,
                })
            }
            (_, _, Some(e)) => Err(EntryError::Other(e.message)),
            _ => Err(EntryError::Other("the worker's reply is incomplete".into())),
        };
    }
    Err(last.unwrap_or_else(|| EntryError::Other("no Python interpreter to try".into())))
}
