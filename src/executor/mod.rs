//! The executor: runs one line of a flow as one future, each node as soon as the nodes it
//! references are done, independent nodes concurrently; then the aggregation nodes once.
//!
//! Everything that can be prepared before the first line is: templates are compiled, connections
//! resolved, Python tool signatures inspected. A line then costs only rendering, requests and
//! bookkeeping.

mod host;
mod inputs;
mod line;
mod node;
mod prepare;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use inputs::load_images;
pub use prepare::{PrepareError, check_templates};

use crate::cache::ResponseCache;
use crate::connection::{Connection, EnvVars};
use crate::cost::PriceTable;
use crate::dag::Dag;
use crate::model::Flow;
use crate::model::{NodeKind, Reference, ValueSource};
use crate::provider::{DeltaFn, LlmClient};
use crate::python::PythonPool;
use crate::template::PromptTemplate;

/// How the executor reaches the outside world.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Variables from `.env` and the environment, for connections.
    pub env: EnvVars,
    /// Route every connection to the offline `echo` provider.
    pub offline: bool,
    /// The Python interpreter (default: `FLOW_PYTHON`, else `python3`).
    pub python: Option<PathBuf>,
    /// How many Python workers may run at once.
    pub python_workers: usize,
    /// Timeout of one model request.
    pub request_timeout: Duration,
    /// Retries of a model request on 5xx/timeouts/connection errors (0 also stops 429 retries).
    pub max_retries: u32,
    /// Model requests in flight per endpoint at most (the adaptive limiter starts here and
    /// backs off when the endpoint rate-limits).
    pub max_in_flight: usize,
    /// The response cache, when model answers may be reused (`None`: every call is made).
    pub cache: Option<ResponseCache>,
    /// Prices of models, for the cost of each call.
    pub prices: Arc<PriceTable>,
    /// Which repeated sample this is (`flow eval --repeat`): each sample's model requests are
    /// distinct cache entries, so samples are real requests yet re-runs stay cached.
    pub sample: Option<u32>,
    /// A model client to share with other executors (an experiment's runs): one connection
    /// pool and one adaptive limiter per endpoint for all of them. `None`: a client of its own.
    pub client: Option<LlmClient>,
}

impl ExecutorOptions {
    /// Defaults for a given environment.
    pub fn new(env: EnvVars) -> Self {
        ExecutorOptions {
            env,
            offline: false,
            python: None,
            python_workers: 4,
            request_timeout: Duration::from_secs(120),
            max_retries: 5,
            max_in_flight: 64,
            cache: None,
            prices: Arc::new(PriceTable::builtin()),
            sample: None,
            client: None,
        }
    }

    /// The settings of the model client these options call for (timeout, retries, requests in
    /// flight per endpoint).
    pub fn client_config(&self) -> crate::provider::ClientConfig {
        crate::provider::ClientConfig::for_requests(
            self.request_timeout,
            self.max_retries,
            self.max_in_flight,
        )
    }
}

/// Where the output of one node goes while it is made: `node` is the index of the node in the
/// flow (see [`Executor::stream_output`]). An LLM node sends each text delta to `on_delta`; a
/// Python node (a flex entry) whose tool returns a generator sends each piece it yields to
/// `pieces` (bounded: the generator waits while it is full; closed: the generator is stopped).
pub struct LineStream<'a> {
    pub node: usize,
    pub on_delta: DeltaFn<'a>,
    pub pieces: Option<tokio::sync::mpsc::Sender<crate::python::StreamEvent>>,
}

/// A flow output that can be streamed: it is exactly the text of one LLM node, or the whole
/// output of a Python node (a flex flow's entry), which streams when its tool returns a
/// generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOutput {
    /// The flow output's name (a flex flow's: `output`; the pieces of a generator field of the
    /// dict it returns name their field).
    pub output: String,
    /// The index of the node in the flow.
    pub node: usize,
}

/// The flow output that can be streamed, as promptflow streams a generator output: a flex
/// flow's entry; else the first output (chat outputs first) whose reference is the whole output
/// of a line-level LLM node that requests no tools or functions (its output is then text) or of
/// a line-level Python node (streamed when its tool returns a generator).
pub fn stream_output(flow: &Flow) -> Option<StreamOutput> {
    if flow.flex.is_some() {
        return flow
            .nodes
            .iter()
            .position(|n| !n.aggregation)
            .map(|node| StreamOutput {
                output: "output".into(),
                node,
            });
    }
    let mut outputs: Vec<_> = flow.line_outputs().map(|(_, o)| o).collect();
    outputs.sort_by_key(|o| !o.is_chat_output);
    outputs.into_iter().find_map(|o| {
        let ValueSource::Reference(Reference::NodeOutput { node, path }) = &o.reference else {
            return None;
        };
        if !path.is_empty() || o.ty == Some(crate::model::ValueType::Object) {
            return None;
        }
        let index = flow.nodes.iter().position(|n| &n.name == node)?;
        let n = &flow.nodes[index];
        let calls_tools = ["tools", "functions"]
            .iter()
            .any(|k| match n.inputs.get(*k) {
                None | Some(ValueSource::Literal(Value::Null)) => false,
                Some(ValueSource::Literal(Value::String(s))) => !s.trim().is_empty(),
                Some(_) => true,
            });
        let streams = match n.kind {
            NodeKind::Llm => !calls_tools,
            NodeKind::Python => true,
            NodeKind::Prompt => false,
        };
        (streams && !n.aggregation).then(|| StreamOutput {
            output: o.name.clone(),
            node: index,
        })
    })
}

/// A node ready to run.
pub(crate) enum Prepared {
    Llm {
        template: Arc<PromptTemplate>,
        connection: Arc<Connection>,
        /// For a `.prompty`: how its reply becomes its output.
        reply: Option<PromptyReply>,
    },
    Prompt {
        template: Arc<PromptTemplate>,
    },
    Python {
        file: PathBuf,
        function: Option<String>,
        /// Parameters with a default value (they keep it when their input is bypassed).
        defaults: Vec<String>,
        /// Connection parameters: name → the connection as Python sees it.
        connections: Map<String, Value>,
        /// Literal inputs of `Image`-annotated parameters, loaded as images when the flow is
        /// prepared (promptflow's tool resolver makes them `Image` objects): name → image value.
        images: Map<String, Value>,
    },
    /// A package tool flow runs itself, through the same handler as Python tools' model calls.
    Package {
        tool: PackageTool,
        host: Arc<host::ModelHost>,
    },
}

/// A promptflow-tools package tool flow runs itself (`model::NATIVE_PACKAGE_TOOLS`).
#[derive(Debug, Clone)]
pub(crate) struct PackageTool {
    /// The tool as the node names it.
    pub tool: String,
    /// `chat`, `completion` or `embedding`.
    pub op: &'static str,
    /// promptflow-tools' Azure OpenAI tool (`deployment_name`), not the OpenAI one (`model`).
    pub azure: bool,
    /// A `custom_llm` node's prompt: its source file's text.
    pub prompt: Option<String>,
}

impl PackageTool {
    pub(crate) fn of(tool: &str) -> Self {
        let op = if tool.ends_with(".embedding") {
            "embedding"
        } else if tool.ends_with(".completion") {
            "completion"
        } else {
            "chat"
        };
        PackageTool {
            tool: tool.to_string(),
            op,
            azure: tool.starts_with("promptflow.tools.aoai.")
                || tool.starts_with("promptflow.tools.aoai_gpt4v."),
            prompt: None,
        }
    }
}

/// How a `.prompty`'s reply becomes its output, as promptflow formats it: with
/// `response_format: {type: json_object}` the reply is parsed as JSON, and with `outputs:` only
/// those keys are kept (a missing one fails the line). With `model.response: all` the output is
/// the whole response body instead, as the endpoint sent it (`json` and `keys` unused).
#[derive(Debug, Clone, Default)]
pub(crate) struct PromptyReply {
    pub json: bool,
    pub keys: Vec<String>,
    pub all: bool,
}

/// Runs lines of one flow. Cheap to share across tasks (`&Executor` is enough).
pub struct Executor {
    pub(crate) flow: Arc<Flow>,
    pub(crate) dag: Dag,
    pub(crate) prepared: Vec<Prepared>,
    pub(crate) llm: LlmClient,
    pub(crate) python: Option<PythonPool>,
    pub(crate) cache: Option<ResponseCache>,
    pub(crate) prices: Arc<PriceTable>,
    pub(crate) sample: Option<u32>,
    /// The batch run the lines belong to, if any ([`Executor::set_batch_run`]).
    pub(crate) batch_run: std::sync::Mutex<Option<BatchRunContext>>,
    /// The flow copied with its `additional_includes`, the Python workers' working directory
    /// (kept for the executor's life, removed after).
    pub(crate) _includes_dir: Option<prepare::IncludesDir>,
}

/// The batch run an executor's lines belong to, as promptflow's operation context says it.
#[derive(Debug, Clone)]
pub(crate) struct BatchRunContext {
    /// The run's name (promptflow's batch run id).
    pub run: String,
    /// `Run` when a column mapping reads a base run's outputs (`${run.outputs...}`), else
    /// `Data`, as promptflow's `set_batch_input_source_from_inputs_mapping` decides it.
    pub input_source: &'static str,
}

impl Executor {
    /// Mark the lines run from now on as lines of batch run `run` (their Python code's
    /// `OperationContext` says `run_mode: Batch`, `root_run_id: run`); `mapping` is the run's
    /// column mapping as written (`in=${run.outputs.x}`).
    pub fn set_batch_run(&self, run: &str, mapping: &[String]) {
        let from_run = mapping.iter().any(|m| {
            m.split_once('=')
                .is_some_and(|(_, v)| v.trim().starts_with("${run.outputs"))
        });
        let context = BatchRunContext {
            run: run.to_string(),
            input_source: if from_run { "Run" } else { "Data" },
        };
        if let Ok(mut slot) = self.batch_run.lock() {
            *slot = Some(context);
        }
    }

    /// What promptflow's executor puts in the `OperationContext` of a line (`line` given) or of
    /// the aggregation (`None`): `flow_id` promptflow's constant `default_flow_id`;
    /// `root_run_id` the batch run's name in a batch, else a fresh UUID per line (promptflow's
    /// line run id of `pf flow test`); `run_mode` `Batch` or `Test`; the line number and
    /// `batch_input_source` in a batch; `execution_target` `flex` or `dag`.
    pub(crate) fn operation_context(&self, line: Option<usize>) -> Arc<Value> {
        let batch = self.batch_run.lock().ok().and_then(|b| b.clone());
        let target = if self.flow.flex.is_some() {
            "flex"
        } else {
            "dag"
        };
        let mut context = Map::new();
        context.insert("flow_id".into(), Value::from("default_flow_id"));
        context.insert("execution_target".into(), Value::from(target));
        context.insert(
            "user_agent".into(),
            Value::from(format!("flow/{}", env!("CARGO_PKG_VERSION"))),
        );
        let mut otel = Map::new();
        otel.insert("execution_target".into(), Value::from(target));
        match batch {
            Some(b) => {
                context.insert("run_mode".into(), Value::from("Batch"));
                context.insert("root_run_id".into(), Value::from(b.run.clone()));
                context.insert("batch_input_source".into(), Value::from(b.input_source));
                otel.insert("batch_run_id".into(), Value::from(b.run));
                match line {
                    Some(n) => {
                        otel.insert("line_number".into(), Value::from(n));
                    }
                    None => {
                        otel.insert("is_aggregation".into(), Value::Bool(true));
                    }
                }
            }
            None => {
                let id = uuid4();
                context.insert("run_mode".into(), Value::from("Test"));
                context.insert("root_run_id".into(), Value::from(id.clone()));
                match line {
                    Some(_) => {
                        otel.insert("line_run_id".into(), Value::from(id));
                    }
                    None => {
                        otel.insert("is_aggregation".into(), Value::Bool(true));
                    }
                }
            }
        }
        context.insert("_otel_attributes".into(), Value::Object(otel));
        Arc::new(Value::Object(context))
    }

    /// The flow this executor runs.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The validated DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// Names of the line-level nodes that aggregation nodes reference: the only node results a
    /// batch run must keep until the end.
    pub fn aggregation_dependencies(&self) -> std::collections::HashSet<String> {
        let mut names = std::collections::HashSet::new();
        for &i in &self.dag.aggregation_nodes {
            for d in self.flow.nodes[i].dependencies() {
                if self.flow.node(d).is_some_and(|n| !n.aggregation) {
                    names.insert(d.to_string());
                }
            }
        }
        names
    }

    /// The flow output that can be streamed token by token (see [`stream_output`]).
    pub fn stream_output(&self) -> Option<StreamOutput> {
        stream_output(&self.flow)
    }

    /// The response cache in use, if any.
    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_ref()
    }

    /// Stop the Python workers.
    pub async fn shutdown(&self) {
        if let Some(p) = &self.python {
            p.shutdown().await;
        }
    }
}

/// A random (version 4) UUID, as Python's `str(uuid.uuid4())` prints it.
fn uuid4() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(yaml: &str) -> Flow {
        crate::model::parse_flow(std::path::Path::new("/tmp/flow.dag.yaml"), yaml)
            .map_err(|e| format!("{:?}", e.diagnostics))
            .unwrap()
    }

    const NODES: &str = "nodes:\n- name: a\n  type: llm\n  source: {type: code, path: a.jinja2}\n  inputs: {q: '${inputs.q}'}\n  connection: c\n  api: chat\n- name: p\n  type: python\n  source: {type: code, path: p.py}\n  inputs: {t: '${a.output}'}\n- name: t\n  type: llm\n  source: {type: code, path: a.jinja2}\n  inputs: {q: '${inputs.q}', tools: '[{\"type\": \"function\"}]'}\n  connection: c\n  api: chat\n";

    #[test]
    fn the_streamed_output_is_the_whole_text_of_an_llm_node() {
        let head = "inputs:\n  q: {type: string}\n";
        // The chat output first, even when declared last.
        let f = flow(&format!(
            "{head}outputs:\n  post: {{type: string, reference: '${{p.output}}'}}\n  raw: {{type: string, reference: '${{a.output}}'}}\n  answer: {{type: string, reference: '${{a.output}}', is_chat_output: true}}\n{NODES}"
        ));
        assert_eq!(
            stream_output(&f),
            Some(StreamOutput {
                output: "answer".into(),
                node: 0
            })
        );
        // A Python node's whole output streams (when its tool returns a generator).
        let f = flow(&format!(
            "{head}outputs:\n  tool: {{type: object, reference: '${{t.output}}'}}\n  post: {{type: string, reference: '${{p.output}}'}}\n{NODES}"
        ));
        assert_eq!(
            stream_output(&f),
            Some(StreamOutput {
                output: "post".into(),
                node: 1
            })
        );
        // A property path, or a node that calls tools, is not a stream.
        let f = flow(&format!(
            "{head}outputs:\n  part: {{type: string, reference: '${{p.output.x}}'}}\n  tool: {{type: object, reference: '${{t.output}}'}}\n{NODES}"
        ));
        assert_eq!(stream_output(&f), None);
    }
}
