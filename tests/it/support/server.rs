//! `flow serve` as a child process on a free loopback port, and a small HTTP client for it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::context::TestContext;

/// A running `flow serve`; killed on drop if still running.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// Everything the server wrote on stderr so far.
    pub log: Arc<Mutex<String>>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Server {
    /// `flow serve FLOW --port 0 ARGS...` with `envs` set; waits until it reports its address.
    /// It may not be ready yet: see [`wait_ready`](Self::wait_ready).
    pub fn start(ctx: &TestContext, flow: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut cmd = ctx.std_cmd();
        cmd.args(["serve", flow, "--port", "0"]).args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn flow serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line
                    .starts_with("flow serve:")
                    .then(|| line.find("http://"))
                    .flatten()
                {
                    if let Some(t) = tx.take() {
                        let url: String = line[at..]
                            .chars()
                            .take_while(|c| !c.is_whitespace())
                            .collect();
                        let _ = t.send(url);
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("flow serve did not start:\n{}", log.lock().unwrap());
            }
        };
        Server { child, url, log }
    }

    /// Start and wait until `/ready` answers 200.
    pub fn ready(ctx: &TestContext, flow: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let server = Self::start(ctx, flow, args, envs);
        server.wait_ready();
        server
    }

    /// Poll `/ready` until it answers 200 (panics after 30 s).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(a) = try_request("GET", &format!("{}/ready", self.url), &[], None) {
                if a.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("flow serve never became ready:\n{}", self.log());
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Answer {
        request("GET", &format!("{}{path}", self.url), &[], None)
    }

    /// `POST /score` with a JSON (or any) body.
    pub fn score(&self, body: &str) -> Answer {
        self.post("/score", &[], body)
    }

    /// `POST path` with headers and a body.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        request("POST", &format!("{}{path}", self.url), headers, Some(body))
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Wait for the process to exit (panics after `timeout`); its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "flow serve did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A metric's value from `/metrics` (the first sample whose name and labels start so).
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let text = self.get("/metrics").body;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request (panics when the server cannot be reached).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    try_request(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// One HTTP request.
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Answer, reqwest::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut req = client.request(method.parse().expect("method"), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.text().await?;
        Ok(Answer {
            status,
            content_type,
            headers,
            body,
        })
    })
}

/// The `data:` payloads of a Server-Sent Events body, with their `event:` names.
pub fn sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if data.is_empty() {
                return None;
            }
            Some((
                name,
                serde_json::from_str(&data).expect("event data is JSON"),
            ))
        })
        .collect()
}

/// A Server-Sent Events answer read event by event as the server sends them; dropping it hangs
/// up.
pub struct LiveEvents {
    rt: tokio::runtime::Runtime,
    response: reqwest::Response,
    buf: String,
    pub status: u16,
}

impl LiveEvents {
    /// `POST url` with `Accept: text/event-stream` and a JSON body; returns once the headers
    /// came.
    pub fn open(url: &str, body: &str) -> LiveEvents {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let response = rt
            .block_on(
                reqwest::Client::new()
                    .post(url)
                    .header("accept", "text/event-stream")
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send(),
            )
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        LiveEvents {
            rt,
            response,
            buf: String::new(),
            status,
        }
    }

    /// The next event with data (its `event:` name and data), waiting at most `timeout`;
    /// `None` when the stream ended. Panics when nothing came in time.
    pub fn next(&mut self, timeout: Duration) -> Option<(String, serde_json::Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(e) = sse_events(&event).into_iter().next() {
                    return Some(e);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let response = &mut self.response;
            let chunk = self
                .rt
                .block_on(async move { tokio::time::timeout(left, response.chunk()).await })
                .unwrap_or_else(|_| panic!("no event within {timeout:?}; so far: {:?}", self.buf))
                .expect("reading the event stream");
            match chunk {
                Some(bytes) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    /// Every event left until the stream ends (each within `timeout`).
    pub fn rest(&mut self, timeout: Duration) -> Vec<(String, serde_json::Value)> {
        std::iter::from_fn(|| self.next(timeout)).collect()
    }
}
