//! The batch loop: bounded concurrency, per-line timeout, cancellation, a circuit breaker for
//! an endpoint that refuses every request, and aggregation at the end.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::executor::Executor;
use crate::record::{
    AggregationResult, ErrorInfo, ErrorKind, LineResult, Status, Tokens, timestamp,
};
use crate::run_store::RunWriter;

/// A line waiting to run: its inputs, or why they could not be made (a malformed row, a
/// missing mapped column), which fails the line without running it.
#[derive(Debug, Clone)]
pub struct PendingLine {
    pub line_number: usize,
    pub inputs: Result<Map<String, Value>, ErrorInfo>,
}

/// How long a line may run when no `--line-timeout` is given: promptflow's default, 600 s.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(600);

/// How a batch runs.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Lines in flight at once.
    pub concurrency: usize,
    /// A line still running after this long fails with a timeout; `None` means
    /// [`DEFAULT_LINE_TIMEOUT`] (no line runs without a bound).
    pub line_timeout: Option<Duration>,
    /// Stop early when this many lines in a row failed because the endpoint could not be used
    /// at all (key refused, unreachable) and none succeeded: the rest would fail the same way.
    pub endpoint_failure_limit: usize,
    /// Stop early when this many lines in a row failed the same way (the same kind of
    /// configuration error at the same node: a template, an input, a connection) and none
    /// succeeded: it is the flow or its settings, not the data, and every line would fail so.
    pub config_failure_limit: usize,
    /// Line slots shared with other batches (an experiment's runs): a line runs only while it
    /// holds one, so all of them together have at most this many lines in flight.
    pub shared_slots: Option<Arc<Semaphore>>,
    /// Do not run the aggregation nodes (a shard: they need every line, so the merge runs them).
    pub skip_aggregation: bool,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            concurrency: 32,
            line_timeout: None,
            endpoint_failure_limit: 8,
            config_failure_limit: 8,
            shared_slots: None,
            skip_aggregation: false,
        }
    }
}

/// Told about every line as it finishes (for progress bars).
pub trait Progress: Send + Sync {
    /// A batch written to a run directory is about to run its lines (after its `meta.json` is
    /// written, before [`Progress::lines_kept`]).
    fn started(&self, _start: &super::BatchStart) {}
    fn line_finished(&self, line: &LineResult);
    /// `lines` finished in an earlier attempt of a resumed run: they count as done, but do not
    /// run (and are not reported to `line_finished`) again.
    fn lines_kept(&self, _lines: usize) {}
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub completed: usize,
    pub failed: usize,
    /// Stopped by the cancel signal (Ctrl-C) before every line ran.
    pub canceled: bool,
    /// Stopped because the endpoint refused every request.
    pub endpoint_unusable: Option<ErrorInfo>,
    /// Stopped because every line failed the same way, a configuration problem (see
    /// [`BatchConfig::config_failure_limit`]).
    pub misconfigured: Option<ErrorInfo>,
    /// The first failures, in the order they happened.
    pub first_errors: Vec<(usize, ErrorInfo)>,
    pub aggregation: Option<AggregationResult>,
    pub tokens: Tokens,
}

const FIRST_ERRORS_KEPT: usize = 5;

/// Run the lines from `source` with `executor`, writing each to `writer`. `previous` holds the
/// succeeded lines of an earlier attempt (resume), slimmed to what aggregation needs.
pub async fn run_batch(
    executor: &Executor,
    mut source: mpsc::Receiver<Vec<PendingLine>>,
    writer: &RunWriter,
    config: &BatchConfig,
    progress: &dyn Progress,
    mut cancel: watch::Receiver<bool>,
    previous: Vec<LineResult>,
) -> BatchOutcome {
    let aggregating = !executor.dag().aggregation_nodes.is_empty() && !config.skip_aggregation;
    let mut tally = Tally {
        outcome: BatchOutcome::default(),
        endpoint_streak: 0,
        config_streak: 0,
        first_config_error: None,
        keep: executor.aggregation_dependencies(),
        kept: if aggregating { previous } else { Vec::new() },
        aggregating,
        finished: Vec::new(),
        config,
        progress,
    };
    let mut in_flight = FuturesUnordered::new();
    // Lines received from the source but not started yet (it sends them in chunks).
    let mut queued: VecDeque<PendingLine> = VecDeque::new();
    let mut source_open = true;
    let concurrency = config.concurrency.max(1);
    let mut cancel_live = true;

    loop {
        if *cancel.borrow() {
            tally.outcome.canceled = true;
            break;
        }
        while in_flight.len() < concurrency
            && let Some(p) = queued.pop_front()
        {
            in_flight.push(run_one(
                executor,
                p,
                Some(config.line_timeout.unwrap_or(DEFAULT_LINE_TIMEOUT)),
                config.shared_slots.clone(),
            ));
        }
        let can_take = source_open && queued.is_empty() && in_flight.len() < concurrency;
        if !can_take && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            changed = cancel.changed(), if cancel_live => match changed {
                // Nobody can cancel any more.
                Err(_) => cancel_live = false,
                Ok(()) => if *cancel.borrow() {
                    tally.outcome.canceled = true;
                    break;
                }
            },
            chunk = source.recv(), if can_take => match chunk {
                Some(lines) => queued.extend(lines),
                None => source_open = false,
            },
            Some(line) = in_flight.next(), if !in_flight.is_empty() => {
                tally.add(line);
                // Every other line finished by now goes to the writer in the same message.
                while tally.outcome.endpoint_unusable.is_none()
                    && tally.outcome.misconfigured.is_none()
                    && let Some(Some(line)) = in_flight.next().now_or_never()
                {
                    tally.add(line);
                }
                if writer.lines(std::mem::take(&mut tally.finished)).await.is_err() {
                    // The writer reports its own error when finished; stop feeding it.
                    break;
                }
                if tally.outcome.endpoint_unusable.is_some() || tally.outcome.misconfigured.is_some() {
                    break;
                }
            }
        }
    }
    drop(in_flight);
    let mut outcome = tally.outcome;
    if aggregating
        && !outcome.canceled
        && outcome.endpoint_unusable.is_none()
        && outcome.misconfigured.is_none()
    {
        let agg = executor.run_aggregation(&tally.kept).await;
        let _ = writer.aggregation(agg.clone());
        outcome.aggregation = Some(agg);
    }
    outcome
}

/// What the batch loop keeps of the lines that finished.
struct Tally<'a> {
    outcome: BatchOutcome,
    /// Lines failed in a row because the endpoint could not be used at all.
    endpoint_streak: usize,
    /// Lines failed in a row with the same configuration error (kind and node), and the first.
    config_streak: usize,
    first_config_error: Option<ErrorInfo>,
    /// The nodes aggregation reads, and the succeeded lines slimmed to them (when aggregating).
    keep: HashSet<String>,
    kept: Vec<LineResult>,
    aggregating: bool,
    /// Finished lines not handed to the writer yet.
    finished: Vec<LineResult>,
    config: &'a BatchConfig,
    progress: &'a dyn Progress,
}

impl Tally<'_> {
    /// Count a finished line and queue it for the writer.
    fn add(&mut self, line: LineResult) {
        self.progress.line_finished(&line);
        let outcome = &mut self.outcome;
        outcome.tokens.add(&line.tokens);
        if line.succeeded() {
            outcome.completed += 1;
            self.endpoint_streak = 0;
            self.config_streak = 0;
            if self.aggregating {
                self.kept.push(slim(&line, &self.keep));
            }
        } else {
            outcome.failed += 1;
            if let Some(e) = &line.error {
                if outcome.first_errors.len() < FIRST_ERRORS_KEPT {
                    outcome.first_errors.push((line.line_number, e.clone()));
                }
                if e.kind == ErrorKind::Endpoint && outcome.completed == 0 {
                    self.endpoint_streak += 1;
                    if self.endpoint_streak >= self.config.endpoint_failure_limit.max(1) {
                        outcome.endpoint_unusable = Some(e.clone());
                    }
                } else {
                    self.endpoint_streak = 0;
                }
                let config_kind = matches!(
                    e.kind,
                    ErrorKind::Template | ErrorKind::Input | ErrorKind::Connection
                );
                let same = self
                    .first_config_error
                    .as_ref()
                    .is_some_and(|f| f.kind == e.kind && f.node == e.node);
                if config_kind && outcome.completed == 0 && (same || self.config_streak == 0) {
                    if self.config_streak == 0 {
                        self.first_config_error = Some(e.clone());
                    }
                    self.config_streak += 1;
                    if self.config_streak >= self.config.config_failure_limit.max(1) {
                        outcome.misconfigured = self.first_config_error.clone();
                    }
                } else {
                    self.config_streak = 0;
                    self.first_config_error = None;
                }
            }
        }
        self.finished.push(line);
    }
}

async fn run_one(
    executor: &Executor,
    pending: PendingLine,
    timeout: Option<Duration>,
    slots: Option<Arc<Semaphore>>,
) -> LineResult {
    // Held until the line is done; a closed semaphore (never closed here) just runs the line.
    let _slot = match &slots {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    let inputs = match pending.inputs {
        Ok(i) => i,
        Err(e) => return failed_line(pending.line_number, Map::new(), e),
    };
    match timeout {
        None => executor.run_line(pending.line_number, &inputs).await,
        Some(t) => {
            let started = SystemTime::now();
            match tokio::time::timeout(t, executor.run_line(pending.line_number, &inputs)).await {
                Ok(line) => line,
                Err(_) => {
                    let mut line = failed_line(
                        pending.line_number,
                        inputs,
                        ErrorInfo::new(
                            ErrorKind::Timeout,
                            format!(
                                "the line did not finish within {:.1} s (--line-timeout)",
                                t.as_secs_f64()
                            ),
                        ),
                    );
                    // It ran until the timeout: count that time in the run's latency.
                    line.start_time = timestamp(started);
                    line.duration_ms = started.elapsed().map_or(0.0, |d| d.as_secs_f64() * 1e3);
                    line
                }
            }
        }
    }
}

/// A line that failed before (or instead of) running.
pub(crate) fn failed_line(
    line_number: usize,
    inputs: Map<String, Value>,
    error: ErrorInfo,
) -> LineResult {
    let now = timestamp(SystemTime::now());
    LineResult {
        line_number,
        status: Status::Failed,
        inputs,
        outputs: Map::new(),
        error: Some(error),
        nodes: Vec::new(),
        start_time: now.clone(),
        end_time: now,
        duration_ms: 0.0,
        tokens: Tokens::default(),
        cost_usd: 0.0,
        saved_usd: 0.0,
        cache_hits: 0,
        unpriced_models: Vec::new(),
    }
}

/// The parts of a line aggregation needs: its inputs and the nodes aggregation references.
fn slim(line: &LineResult, keep: &HashSet<String>) -> LineResult {
    LineResult {
        line_number: line.line_number,
        status: line.status,
        inputs: line.inputs.clone(),
        outputs: Map::new(),
        error: None,
        nodes: line
            .nodes
            .iter()
            .filter(|n| keep.contains(&n.node))
            .cloned()
            .collect(),
        start_time: String::new(),
        end_time: String::new(),
        duration_ms: line.duration_ms,
        tokens: line.tokens,
        cost_usd: line.cost_usd,
        saved_usd: line.saved_usd,
        cache_hits: line.cache_hits,
        unpriced_models: Vec::new(),
    }
}
