//! `POST /score` with `Accept: text/event-stream`: Server-Sent Events in promptflow's format,
//! `data: {"<output>": "<piece of text>"}` per piece the model writes, then one event with the
//! other outputs. A flow with no streamable output sends one event holding all its outputs. A
//! line that fails or runs out of time after the stream began ends with an `event: error`
//! whose data is the JSON error.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::ServeState;
use super::error::ApiError;
use crate::executor::LineStream;
use crate::record::LineResult;

/// What the line's task sends to the response stream.
enum Piece {
    Delta(String),
    Done(Box<Result<LineResult, ApiError>>),
}

/// Aborts the line's task when the client goes away (the response stream is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run the line in a task and answer with its events as they come.
pub(super) fn respond(
    state: Arc<ServeState>,
    inputs: Map<String, Value>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (tx, rx) = mpsc::unbounded_channel::<Piece>();
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let state = task_state;
        let Some(executor) = state.executor.get() else {
            return;
        };
        let _in_flight = state.metrics.start();
        let started = Instant::now();
        // Logged when the task ends however it ends: a client that hangs up mid-stream aborts
        // the task, and the request is logged as 499 (client closed request).
        let mut log = StreamLog {
            state: state.clone(),
            started,
            status: 499,
            trace: None,
        };
        let delta_tx = tx.clone();
        let on_delta = move |text: &str| {
            let _ = delta_tx.send(Piece::Delta(text.to_string()));
        };
        let line_stream = state.stream.as_ref().map(|s| LineStream {
            node: s.node,
            on_delta: &on_delta,
        });
        let run = executor.run_line_streaming(0, &inputs, line_stream.as_ref());
        let (result, status, trace) =
            match tokio::time::timeout(state.config.request_timeout, run).await {
                Err(_) => {
                    state.metrics.record_timeout(started.elapsed());
                    let e = super::routes::timeout_error(&state);
                    let status = e.status.as_u16();
                    (Err(e), status, None)
                }
                Ok(mut line) => {
                    state.metrics.record_line(&line, started.elapsed());
                    let trace = super::routes::trace_line(&state, &headers, &line, true);
                    let format = executor.flow().message_format;
                    for v in line.outputs.values_mut() {
                        crate::image::to_response(v, format);
                    }
                    let status = match &line.error {
                        Some(e) => {
                            super::routes::log_failure(&state, e);
                            super::error::ApiError::from_line_error(e).status.as_u16()
                        }
                        None => 200,
                    };
                    (Ok(line), status, trace)
                }
            };
        log.status = status;
        log.trace = trace;
        let _ = tx.send(Piece::Done(Box::new(result)));
    });
    let stream_output = state.stream.as_ref().map(|s| s.output.clone());
    let events = EventStream {
        rx,
        _task: AbortOnDrop(task),
        stream_output,
        streamed: false,
        queued: VecDeque::new(),
        finished: false,
    };
    let body = stream::unfold(events, |mut s| async move {
        let event = s.next_event().await?;
        Some((Ok::<Event, Infallible>(event), s))
    });
    let mut response = Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response();
    response.extensions_mut().insert(super::routes::Streamed);
    response
}

/// The request log line of a streamed request, written when its stream ends.
struct StreamLog {
    state: Arc<ServeState>,
    started: Instant,
    status: u16,
    trace: Option<String>,
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        super::routes::log_request(
            &self.state,
            "POST",
            "/score",
            self.status,
            self.started.elapsed(),
            self.trace.take(),
            true,
        );
    }
}

struct EventStream {
    rx: mpsc::UnboundedReceiver<Piece>,
    _task: AbortOnDrop,
    /// The output whose text streams, if any.
    stream_output: Option<String>,
    /// Whether any piece of the streamed output was sent.
    streamed: bool,
    queued: VecDeque<Event>,
    finished: bool,
}

impl EventStream {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            if self.finished {
                return None;
            }
            match self.rx.recv().await? {
                Piece::Delta(text) => {
                    let Some(name) = &self.stream_output else {
                        continue;
                    };
                    self.streamed = true;
                    return Some(data_event(name, Value::String(text)));
                }
                Piece::Done(result) => {
                    self.finished = true;
                    self.finish(*result);
                }
            }
        }
    }

    fn finish(&mut self, result: Result<LineResult, ApiError>) {
        let error = match result {
            Ok(line) => match &line.error {
                Some(e) => ApiError::from_line_error(e),
                None => {
                    let mut rest = line.outputs;
                    if let Some(name) = &self.stream_output {
                        let whole = rest.shift_remove(name);
                        if let (Some(whole), false) = (whole, self.streamed) {
                            // Nothing streamed (a cached answer, say): the whole text at once.
                            self.queued.push_back(data_event(name, whole));
                        }
                    }
                    if !rest.is_empty() {
                        self.queued.push_back(json_event(&Value::Object(rest)));
                    }
                    return;
                }
            },
            Err(e) => e,
        };
        self.queued
            .push_back(json_event(&error.body()).event("error"));
    }
}

fn data_event(name: &str, value: Value) -> Event {
    let mut m = Map::with_capacity(1);
    m.insert(name.to_string(), value);
    json_event(&Value::Object(m))
}

fn json_event(value: &Value) -> Event {
    Event::default().data(value.to_string())
}
