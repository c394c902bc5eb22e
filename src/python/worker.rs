//! One long-lived Python worker process and its line-based request channel.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use tokio::sync::mpsc;

use super::host::{HostSession, no_host_reply};
use super::shim::WORKER_SCRIPT;
use super::{PythonError, StreamEvent};

/// How many stderr lines a worker keeps for error reports.
const STDERR_TAIL_LINES: usize = 40;

type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running worker: send one request line, read one reply line.
pub(crate) struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    tail: Tail,
    stderr_task: Option<JoinHandle<()>>,
    /// The line being read (kept whole across cancelled reads).
    buf: Vec<u8>,
    /// What the worker waits for from us, for [`Worker::abandon`].
    awaiting: Awaiting,
}

/// What the worker waits for from `flow` when a request is dropped midway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// Nothing: it waits for a request.
    Nothing,
    /// We were writing to it: what it got is unknown.
    Writing,
    /// It works on the request: its next line is a reply, a host request or a stream line.
    Reply,
    /// It sent a stream line and waits for `next` or `stop`.
    Ack,
    /// It sent a host request and waits for the answer.
    HostReply,
}

/// The reply to a host request whose tool call was cancelled.
fn cancelled_host_reply() -> Vec<u8> {
    b"{\"ok\":false,\"error\":{\"type\":\"RuntimeError\",\"message\":\"the line was cancelled\"}}\n"
        .to_vec()
}

fn trim_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && line[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &line[..end]
}

/// A stream line from the worker.
fn stream_event(line: &[u8]) -> Result<StreamEvent, PythonError> {
    #[derive(serde::Deserialize)]
    struct Line {
        head: Option<serde_json::Map<String, serde_json::Value>>,
        #[serde(default)]
        piece: serde_json::Value,
        field: Option<String>,
    }
    let parsed: Line = serde_json::from_slice(line).map_err(|e| PythonError::Protocol {
        message: format!("invalid stream line from the worker: {e}"),
    })?;
    Ok(match parsed.head {
        Some(head) => StreamEvent::Head(head),
        None => StreamEvent::Piece {
            field: parsed.field,
            value: parsed.piece,
        },
    })
}

impl Worker {
    /// Start `python worker.py SHIM_DIR` in `working_dir` and wait for its ready line.
    pub(crate) async fn spawn(
        python: &Path,
        shim_dir: &Path,
        working_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Worker, PythonError> {
        let mut cmd = Command::new(python);
        cmd.arg(shim_dir.join(WORKER_SCRIPT))
            .arg(shim_dir)
            .current_dir(working_dir)
            .env("PYTHONIOENCODING", "utf-8")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| PythonError::Spawn {
            python: python.display().to_string(),
            source,
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(PythonError::Protocol {
                message: "the worker's standard streams were not piped".into(),
            });
        };
        let tail: Tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        let stderr_task = tokio::spawn(collect_stderr(stderr, Arc::clone(&tail)));
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::with_capacity(1 << 16, stdout),
            tail,
            stderr_task: Some(stderr_task),
            buf: Vec::with_capacity(1024),
            awaiting: Awaiting::Nothing,
        };
        match worker.read_line().await {
            true if worker.buf.starts_with(b"{\"ready\":true") => Ok(worker),
            _ => {
                let stderr_tail = worker.collect_tail().await;
                Err(PythonError::Startup {
                    python: python.display().to_string(),
                    stderr_tail,
                })
            }
        }
    }

    /// Whether the process has already exited (checked before reusing an idle worker).
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Send `request` (one JSON line, ending in `\n`) and return the reply line. Host requests
    /// the worker makes meanwhile (`{"host": ...}` lines) are answered through `host` (or
    /// refused when there is none) before the reply is read; stream lines (`{"piece": ...}`,
    /// `{"head": ...}`, see [`StreamEvent`]) are sent to `stream` and answered `next` once
    /// queued (`stop` when the receiver is gone, or when there is no `stream`).
    /// Any failure means the worker is gone: the error is `WorkerDied` with its stderr tail.
    ///
    /// Dropping the future midway leaves the worker in a state [`abandon`](Self::abandon) can
    /// recover from, unless it was writing.
    pub(crate) async fn request(
        &mut self,
        request: &[u8],
        mut host: Option<&mut HostSession<'_>>,
        stream: Option<&mpsc::Sender<StreamEvent>>,
    ) -> Result<&str, PythonError> {
        let mut alive = self.write(request).await;
        while alive {
            if !self.read_line().await {
                alive = false;
                break;
            }
            let reply = if self.buf.starts_with(b"{\"host\"") {
                self.awaiting = Awaiting::HostReply;
                let line = String::from_utf8_lossy(trim_end(&self.buf)).into_owned();
                match host.as_deref_mut() {
                    Some(session) => session.answer(&line).await,
                    None => no_host_reply(),
                }
            } else if self.buf.starts_with(b"{\"piece\"") || self.buf.starts_with(b"{\"head\"") {
                self.awaiting = Awaiting::Ack;
                let event = stream_event(trim_end(&self.buf))?;
                let queued = match stream {
                    Some(tx) => tx.send(event).await.is_ok(),
                    None => false,
                };
                if queued {
                    b"next\n".to_vec()
                } else {
                    b"stop\n".to_vec()
                }
            } else {
                self.awaiting = Awaiting::Nothing;
                break;
            };
            alive = self.write(&reply).await;
        }
        if alive {
            std::str::from_utf8(trim_end(&self.buf)).map_err(|e| PythonError::Protocol {
                message: format!("the worker's reply is not UTF-8: {e}"),
            })
        } else {
            Err(PythonError::WorkerDied {
                stderr_tail: self.collect_tail().await,
            })
        }
    }

    /// After a [`request`](Self::request) future was dropped midway (the client went away, the
    /// line ran out of time): stop what the worker is doing — `stop` to a stream waiting for
    /// its go-ahead, a refusal to a pending host request — and read until its reply. `true`
    /// when the worker is back to waiting for a request, `false` when it cannot be reused (it
    /// was dropped while writing, or its channel broke). Bound it with a timeout: a tool that
    /// does not yield or return keeps it waiting.
    pub(crate) async fn abandon(&mut self) -> bool {
        let mut answer = match self.awaiting {
            Awaiting::Reply => None,
            Awaiting::Ack => Some(b"stop\n".to_vec()),
            Awaiting::HostReply => Some(cancelled_host_reply()),
            Awaiting::Nothing | Awaiting::Writing => return false,
        };
        loop {
            if let Some(bytes) = answer.take() {
                if !self.write(&bytes).await {
                    return false;
                }
            }
            if !self.read_line().await {
                return false;
            }
            if self.buf.starts_with(b"{\"host\"") {
                answer = Some(cancelled_host_reply());
            } else if self.buf.starts_with(b"{\"piece\"") || self.buf.starts_with(b"{\"head\"") {
                answer = Some(b"stop\n".to_vec());
            } else {
                self.awaiting = Awaiting::Nothing;
                return true;
            }
        }
    }

    /// Write `bytes`; `false` when the worker is gone. Not cancel-safe: marked as writing.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        self.awaiting = Awaiting::Writing;
        let written = async {
            self.stdin.write_all(bytes).await?;
            self.stdin.flush().await
        }
        .await;
        self.awaiting = Awaiting::Reply;
        written.is_ok()
    }

    /// Read the next line into `buf`; `false` at end of file or on error. Cancel-safe: a line
    /// read in part stays in `buf` and the next call goes on with it.
    async fn read_line(&mut self) -> bool {
        if self.buf.last() == Some(&b'\n') {
            self.buf.clear();
        }
        loop {
            match self.stdout.read_until(b'\n', &mut self.buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) if self.buf.last() == Some(&b'\n') => return true,
                Ok(_) => {}
            }
        }
    }

    /// Stop the process and reap it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
    }

    /// Wait (briefly) for the process to end and its stderr to drain, then return the tail.
    async fn collect_tail(&mut self) -> String {
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.start_kill();
                None
            }
        };
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        let mut text = match self.tail.lock() {
            Ok(lines) => lines
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            Err(_) => String::new(),
        };
        if let Some(status) = status {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("(worker {status})"));
        }
        text
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
    }
}

async fn collect_stderr(stderr: tokio::process::ChildStderr, tail: Tail) {
    // bytes, not `lines()`: a non-UTF-8 line must not stop the draining (the worker would block)
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}
