//! The worker pool: dispatches calls to idle workers, starts them lazily, replaces dead ones.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore, mpsc};

use super::host::{DEFAULT_HOST_TIMEOUT, HostHandler, HostSession};
use super::worker::Worker;
use super::{
    PythonCall, PythonConfig, PythonError, PythonOutput, StreamEvent, ToolParam, ToolSignature,
};

/// How long a worker whose streaming call was dropped (the client went away, the line ran out
/// of time) gets to stop its generator and answer before it is killed instead of reused.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A pool of long-lived Python workers. Cheap to clone; workers are killed on
/// [`shutdown`](PythonPool::shutdown) or when the last handle is dropped.
#[derive(Clone)]
pub struct PythonPool {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: PythonConfig,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Worker>>,
    shim: OnceCell<PathBuf>,
    /// The interpreter that started successfully, once known.
    python: Mutex<Option<PathBuf>>,
    closed: AtomicBool,
    /// Answers the host requests tools make (model calls); `None`: they are refused.
    host: Option<Arc<dyn HostHandler>>,
}

impl std::fmt::Debug for PythonPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonPool")
            .field("working_dir", &self.inner.cfg.working_dir)
            .field("size", &self.inner.cfg.size)
            .finish()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    op: &'static str,
    file: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kwargs: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    bypassed: &'a [String],
    /// Stream a generator the tool returns (see [`PythonCall::stream`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    /// Sent only when not promptflow's default, `basic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    message_format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Value>,
}

/// The error of a worker's reply (`{"ok": false, "error": {...}}`), for calls and for
/// describing a flex entry alike.
#[derive(Deserialize)]
pub(super) struct ErrorReply {
    pub(super) kind: String,
    #[serde(default, rename = "type")]
    pub(super) type_name: String,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) traceback: String,
    #[serde(default)]
    pub(super) found: Vec<String>,
    #[serde(default)]
    pub(super) stdout: String,
    #[serde(default)]
    pub(super) traces: Vec<Value>,
}

#[derive(Deserialize)]
struct CallReply {
    ok: bool,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    metrics: Vec<(String, Value)>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    traces: Vec<Value>,
    error: Option<ErrorReply>,
}

#[derive(Deserialize)]
struct InspectReply {
    ok: bool,
    #[serde(default)]
    function: String,
    #[serde(default)]
    params: Vec<ToolParam>,
    #[serde(default)]
    accepts_kwargs: bool,
    error: Option<ErrorReply>,
}

impl PythonPool {
    /// A pool for `cfg`; no process starts until the first call.
    pub fn new(cfg: PythonConfig) -> PythonPool {
        Self::build(cfg, None)
    }

    /// A pool whose tools can ask `host` for model calls (the host channel, see
    /// `python::host`).
    pub fn with_host(cfg: PythonConfig, host: Arc<dyn HostHandler>) -> PythonPool {
        Self::build(cfg, Some(host))
    }

    fn build(cfg: PythonConfig, host: Option<Arc<dyn HostHandler>>) -> PythonPool {
        let size = cfg.size.max(1);
        PythonPool {
            inner: Arc::new(Inner {
                cfg,
                permits: Arc::new(Semaphore::new(size)),
                idle: Mutex::new(Vec::with_capacity(size)),
                shim: OnceCell::new(),
                python: Mutex::new(None),
                closed: AtomicBool::new(false),
                host,
            }),
        }
    }

    /// The signature of the tool function in `file` (`function`, or its only `@tool`).
    pub async fn inspect(
        &self,
        file: &Path,
        function: Option<&str>,
    ) -> Result<ToolSignature, PythonError> {
        let request = Request {
            op: "inspect",
            file,
            function,
            kwargs: None,
            connections: None,
            bypassed: &[],
            stream: false,
            message_format: None,
            context: None,
        };
        self.round_trip(&request, None, None, |line, _| {
            let reply: InspectReply = parse(line)?;
            match (reply.ok, reply.error) {
                (true, _) => Ok(ToolSignature {
                    function: reply.function,
                    params: reply.params,
                    accepts_kwargs: reply.accepts_kwargs,
                }),
                (false, Some(e)) => Err(to_error(e, file, function)),
                (false, None) => Err(missing_error()),
            }
        })
        .await
    }

    /// Call a tool function with keyword arguments; waits for a free worker when all are busy.
    pub async fn call(&self, call: PythonCall) -> Result<PythonOutput, PythonError> {
        let request = Request {
            op: if call.flex { "call_flex" } else { "call" },
            file: &call.file,
            function: call.function.as_deref(),
            kwargs: Some(&call.kwargs),
            connections: (!call.connections.is_empty()).then_some(&call.connections),
            bypassed: &call.bypassed,
            stream: call.stream.is_some(),
            message_format: (call.message_format != crate::image::MessageFormat::Basic)
                .then(|| call.message_format.as_str()),
            context: call.context.as_deref(),
        };
        let function = call.function.as_deref();
        let mut session = self.inner.host.as_deref().map(|handler| HostSession {
            handler,
            node: &call.node,
            timeout: DEFAULT_HOST_TIMEOUT,
            calls: Vec::new(),
            requests: 0,
            streams: Vec::new(),
        });
        self.round_trip(
            &request,
            session.as_mut(),
            call.stream.as_ref(),
            |line, host_calls| {
                let reply: CallReply = parse(line)?;
                match (reply.ok, reply.error) {
                    (true, _) => Ok(PythonOutput {
                        host_calls,
                        output: reply.output,
                        metrics: reply
                            .metrics
                            .into_iter()
                            .map(|(k, v)| metric_value(&v).map(|v| (k, v)))
                            .collect::<Result<_, _>>()?,
                        stdout: reply.stdout,
                        traces: reply.traces,
                    }),
                    (false, Some(e)) => Err(match to_error(e, &call.file, function) {
                        // the model calls the tool made before it raised were made (and paid)
                        PythonError::Exception {
                            type_name,
                            message,
                            traceback,
                            stdout,
                            mut spent,
                        } => {
                            spent.host_calls = host_calls;
                            PythonError::Exception {
                                type_name,
                                message,
                                traceback,
                                stdout,
                                spent,
                            }
                        }
                        other => other,
                    }),
                    (false, None) => Err(missing_error()),
                }
            },
        )
        .await
    }

    /// Start the pool's workers now, in parallel, each importing `files` (tool file and
    /// function), so the first lines of a run do not wait for interpreters to start (and a
    /// `--line-timeout` does not count start-up).
    pub async fn warm(&self, files: &[(PathBuf, Option<String>)]) -> Result<(), PythonError> {
        let size = self.inner.cfg.size.max(1);
        let have = self.inner.idle.lock().map(|i| i.len()).unwrap_or(size);
        let started = futures::future::join_all((have..size).map(|_| self.start_worker())).await;
        for worker in started {
            let mut worker = worker?;
            for (file, function) in files {
                let request = Request {
                    op: "inspect",
                    file,
                    function: function.as_deref(),
                    kwargs: None,
                    connections: None,
                    bypassed: &[],
                    stream: false,
                    message_format: None,
                    context: None,
                };
                let mut bytes =
                    serde_json::to_vec(&request).map_err(|e| PythonError::Protocol {
                        message: format!("cannot encode the request for {}: {e}", file.display()),
                    })?;
                bytes.push(b'\n');
                worker.request(&bytes, None, None).await?;
            }
            self.put_back(worker);
        }
        Ok(())
    }

    /// Stop all idle workers and refuse new calls; calls in flight finish, then their workers stop.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.permits.close();
        let idle = match self.inner.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => Vec::new(),
        };
        futures::future::join_all(idle.into_iter().map(Worker::stop)).await;
    }

    async fn round_trip<T>(
        &self,
        request: &Request<'_>,
        mut host: Option<&mut HostSession<'_>>,
        stream: Option<&mpsc::Sender<StreamEvent>>,
        handle: impl FnOnce(&str, Vec<super::HostCall>) -> Result<T, PythonError>,
    ) -> Result<T, PythonError> {
        let mut bytes = serde_json::to_vec(request).map_err(|e| PythonError::Protocol {
            message: format!(
                "cannot encode the request for {}: {e}",
                request.file.display()
            ),
        })?;
        bytes.push(b'\n');
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PythonError::Shutdown)?;
        let worker = match self.take_idle() {
            Some(worker) => worker,
            None => self.start_worker().await?,
        };
        // Dropped midway (the caller's future is dropped), the lease stops a streaming call and
        // returns its worker to the pool; on error the worker is dropped, which kills it, and
        // the next call starts a fresh one.
        let mut lease = Lease {
            pool: self.clone(),
            worker: None,
            permit: Some(permit),
            salvage: request.stream,
        };
        let worker = lease.worker.insert(worker);
        let line = match worker.request(&bytes, host.as_deref_mut(), stream).await {
            Ok(line) => line,
            Err(e) => {
                lease.salvage = false;
                return Err(e);
            }
        };
        let calls = host
            .map(|h| std::mem::take(&mut h.calls))
            .unwrap_or_default();
        let result = handle(line, calls);
        if let Some(worker) = lease.worker.take() {
            self.put_back(worker);
        }
        result
    }

    fn take_idle(&self) -> Option<Worker> {
        let mut idle = self.inner.idle.lock().ok()?;
        while let Some(mut worker) = idle.pop() {
            if !worker.has_exited() {
                return Some(worker);
            }
        }
        None
    }

    fn put_back(&self, worker: Worker) {
        if self.inner.closed.load(Ordering::SeqCst) {
            return; // dropped: killed
        }
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.push(worker);
        }
    }

    async fn start_worker(&self) -> Result<Worker, PythonError> {
        let shim = self
            .inner
            .shim
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(super::install_shim)
                    .await
                    .map_err(|e| PythonError::Protocol {
                        message: format!("installing the promptflow shim panicked: {e}"),
                    })?
            })
            .await?;
        let cfg = &self.inner.cfg;
        let known = self.inner.python.lock().ok().and_then(|p| p.clone());
        let candidates = match known {
            Some(p) => vec![p],
            None => python_candidates(cfg),
        };
        let mut last_err = None;
        for python in candidates {
            match Worker::spawn(&python, shim, &cfg.working_dir, &cfg.env).await {
                Ok(worker) => {
                    if let Ok(mut known) = self.inner.python.lock() {
                        *known = Some(python);
                    }
                    return Ok(worker);
                }
                Err(PythonError::Spawn { python, source })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    // keep the first name tried for the message ("python3 not found")
                    last_err.get_or_insert(PythonError::Spawn { python, source });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(PythonError::Spawn {
            python: "python3".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no interpreter to try"),
        }))
    }
}

/// A worker taken from the pool for one call, with the permit it runs under.
struct Lease {
    pool: PythonPool,
    worker: Option<Worker>,
    permit: Option<OwnedSemaphorePermit>,
    /// Whether a worker still here when the lease drops (its call's future was dropped) is
    /// stopped and reused rather than killed: for streaming calls, which are dropped whenever a
    /// client hangs up.
    salvage: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut worker) = self.worker.take() else {
            return;
        };
        if !self.salvage {
            return; // dropped: killed
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool.clone();
        // The permit stays taken until the worker is back (or dead), so the pool never runs
        // more workers than its size.
        let permit = self.permit.take();
        runtime.spawn(async move {
            let _permit = permit;
            let stopped = tokio::time::timeout(ABANDON_GRACE, worker.abandon())
                .await
                .unwrap_or(false);
            if stopped {
                pool.put_back(worker);
            }
        });
    }
}

/// `cfg.python`, else `FLOW_PYTHON`, else `python3` then `python`.
fn python_candidates(cfg: &PythonConfig) -> Vec<PathBuf> {
    if let Some(p) = &cfg.python {
        return vec![p.clone()];
    }
    match std::env::var_os("FLOW_PYTHON") {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => vec![PathBuf::from("python3"), PathBuf::from("python")],
    }
}

fn parse<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, PythonError> {
    serde_json::from_str(line).map_err(|e| PythonError::Protocol {
        message: format!(
            "invalid reply from the worker ({e}): {}",
            truncate(line, 200)
        ),
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn missing_error() -> PythonError {
    PythonError::Protocol {
        message: "the worker reported a failure without an error".into(),
    }
}

/// A metric value: a JSON number, or `"nan"`/`"inf"`/`"-inf"` for non-finite floats.
fn metric_value(v: &Value) -> Result<f64, PythonError> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| PythonError::Protocol {
        message: format!("metric value {v} is not a number"),
    })
}

fn to_error(e: ErrorReply, file: &Path, function: Option<&str>) -> PythonError {
    let file = file.to_path_buf();
    match e.kind.as_str() {
        "not_found" => PythonError::NotFound { file },
        "load" => PythonError::Load {
            file,
            type_name: e.type_name,
            message: e.message,
            traceback: e.traceback,
        },
        "no_tool" => PythonError::NoTool { file },
        "ambiguous" => PythonError::AmbiguousTool {
            file,
            found: e.found,
        },
        "function_not_found" => PythonError::FunctionNotFound {
            file,
            function: function.unwrap_or_default().to_string(),
            found: e.found,
        },
        "cancelled" => PythonError::Protocol {
            message: "the stream's reader went away, so the generator was closed".into(),
        },
        "exception" => PythonError::Exception {
            type_name: e.type_name,
            message: e.message,
            traceback: e.traceback,
            stdout: e.stdout,
            spent: Box::new(super::error::CallSpent {
                traces: e.traces,
                host_calls: Vec::new(),
            }),
        },
        _ => PythonError::Protocol { message: e.message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_decode_non_finite() {
        assert_eq!(metric_value(&serde_json::json!(0.5)).unwrap(), 0.5);
        assert_eq!(metric_value(&serde_json::json!(3)).unwrap(), 3.0);
        assert!(metric_value(&serde_json::json!("nan")).unwrap().is_nan());
        assert_eq!(
            metric_value(&serde_json::json!("-inf")).unwrap(),
            f64::NEG_INFINITY
        );
        assert!(metric_value(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn python_from_config_wins() {
        let cfg = PythonConfig {
            python: Some(PathBuf::from("/opt/py/bin/python3.12")),
            working_dir: PathBuf::from("."),
            size: 1,
            env: vec![],
        };
        assert_eq!(
            python_candidates(&cfg),
            vec![PathBuf::from("/opt/py/bin/python3.12")]
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
