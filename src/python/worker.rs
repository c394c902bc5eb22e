//! One long-lived Python worker process and its line-based request channel.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::PythonError;
use super::host::{HostSession, no_host_reply};
use super::shim::WORKER_SCRIPT;

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
    line: String,
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
            line: String::with_capacity(1024),
        };
        match worker.stdout.read_line(&mut worker.line).await {
            Ok(n) if n > 0 && worker.line.starts_with("{\"ready\":true") => Ok(worker),
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
    /// refused when there is none) before the reply is read.
    /// Any failure means the worker is gone: the error is `WorkerDied` with its stderr tail.
    pub(crate) async fn request(
        &mut self,
        request: &[u8],
        mut host: Option<&mut HostSession<'_>>,
    ) -> Result<&str, PythonError> {
        let sent = async {
            self.stdin.write_all(request).await?;
            self.stdin.flush().await
        }
        .await;
        let mut alive = sent.is_ok();
        while alive {
            self.line.clear();
            match self.stdout.read_line(&mut self.line).await {
                Ok(n) if n > 0 => {}
                _ => {
                    alive = false;
                    break;
                }
            }
            if !self.line.starts_with("{\"host\"") {
                break;
            }
            let reply = match host.as_deref_mut() {
                Some(session) => session.answer(self.line.trim_end()).await,
                None => no_host_reply(),
            };
            let written = async {
                self.stdin.write_all(&reply).await?;
                self.stdin.flush().await
            }
            .await;
            alive = written.is_ok();
        }
        if alive {
            Ok(self.line.trim_end())
        } else {
            Err(PythonError::WorkerDied {
                stderr_tail: self.collect_tail().await,
            })
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
