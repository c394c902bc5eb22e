//! `POST /score` with `Accept: text/event-stream`: Server-Sent Events in promptflow's format,
//! `data: {"<output>": <piece>}` per piece of text the model writes, or per piece a Python
//! generator yields, then one event with the other outputs (a flex entry's other outputs come
//! first, as promptflow sends them: they are known when it returns). A line that streamed
//! nothing sends one event holding all its outputs. A line that fails or runs out of time after
//! the stream began ends with an `event: error` whose data is the JSON error.

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
use crate::python::StreamEvent;
use crate::record::LineResult;

/// How many pieces of a Python generator wait for a slow client at most: past that the
/// generator is not resumed until the client reads (the worker waits for each piece to be
/// queued before it takes the next).
const PIECES_IN_FLIGHT: usize = 16;

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

/// Run the line in a task and answer with its events as they come. The answer starts with the
/// first event: a line that fails before it has sent anything is answered with its error's HTTP
/// status instead, as promptflow answers a request that fails before its stream starts.
pub(super) async fn respond(
    state: Arc<ServeState>,
    inputs: Map<String, Value>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (tx, rx) = mpsc::unbounded_channel::<Piece>();
    let (pieces_tx, pieces_rx) = mpsc::channel::<StreamEvent>(PIECES_IN_FLIGHT);
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
            pieces: Some(pieces_tx),
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
    let mut events = EventStream {
        rx,
        _task: AbortOnDrop(task),
        pieces: Some(pieces_rx),
        stream_output,
        streamed: None,
        sent_first: Vec::new(),
        queued: VecDeque::new(),
        finished: false,
    };
    let first = match events.next_item().await {
        Some(Item::Failed(error)) => {
            // Nothing was sent: the error is the answer. The line's task logged the request.
            let mut response = error.into_response();
            response.extensions_mut().insert(super::routes::Streamed);
            return response;
        }
        Some(Item::Event(event)) => Some(Ok::<Event, Infallible>(event)),
        None => None,
    };
    let rest = stream::unfold(events, |mut s| async move {
        let event = s.next_event().await?;
        Some((Ok::<Event, Infallible>(event), s))
    });
    let body = futures::StreamExt::chain(stream::iter(first), rest);
    let mut response = Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response();
    response.extensions_mut().insert(super::routes::Streamed);
    response
}

/// What the response stream has next: an event, or the line's error.
enum Item {
    Event(Event),
    Failed(ApiError),
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
    /// The pieces of a Python generator (`None` once closed).
    pieces: Option<mpsc::Receiver<StreamEvent>>,
    _task: AbortOnDrop,
    /// The output whose text streams, if any.
    stream_output: Option<String>,
    /// The output of which pieces were sent, if any.
    streamed: Option<String>,
    /// Outputs sent before the pieces (a flex entry's other outputs).
    sent_first: Vec<String>,
    queued: VecDeque<Event>,
    finished: bool,
}

/// What the response stream takes next.
enum Next {
    Python(Option<StreamEvent>),
    Line(Option<Piece>),
}

impl EventStream {
    /// The next event; a line's error is an `event: error`.
    async fn next_event(&mut self) -> Option<Event> {
        match self.next_item().await? {
            Item::Event(event) => Some(event),
            Item::Failed(error) => Some(json_event(&error.body()).event("error")),
        }
    }

    async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(Item::Event(e));
            }
            if self.finished {
                return None;
            }
            // Pieces first: a generator's pieces are all queued before its line is done.
            let next = match &mut self.pieces {
                Some(pieces) => tokio::select! {
                    biased;
                    p = pieces.recv() => Next::Python(p),
                    l = self.rx.recv() => Next::Line(l),
                },
                None => Next::Line(self.rx.recv().await),
            };
            match next {
                Next::Python(None) => self.pieces = None,
                Next::Python(Some(StreamEvent::Head(head))) => {
                    self.sent_first.extend(head.keys().cloned());
                    if !head.is_empty() {
                        return Some(Item::Event(json_event(&Value::Object(head))));
                    }
                }
                Next::Python(Some(StreamEvent::Piece { field, value })) => {
                    let Some(name) = field.or_else(|| self.stream_output.clone()) else {
                        continue;
                    };
                    let event = data_event(&name, value);
                    self.streamed = Some(name);
                    return Some(Item::Event(event));
                }
                Next::Line(None) => return None,
                Next::Line(Some(Piece::Delta(text))) => {
                    let Some(name) = &self.stream_output else {
                        continue;
                    };
                    let event = data_event(name, Value::String(text));
                    self.streamed = Some(name.clone());
                    return Some(Item::Event(event));
                }
                Next::Line(Some(Piece::Done(result))) => {
                    self.finished = true;
                    if let Some(error) = self.finish(*result) {
                        return Some(Item::Failed(error));
                    }
                }
            }
        }
    }

    /// Queue the outputs a finished line has not sent yet; a failed line's error is returned.
    fn finish(&mut self, result: Result<LineResult, ApiError>) -> Option<ApiError> {
        let error = match result {
            Ok(line) => match &line.error {
                Some(e) => ApiError::from_line_error(e),
                None => {
                    // Nothing streamed (a tool that returned a string, a cached answer): all
                    // the outputs in one event. Else the outputs not sent yet.
                    let mut rest = line.outputs;
                    for name in self.streamed.iter().chain(&self.sent_first) {
                        rest.shift_remove(name);
                    }
                    if !rest.is_empty() {
                        self.queued.push_back(json_event(&Value::Object(rest)));
                    }
                    return None;
                }
            },
            Err(e) => e,
        };
        Some(error)
    }
}

fn data_event(name: &str, value: Value) -> Event {
    let mut m = Map::with_capacity(1);
    m.insert(name.to_string(), value);
    json_event(&Value::Object(m))
}

fn json_event(value: &Value) -> Event {
    Event::default().data(crate::non_finite::to_string(value).unwrap_or_else(|_| value.to_string()))
}
