//! A loopback OTLP/HTTP collector: stores every `POST /v1/traces` body and its headers.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;

type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// The running collector; stops when dropped (with its thread's runtime).
pub struct Collector {
    pub url: String,
    received: Received,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Collector {
    /// Start on `127.0.0.1:0`.
    pub fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind collector");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let received: Received = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = received.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = Router::new()
                    .route("/v1/traces", post(traces))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Collector {
            url,
            received,
            _stop: stop,
        }
    }

    /// Every span received so far, flattened, with its resource's `service.name`.
    pub fn spans(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (_, body) in self.received.lock().unwrap().iter() {
            for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        out.push(s.clone());
                    }
                }
            }
        }
        out
    }

    /// The raw bodies and headers received.
    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.received.lock().unwrap().clone()
    }
}

async fn traces(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    received.lock().unwrap().push((headers, value));
    "{}"
}

/// A span attribute's value (string, int as string, double or bool) as JSON.
pub fn attribute(span: &Value, key: &str) -> Option<Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            v.get("stringValue")
                .or_else(|| v.get("intValue"))
                .or_else(|| v.get("doubleValue"))
                .or_else(|| v.get("boolValue"))
                .cloned()
                .unwrap_or(Value::Null)
        })
}
