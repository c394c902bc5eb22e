//! `flow connections check`: one cheap request per connection (the model list, which costs
//! nothing) to tell whether the endpoint answers and accepts the key.

use std::time::{Duration, Instant};

use super::LlmClient;
use crate::connection::{ApiType, Connection};

/// What a connection check found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    /// The endpoint answered and accepted the credentials.
    pub ok: bool,
    /// The URL asked (never with a key in it).
    pub url: String,
    /// What answered, or what went wrong and what to check.
    pub detail: String,
    /// How long the request took.
    pub elapsed: Duration,
}

impl LlmClient {
    /// List the connection's models: a request that costs nothing and proves the endpoint
    /// answers and takes the key. Names the configured model when the list has it.
    pub async fn check(&self, conn: &Connection) -> CheckOutcome {
        let started = Instant::now();
        let url = models_url(conn);
        if conn.api_type == ApiType::Custom {
            return CheckOutcome {
                ok: true,
                url,
                detail: "custom connection: fields for Python tools, no model endpoint to check"
                    .into(),
                elapsed: started.elapsed(),
            };
        }
        if conn.api_type == ApiType::Echo {
            return CheckOutcome {
                ok: true,
                url,
                detail: "offline echo provider: no network, answers are not from a model".into(),
                elapsed: started.elapsed(),
            };
        }
        let mut request = self
            .http
            .get(&url)
            .timeout(self.config.timeout.min(Duration::from_secs(20)));
        if let Some(key) = &conn.api_key {
            request = match conn.api_type {
                ApiType::Azure => request.header("api-key", key.expose()),
                ApiType::Anthropic => request
                    .header("x-api-key", key.expose())
                    .header("anthropic-version", "2023-06-01"),
                ApiType::OpenAi | ApiType::Ollama | ApiType::Echo | ApiType::Custom => {
                    request.bearer_auth(key.expose())
                }
            };
        } else if conn.api_type == ApiType::Anthropic {
            request = request.header("anthropic-version", "2023-06-01");
        }
        if let Some(identity) = &conn.entra {
            match crate::connection::entra::bearer(&self.http, identity).await {
                Ok(token) => request = request.bearer_auth(token.expose()),
                Err(e) => {
                    return CheckOutcome {
                        ok: false,
                        url,
                        detail: e.to_string(),
                        elapsed: started.elapsed(),
                    };
                }
            }
        }
        for (k, v) in &conn.headers {
            request = request.header(k.as_str(), v.expose());
        }
        let redactor = conn.redactor();
        let outcome = |ok: bool, detail: String| CheckOutcome {
            ok,
            url: url.clone(),
            detail: redactor.redact(&detail).into_owned(),
            elapsed: started.elapsed(),
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return outcome(
                    false,
                    "no answer before the timeout: is the server up and the URL right?".into(),
                );
            }
            Err(e) if e.is_connect() => {
                return outcome(
                    false,
                    format!(
                        "cannot connect: check {} (is the server running?)",
                        conn.base_var()
                    ),
                );
            }
            Err(e) => return outcome(false, format!("request failed: {e}")),
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        match status {
            200..=299 => {
                let models = model_ids(&body);
                let wanted = conn.model.clone().or_else(|| conn.deployment.clone());
                let detail = match (&wanted, models.len()) {
                    (_, 0) => format!("answered (HTTP {status})"),
                    // Ollama lists `llama3.2:latest` for a model requested as `llama3.2`.
                    (Some(m), n)
                        if models
                            .iter()
                            .any(|x| x == m || x.strip_suffix(":latest") == Some(m.as_str())) =>
                    {
                        format!("answered: {n} models, including `{m}`")
                    }
                    (Some(m), n) => format!(
                        "answered: {n} model{}, but not `{m}`: it lists {}; set {} to one of them{}",
                        if n == 1 { "" } else { "s" },
                        listed(&models),
                        conn.model_var(),
                        if matches!(conn.api_type, ApiType::OpenAi) {
                            " (a llama.cpp server lists the name given with --alias, else its model file's)"
                        } else {
                            ""
                        }
                    ),
                    (None, n) => format!("answered: {n} models"),
                };
                outcome(true, detail)
            }
            401 => outcome(
                false,
                format!("the key was refused (401): check {}", conn.key_var()),
            ),
            403 => outcome(
                false,
                "access denied (403): the key lacks permission for this resource or region".into(),
            ),
            404 => outcome(
                false,
                format!(
                    "not found (404): check {}; it should be the API root (e.g. https://api.openai.com/v1)",
                    conn.base_var()
                ),
            ),
            _ => outcome(false, format!("HTTP {status}: {}", excerpt(&body))),
        }
    }
}

fn models_url(conn: &Connection) -> String {
    let (base, query) = super::split_query(conn.api_base.as_deref().unwrap_or_default());
    let url = match conn.api_type {
        ApiType::Echo => return "echo:".into(),
        ApiType::Custom => return "custom:".into(),
        ApiType::Azure => {
            let root = base.split("/openai").next().unwrap_or(base);
            // An api-version in the base URL wins, as it does for requests.
            if let Some(q) = query.filter(|q| q.contains("api-version=")) {
                return format!("{root}/openai/models?{q}");
            }
            let version = conn
                .api_version
                .as_deref()
                .unwrap_or(crate::connection::AZURE_DEFAULT_API_VERSION);
            format!("{root}/openai/models?api-version={version}")
        }
        ApiType::Anthropic => {
            if base.ends_with("/v1") {
                format!("{base}/models")
            } else {
                format!("{base}/v1/models")
            }
        }
        ApiType::OpenAi | ApiType::Ollama => {
            let root = base
                .strip_suffix("/chat/completions")
                .or_else(|| base.strip_suffix("/completions"))
                .unwrap_or(base);
            format!("{root}/models")
        }
    };
    super::with_query(url, query)
}

fn model_ids(body: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    v.get("data")
        .or_else(|| v.get("models"))
        .and_then(|d| d.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|m| {
                    m.get("id")
                        .or_else(|| m.get("name"))
                        .and_then(|x| x.as_str())
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The first few model names, quoted (`a`, `b`, … and N more).
fn listed(models: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out = models
        .iter()
        .take(SHOWN)
        .map(|m| format!("`{}`", excerpt(m)))
        .collect::<Vec<_>>()
        .join(", ");
    if models.len() > SHOWN {
        out.push_str(&format!(" and {} more", models.len() - SHOWN));
    }
    out
}

fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 160 {
        format!("{}...", one_line.chars().take(157).collect::<String>())
    } else {
        one_line
    }
}
