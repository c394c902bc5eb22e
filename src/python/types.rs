//! Data exchanged with the Python worker pool.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

/// How to start Python workers.
#[derive(Debug, Clone)]
pub struct PythonConfig {
    /// The interpreter; `None` means `FLOW_PYTHON`, else `python3`, else `python`.
    pub python: Option<PathBuf>,
    /// The flow directory: the workers' working directory, also on `sys.path`.
    pub working_dir: PathBuf,
    /// The most workers to run at once (at least 1).
    pub size: usize,
    /// Extra environment variables (the flow's `environment_variables`).
    pub env: Vec<(String, String)>,
}

/// The signature of a `@tool` function.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ToolSignature {
    /// The function's name.
    pub function: String,
    /// Its named parameters, in order (`*args`/`**kwargs` excluded).
    pub params: Vec<ToolParam>,
    /// Whether it takes `**kwargs`.
    pub accepts_kwargs: bool,
}

/// One parameter of a `@tool` function.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ToolParam {
    /// The parameter name.
    pub name: String,
    /// Whether it has a default value.
    pub has_default: bool,
    /// The connection class its annotation names, e.g. `AzureOpenAIConnection`.
    pub connection_type: Option<String>,
    /// Every connection class the annotation accepts: one, or each member of a `Union[...]`.
    #[serde(default)]
    pub connection_types: Vec<String>,
    /// The annotation's name, e.g. `str`, when there is one.
    pub annotation: Option<String>,
    /// A class-based tool's `__init__` parameter (its value makes the instance; promptflow
    /// requires a literal), not one of the `@tool` method's.
    #[serde(default)]
    pub init: bool,
}

/// One call of a `@tool` function.
#[derive(Debug, Clone, Default)]
pub struct PythonCall {
    /// The tool file (relative to the working directory, or absolute).
    pub file: PathBuf,
    /// The function to call; `None` means the file's only `@tool` function.
    pub function: Option<String>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Connection parameters: name → connection dict (`name`, `api_key`, `api_base`,
    /// `api_type`, `api_version`, `extras`; optionally `secrets`/`configs` for custom ones),
    /// turned into the connection class the parameter's annotation names
    /// (`CustomConnection` when it names none).
    pub connections: Map<String, Value>,
    /// Parameters whose upstream node was bypassed: they take their Python default, else `None`.
    pub bypassed: Vec<String>,
    /// A flex flow's entry: the return value becomes the outputs (a dict as is, a dataclass's
    /// fields, anything else `{"output": value}`).
    pub flex: bool,
    /// The node making the call (named in host requests' messages and cache descriptions).
    pub node: String,
    /// What the call's `promptflow.tracing._operation_context.OperationContext` holds: run mode,
    /// root run id, line number, ... ([`crate::executor`] makes it per line).
    pub context: Option<std::sync::Arc<Value>>,
    /// The flow's message format: in `openai-vision`, `{"type": "text", "text": ...}` dicts
    /// reach the tool as `promptflow.contracts.multimedia.Text`, and a `Text` it returns goes
    /// back as that dict.
    pub message_format: crate::image::MessageFormat,
    /// Where a generator the tool returns streams to, piece by piece as it yields (`flow serve`
    /// with an event stream): `None` joins it into one string, as promptflow does for a run.
    /// The channel should be bounded: the worker waits for each piece to be queued before it
    /// takes the next from the generator, and a closed channel stops the generator.
    pub stream: Option<tokio::sync::mpsc::Sender<StreamEvent>>,
}

/// What a streaming call sends before it returns (see [`PythonCall::stream`]).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A flex entry returned a dict (or dataclass) with one generator field: its other fields,
    /// sent before the first piece.
    Head(Map<String, Value>),
    /// One piece the generator yielded, as JSON. `field` is the flex output it belongs to
    /// (`output` for an entry that returned the generator itself); `None` for a DAG node's
    /// own output.
    Piece { field: Option<String>, value: Value },
}

/// What a successful call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonOutput {
    /// The return value as JSON (see the crate docs for how non-JSON values are converted;
    /// NaN and the infinities are [`crate::non_finite`] markers).
    pub output: Value,
    /// Metrics logged with `log_metric` during the call, in order.
    pub metrics: Vec<(String, f64)>,
    /// What the tool printed to `sys.stdout`.
    pub stdout: String,
    /// Model calls the tool made through flow (the host channel), in order.
    pub host_calls: Vec<super::HostCall>,
    /// The `@trace`d calls made during the call (nested spans, capped by the worker).
    pub traces: Vec<Value>,
}
