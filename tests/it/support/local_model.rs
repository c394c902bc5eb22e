//! A real local LLM for end-to-end tests: llama.cpp's `llama-server` with SmolLM2-135M-Instruct,
//! built and started by `scripts/local-model.sh` (the commands the README gives users).
//!
//! One server (chat, completions and embeddings) per test process, started lazily by the first
//! test that asks and stopped when the process exits (the script's `serve` mode stops it when its
//! standard input, held by this process, closes). Each test talks to it through its own
//! [`Proxy`]s, which record every request and the server's reply, so a test can count requests
//! and compare `flow`'s records with the server's own `usage`.
//!
//! When the server is not built: in CI (`CI=true`) the test fails; elsewhere [`local_model`]
//! returns `None` and the test prints that it was skipped and how to build the server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;

use super::context::{TestContext, repo_root};

/// The model name the server answers to (`--alias`).
pub const ALIAS: &str = "smollm2";

/// The running server.
pub struct LocalModel {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Held open: the script stops the server when it closes (at process exit).
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static MODEL: OnceLock<Option<LocalModel>> = OnceLock::new();

fn script() -> std::path::PathBuf {
    repo_root().join("scripts/local-model.sh")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

/// The shared local model, started on first use; `None` (after saying so) when it is not built
/// and this is not CI. In CI a missing server fails the test.
pub fn local_model() -> Option<&'static LocalModel> {
    MODEL.get_or_init(start).as_ref()
}

/// [`local_model`], printing the skip notice for `test` when there is none.
pub fn local_model_or_skip(test: &str) -> Option<&'static LocalModel> {
    let model = local_model();
    if model.is_none() {
        eprintln!(
            "skipped {test}: no local model; run scripts/local-model.sh build (a few minutes, once)"
        );
    }
    model
}

fn start() -> Option<LocalModel> {
    let paths = Command::new("bash")
        .arg(script())
        .arg("paths")
        .output()
        .expect("run scripts/local-model.sh paths");
    if !paths.status.success() {
        let why = String::from_utf8_lossy(&paths.stderr).into_owned();
        assert!(
            !in_ci(),
            "CI needs the local model and it is not built ({}): .ci/run runs scripts/local-model.sh build",
            why.trim()
        );
        return None;
    }
    let port = free_port();
    let mut child = Command::new("bash")
        .arg(script())
        .arg("serve")
        .env("LOCAL_MODEL_PORT", port.to_string())
        .env("LOCAL_MODEL_ALIAS", ALIAS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start scripts/local-model.sh serve");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the script's output");
    assert!(
        line.starts_with("ready"),
        "scripts/local-model.sh serve did not start the server (said {line:?}); see its log above"
    );
    Some(LocalModel {
        url: format!("http://127.0.0.1:{port}"),
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    })
}

/// One request that went through a [`Proxy`] and the server's reply to it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub request: Value,
    pub status: u16,
    /// The reply body as sent (for a stream: every `data:` event).
    pub response: String,
    /// How many requests were in flight through the proxy when this one arrived (itself included).
    pub in_flight: usize,
}

impl Exchange {
    /// The reply as JSON (a non-streamed reply).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.response).unwrap_or_else(|e| {
            panic!(
                "reply to {} is not JSON ({e}): {}",
                self.path, self.response
            )
        })
    }

    /// The JSON payloads of a streamed reply's `data:` events (`[DONE]` left out).
    pub fn events(&self) -> Vec<Value> {
        self.response
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| *d != "[DONE]" && !d.is_empty())
            .map(|d| serde_json::from_str(d).expect("stream event is JSON"))
            .collect()
    }

    /// The server's `usage` (the last event's, for a stream).
    pub fn usage(&self) -> (u64, u64) {
        let usage = if self.request["stream"] == true {
            self.events()
                .into_iter()
                .filter_map(|e| e.get("usage").filter(|u| u.is_object()).cloned())
                .next_back()
                .expect("the stream carries usage")
        } else {
            self.json()["usage"].clone()
        };
        (
            usage["prompt_tokens"].as_u64().expect("prompt_tokens"),
            usage["completion_tokens"]
                .as_u64()
                .expect("completion_tokens"),
        )
    }

    /// The text the server wrote (a chat reply's content, or a stream's deltas joined).
    pub fn text(&self) -> String {
        if self.request["stream"] == true {
            self.events()
                .iter()
                .filter_map(|e| {
                    e.pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                })
                .collect()
        } else {
            let v = self.json();
            v.pointer("/choices/0/message/content")
                .or_else(|| v.pointer("/choices/0/text"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        }
    }
}

#[derive(Default)]
struct ProxyState {
    upstream: String,
    log: Mutex<Vec<Exchange>>,
    in_flight: Mutex<usize>,
}

/// A recording pass-through proxy on loopback in front of the server; streams are
/// forwarded chunk by chunk as they arrive. Stops on drop.
pub struct Proxy {
    pub url: String,
    state: Arc<ProxyState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Proxy {
    /// A proxy to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            ..ProxyState::default()
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = Router::new().fallback(forward).with_state(shared);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = rx => {}
                }
            });
        });
        Proxy {
            url,
            state,
            stop: Some(tx),
        }
    }

    /// The OpenAI-compatible base URL through this proxy.
    pub fn base(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// Every exchange so far, in the order the replies ended. Waits (up to 10 s) for those in
    /// flight to finish: a client may have read a reply's last byte a moment before the proxy
    /// saw its end.
    pub fn exchanges(&self) -> Vec<Exchange> {
        wait_for(
            "the proxy's requests to finish",
            Duration::from_secs(10),
            || *self.state.in_flight.lock().unwrap() == 0,
        );
        self.state.log.lock().unwrap().clone()
    }

    /// The finished model requests (chat, completions, embeddings), not `/v1/models`.
    pub fn model_requests(&self) -> Vec<Exchange> {
        self.exchanges()
            .into_iter()
            .filter(|e| e.method == "POST")
            .collect()
    }

    /// Forget what was recorded (once nothing is in flight).
    pub fn clear(&self) {
        wait_for(
            "the proxy's requests to finish",
            Duration::from_secs(10),
            || *self.state.in_flight.lock().unwrap() == 0,
        );
        self.state.log.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let in_flight = {
        let mut n = state.in_flight.lock().unwrap();
        *n += 1;
        *n
    };
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let client = reqwest::Client::new();
    let mut req = client.request(method.clone(), format!("{}{path}", state.upstream));
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let upstream = req.body(body).send().await;
    let mut exchange = Exchange {
        method: method.to_string(),
        path: uri.path().to_string(),
        request,
        status: 502,
        response: String::new(),
        in_flight,
    };
    let resp = match upstream {
        Ok(r) => r,
        Err(e) => {
            *state.in_flight.lock().unwrap() -= 1;
            exchange.response = e.to_string();
            state.log.lock().unwrap().push(exchange);
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from("proxy: upstream failed"))
                .expect("response");
        }
    };
    exchange.status = resp.status().as_u16();
    let mut builder = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k != "content-length" && k != "transfer-encoding" {
            builder = builder.header(k, v);
        }
    }
    // Pass each chunk on as it comes, keeping a copy; log the exchange when the body ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let mut upstream_body = resp.bytes_stream();
    tokio::spawn(async move {
        let mut copy = Vec::new();
        while let Some(chunk) = upstream_body.next().await {
            match chunk {
                Ok(bytes) => {
                    copy.extend_from_slice(&bytes);
                    if tx.send(Ok(bytes)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    break;
                }
            }
        }
        exchange.response = String::from_utf8_lossy(&copy).into_owned();
        *state.in_flight.lock().unwrap() -= 1;
        state.log.lock().unwrap().push(exchange);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    builder.body(Body::from_stream(stream)).expect("response")
}

/// A scratch project whose `.env` points `open_ai_connection` and `judge` at the local model
/// through one recording proxy, and `embed` (embeddings) through another; no key (a local base
/// needs none).
pub struct LocalProject {
    pub ctx: TestContext,
    pub chat: Proxy,
    pub embeddings: Proxy,
}

impl LocalProject {
    pub fn new(model: &LocalModel) -> LocalProject {
        let ctx = TestContext::new();
        let chat = Proxy::start(&model.url);
        let embeddings = Proxy::start(&model.url);
        ctx.write(
            ".env",
            &format!(
                "OPEN_AI_CONNECTION_API_BASE={}\nOPEN_AI_CONNECTION_MODEL={ALIAS}\n\
                 JUDGE_API_BASE={}\nJUDGE_MODEL={ALIAS}\n\
                 EMBED_API_BASE={}\nEMBED_EMBEDDING_MODEL={ALIAS}\n",
                chat.base(),
                chat.base(),
                embeddings.base()
            ),
        );
        LocalProject {
            ctx,
            chat,
            embeddings,
        }
    }
}

/// Waits until `f` holds (panics with `what` after `timeout`).
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
