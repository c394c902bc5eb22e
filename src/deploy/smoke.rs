//! The smoke test after a rollout: wait until the new version reports ready on `/ready` (polling,
//! never a fixed sleep), send `sample-request.json` to `/score`, and require a 200 whose JSON
//! object has every output of the flow.

use std::time::{Duration, Instant};

use serde_json::Value;

/// What the smoke test saw when it passed.
#[derive(Debug, Clone)]
pub struct SmokeReport {
    /// Time until `/ready` answered 200.
    pub ready_after: Duration,
    /// Time the `/score` request took.
    pub latency: Duration,
    /// The outputs returned.
    pub outputs: serde_json::Map<String, Value>,
}

/// Why the smoke test failed.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("{url}/ready did not answer 200 within {waited:.0?} (last: {last})")]
    NeverReady {
        url: String,
        waited: Duration,
        last: String,
    },
    #[error("POST {url}/score answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("POST {url}/score did not answer a JSON object: {body}")]
    NotAnObject { url: String, body: String },
    #[error(
        "POST {url}/score answered without the flow's output(s) {missing:?} (it returned {got:?})"
    )]
    MissingOutputs {
        url: String,
        missing: Vec<String>,
        got: Vec<String>,
    },
    #[error("POST {url}/score failed: {message}")]
    Request { url: String, message: String },
}

impl crate::error::Classify for SmokeError {
    /// A server that never answers cannot be used; one that answers wrongly is a bad release.
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            SmokeError::NeverReady { .. } | SmokeError::Request { .. } => {
                crate::error::ErrorClass::Endpoint
            }
            _ => crate::error::ErrorClass::Quality,
        }
    }
}

impl SmokeError {
    /// Whether the server never became usable (as opposed to answering wrongly).
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            SmokeError::NeverReady { .. } | SmokeError::Request { .. }
        )
    }
}

/// Run the smoke test against `base_url` (e.g. `http://127.0.0.1:8080`).
pub async fn smoke_test(
    base_url: &str,
    sample: &Value,
    expected_outputs: &[String],
    token: Option<&str>,
    timeout: Duration,
) -> Result<SmokeReport, SmokeError> {
    let url = base_url.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .timeout(timeout.max(Duration::from_secs(1)))
        .build()
        .map_err(|e| SmokeError::Request {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut delay = Duration::from_millis(100);
    let mut last: String;
    loop {
        let probe = client
            .get(format!("{url}/ready"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        match probe {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => last = format!("status {}", r.status().as_u16()),
            Err(e) => last = e.to_string(),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(SmokeError::NeverReady {
                url,
                waited: started.elapsed(),
                last,
            });
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    let ready_after = started.elapsed();
    let mut request = client.post(format!("{url}/score")).json(sample);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let sent = Instant::now();
    let response = request.send().await.map_err(|e| SmokeError::Request {
        url: url.clone(),
        message: e.to_string(),
    })?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| SmokeError::Request {
        url: url.clone(),
        message: e.to_string(),
    })?;
    let latency = sent.elapsed();
    if status != 200 {
        return Err(SmokeError::Status {
            url,
            status,
            body: shorten(&body),
        });
    }
    let Ok(Value::Object(outputs)) = crate::non_finite::from_str::<Value>(&body) else {
        return Err(SmokeError::NotAnObject {
            url,
            body: shorten(&body),
        });
    };
    let missing: Vec<String> = expected_outputs
        .iter()
        .filter(|k| !outputs.contains_key(k.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(SmokeError::MissingOutputs {
            url,
            missing,
            got: outputs.keys().cloned().collect(),
        });
    }
    Ok(SmokeReport {
        ready_after,
        latency,
        outputs,
    })
}

fn shorten(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() > 500 {
        format!("{}…", t.chars().take(500).collect::<String>())
    } else {
        t.to_string()
    }
}
