//! The host channel: Python code running in a worker asks `flow` to do something for it (a
//! model call, a template render) in the middle of a tool call.
//!
//! The worker writes one `{"host": "<op>", ...}` line on the protocol channel and blocks until
//! `flow` writes one reply line: `{"ok": true, "result": ...}` or `{"ok": false, "error":
//! {"type": ..., "message": ...}}`. The pool answers through the [`HostHandler`] it was given
//! (the executor's, which sends model calls through its providers, limiter and cache), then
//! keeps reading for the tool's own reply. What each answered call cost is collected as a
//! [`HostCall`] and returned with the tool's output, so the node that made it records it.
//!
//! A model call asked for with `"stream": true` answers at once with a stream id; the worker
//! then asks `{"host": "stream_next", "id": N}` for what the model wrote since (at least one
//! piece, or the end with the call's result), so a generator over the reply yields its pieces as
//! the model writes them. The model call makes progress only while a `stream_next` waits: a
//! consumer that reads slowly holds it back.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

/// The key of the answer that starts a stream: `{"__flow_stream__": <id>}`.
const STREAM_KEY: &str = "__flow_stream__";

/// The longest host request line accepted (a request with a big prompt fits easily).
pub const MAX_HOST_REQUEST_BYTES: usize = 16 << 20;

/// The most host requests one tool call may make.
pub const MAX_HOST_CALLS_PER_TOOL_CALL: usize = 10_000;

/// How long `flow` works on one host request at most, by default (the provider's own request
/// timeout and retries apply inside it).
pub const DEFAULT_HOST_TIMEOUT: Duration = Duration::from_secs(900);

/// What one answered host request did, for the node's record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostCall {
    /// The operation (`chat`, `completion`, `embedding`, `prompty`, ...).
    pub op: String,
    /// Token counts, when a model was called.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Whether a model was called (or its answer taken from the cache).
    pub model_call: bool,
    /// The model that answered.
    pub model: Option<String>,
    /// The answer came from the response cache.
    pub cached: bool,
    /// What the call cost, when its price is known.
    pub cost_usd: Option<f64>,
    /// For a cached answer: what it would have cost.
    pub saved_usd: Option<f64>,
    /// Retries the request needed.
    pub retries: u32,
}

/// A host request that failed: the Python exception's type name and message.
#[derive(Debug, Clone, PartialEq)]
pub struct HostError {
    /// The exception class raised in Python (one of `promptflow.tools.exception`'s, or a
    /// builtin such as `ValueError`).
    pub type_name: String,
    pub message: String,
}

impl HostError {
    pub fn new(type_name: &str, message: impl Into<String>) -> Self {
        HostError {
            type_name: type_name.to_string(),
            message: message.into(),
        }
    }
}

/// A successful answer: the value handed to Python, and what the call cost.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReply {
    pub result: Value,
    pub call: Option<HostCall>,
}

/// The future a [`HostHandler`] returns.
pub type HostFuture<'a> = Pin<Box<dyn Future<Output = Result<HostReply, HostError>> + Send + 'a>>;

/// Where a streaming host request's text goes as the model writes it.
pub type HostDeltas<'a> = Box<dyn Fn(&str) + Send + Sync + 'a>;

/// Whether a host request asks for a streamed answer (see [`HostHandler::streams`]).
pub type HostWants<'a> = Pin<Box<dyn Future<Output = Result<bool, HostError>> + Send + 'a>>;

/// Answers host requests. `node` names the node whose tool made the request (for messages and
/// cache descriptions), `op` is the request's `host` field, `args` the whole request object.
pub trait HostHandler: Send + Sync {
    fn handle<'a>(&'a self, node: &'a str, op: &'a str, args: Value) -> HostFuture<'a>;

    /// [`handle`](Self::handle), sending the text to `on_delta` as the model writes it (a model
    /// call asked for with `stream=True`). By default nothing is sent before the answer.
    fn handle_streaming<'a>(
        &'a self,
        node: &'a str,
        op: &'a str,
        args: Value,
        on_delta: HostDeltas<'a>,
    ) -> HostFuture<'a> {
        drop(on_delta);
        self.handle(node, op, args)
    }

    /// For a request sent with `"stream": "auto"` (a `Prompty` call, whose file says whether it
    /// streams): whether its answer streams. By default it does not.
    fn streams<'a>(&'a self, op: &'a str, args: &'a Value) -> HostWants<'a> {
        let _ = (op, args);
        Box::pin(async { Ok(false) })
    }
}

/// A streaming model call in progress (see the module docs).
pub(crate) struct HostStream<'a> {
    future: HostFuture<'a>,
    deltas: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Whether any text was handed out (a cached answer comes whole at the end).
    streamed: bool,
}

/// One tool call's use of the host channel: the handler, the node, and the calls answered.
pub(crate) struct HostSession<'a> {
    pub handler: &'a dyn HostHandler,
    pub node: &'a str,
    pub timeout: Duration,
    pub calls: Vec<HostCall>,
    pub requests: usize,
    /// Streaming model calls, by id (`None` once finished).
    pub streams: Vec<Option<HostStream<'a>>>,
}

impl<'a> HostSession<'a> {
    /// Answer one host request line with one reply line (ending in `\n`).
    pub(crate) async fn answer(&mut self, line: &str) -> Vec<u8> {
        // Reading a stream on is part of the call that started it, not another request.
        if !line.starts_with(r#"{"host":"stream_next""#) {
            self.requests += 1;
        }
        let reply = if line.len() > MAX_HOST_REQUEST_BYTES {
            Err(HostError::new(
                "ValueError",
                format!(
                    "a request to flow of {} bytes is larger than {} MiB",
                    line.len(),
                    MAX_HOST_REQUEST_BYTES >> 20
                ),
            ))
        } else if self.requests > MAX_HOST_CALLS_PER_TOOL_CALL {
            Err(HostError::new(
                "RuntimeError",
                format!(
                    "one tool call made more than {MAX_HOST_CALLS_PER_TOOL_CALL} model calls through flow"
                ),
            ))
        } else {
            self.dispatch(line).await
        };
        encode_reply(reply, &mut self.calls)
    }

    async fn dispatch(&mut self, line: &str) -> Result<HostReply, HostError> {
        let args: Value = serde_json::from_str(line)
            .map_err(|e| HostError::new("ValueError", format!("invalid request to flow: {e}")))?;
        let op = args
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if op == "stream_next" {
            let id = args.get("id").and_then(Value::as_u64).unwrap_or(u64::MAX);
            return match tokio::time::timeout(self.timeout, self.stream_next(id)).await {
                Ok(r) => r,
                Err(_) => Err(HostError::new(
                    "TimeoutError",
                    format!(
                        "the model wrote nothing for {}s of a streamed reply",
                        self.timeout.as_secs()
                    ),
                )),
            };
        }
        let streaming_op = match op.as_str() {
            "chat" => Some("chat"),
            "completion" => Some("completion"),
            "prompty" => Some("prompty"),
            _ => None,
        };
        let stream = match (streaming_op, args.get("stream")) {
            (Some(_), Some(Value::Bool(true))) => true,
            (Some(op), Some(Value::String(s))) if s == "auto" => {
                self.handler.streams(op, &args).await?
            }
            _ => false,
        };
        if let (Some(op), true) = (streaming_op, stream) {
            let (tx, deltas) = tokio::sync::mpsc::unbounded_channel();
            let on_delta: HostDeltas<'a> = Box::new(move |text: &str| {
                let _ = tx.send(text.to_string());
            });
            let future = self.handler.handle_streaming(self.node, op, args, on_delta);
            self.streams.push(Some(HostStream {
                future,
                deltas,
                streamed: false,
            }));
            return Ok(HostReply {
                result: serde_json::json!({STREAM_KEY: self.streams.len() - 1}),
                call: None,
            });
        }
        match tokio::time::timeout(self.timeout, self.handler.handle(self.node, &op, args)).await {
            Ok(r) => r,
            Err(_) => Err(HostError::new(
                "TimeoutError",
                format!(
                    "flow did not finish the `{op}` request within {}s",
                    self.timeout.as_secs()
                ),
            )),
        }
    }

    /// The next pieces of streaming call `id`: what the model wrote since the last ask (waiting
    /// for at least one), or the end: `{"pieces": [...], "done": true, "streamed": bool,
    /// "result": <the whole answer>}`, with what the call cost.
    async fn stream_next(&mut self, id: u64) -> Result<HostReply, HostError> {
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| self.streams.get_mut(i))
            .ok_or_else(|| HostError::new("ValueError", format!("no model stream {id}")))?;
        let Some(stream) = slot.as_mut() else {
            return Err(HostError::new(
                "ValueError",
                format!("model stream {id} is over"),
            ));
        };
        let mut pieces = Vec::new();
        while let Ok(text) = stream.deltas.try_recv() {
            pieces.push(Value::String(text));
        }
        if pieces.is_empty() {
            tokio::select! {
                biased;
                text = stream.deltas.recv() => {
                    if let Some(text) = text {
                        pieces.push(Value::String(text));
                    }
                }
                done = &mut stream.future => {
                    while let Ok(text) = stream.deltas.try_recv() {
                        pieces.push(Value::String(text));
                    }
                    let streamed = stream.streamed || !pieces.is_empty();
                    *slot = None;
                    let reply = done?;
                    return Ok(HostReply {
                        result: serde_json::json!({
                            "pieces": pieces,
                            "done": true,
                            "streamed": streamed,
                            "result": reply.result,
                        }),
                        call: reply.call,
                    });
                }
            }
        }
        stream.streamed = true;
        Ok(HostReply {
            result: serde_json::json!({"pieces": pieces, "done": false}),
            call: None,
        })
    }
}

/// The reply line when no handler is there (a request made while a tool file is imported).
pub(crate) fn no_host_reply() -> Vec<u8> {
    encode_reply(
        Err(HostError::new(
            "RuntimeError",
            "model calls through flow are only available while a tool runs, not while its file is imported",
        )),
        &mut Vec::new(),
    )
}

fn encode_reply(reply: Result<HostReply, HostError>, calls: &mut Vec<HostCall>) -> Vec<u8> {
    let value = match reply {
        Ok(r) => {
            if let Some(call) = r.call {
                calls.push(call);
            }
            serde_json::json!({"ok": true, "result": r.result})
        }
        Err(e) => {
            serde_json::json!({"ok": false, "error": {"type": e.type_name, "message": e.message}})
        }
    };
    let mut bytes = serde_json::to_vec(&value).unwrap_or_else(|_| {
        br#"{"ok":false,"error":{"type":"RuntimeError","message":"flow could not encode its reply"}}"#
            .to_vec()
    });
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl HostHandler for Echo {
        fn handle<'a>(&'a self, node: &'a str, op: &'a str, args: Value) -> HostFuture<'a> {
            Box::pin(async move {
                if op == "fail" {
                    return Err(HostError::new("WrappedOpenAIError", "no"));
                }
                Ok(HostReply {
                    result: serde_json::json!({"node": node, "op": op, "args": args}),
                    call: Some(HostCall {
                        op: op.to_string(),
                        total_tokens: 3,
                        ..HostCall::default()
                    }),
                })
            })
        }
    }

    #[tokio::test]
    async fn a_session_answers_and_counts_calls() {
        let mut s = HostSession {
            handler: &Echo,
            node: "n",
            timeout: Duration::from_secs(5),
            calls: Vec::new(),
            requests: 0,
            streams: Vec::new(),
        };
        let ok: Value =
            serde_json::from_slice(&s.answer(r#"{"host":"chat","x":1}"#).await).unwrap();
        assert_eq!(ok["ok"], true);
        assert_eq!(ok["result"]["node"], "n");
        assert_eq!(ok["result"]["args"]["x"], 1);
        let bad: Value = serde_json::from_slice(&s.answer(r#"{"host":"fail"}"#).await).unwrap();
        assert_eq!(bad["error"]["type"], "WrappedOpenAIError");
        let junk: Value = serde_json::from_slice(&s.answer("{not json").await).unwrap();
        assert_eq!(junk["error"]["type"], "ValueError");
        assert_eq!(s.calls.len(), 1);
    }
}
