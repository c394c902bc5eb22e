//! Progress of a batch run: an indicatif bar on a terminal, plain periodic lines otherwise
//! (CI logs), fed by the batch engine as each line finishes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use flow::batch::Progress;
use flow::record::LineResult;

/// How often plain-text progress lines are printed when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// Counters shared with the engine, and how to show them.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    total: Option<usize>,
    done: AtomicUsize,
    failed: AtomicUsize,
    tokens: AtomicU64,
    cost_micro_usd: AtomicU64,
    started: Instant,
    last_report: Mutex<Instant>,
    /// When the bar's message (tokens, cost, failures) was last set.
    last_message: Mutex<Option<Instant>>,
    /// Lines an earlier attempt finished (resumed runs).
    already_done: AtomicUsize,
}

impl CliProgress {
    /// Progress for `total` lines (when known), `already_done` of which finished in an earlier
    /// attempt (resume).
    pub fn new(total: Option<usize>, already_done: usize, terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t as u64), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:28.cyan/blue} {pos}/{len} lines · {per_sec} · ETA {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("█▉▊▋▌▍▎▏ ");
            bar.set_style(style);
            bar.set_position(already_done as u64);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        CliProgress {
            bar,
            total,
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            tokens: AtomicU64::new(0),
            cost_micro_usd: AtomicU64::new(0),
            started: Instant::now(),
            last_report: Mutex::new(Instant::now()),
            last_message: Mutex::new(None),
            already_done: AtomicUsize::new(already_done),
        }
    }

    /// Lines finished in this attempt.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Clear the bar before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn message(&self) -> String {
        let failed = self.failed.load(Ordering::Relaxed);
        let tokens = self.tokens.load(Ordering::Relaxed);
        let cost = self.cost_micro_usd.load(Ordering::Relaxed) as f64 / 1e6;
        let mut parts = Vec::new();
        if failed > 0 {
            parts.push(format!("{failed} failed"));
        }
        parts.push(format!("{} tokens", human_count(tokens)));
        if cost > 0.0 {
            parts.push(format!("${cost:.4}"));
        }
        parts.join(" · ")
    }

    fn plain_line(&self) -> String {
        let done = self.done() + self.already_done.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            self.done() as f64 / elapsed
        } else {
            0.0
        };
        let of = self.total.map(|t| format!("/{t}")).unwrap_or_default();
        let eta = match self.total {
            Some(t) if rate > 0.0 && t > done => {
                format!(" · ETA {}", human_duration((t - done) as f64 / rate))
            }
            _ => String::new(),
        };
        format!(
            "progress: {done}{of} lines · {rate:.1} lines/s{eta} · {}",
            self.message()
        )
    }
}

impl Progress for CliProgress {
    fn lines_kept(&self, lines: usize) {
        self.already_done.fetch_add(lines, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(lines as u64);
        }
    }

    fn line_finished(&self, line: &LineResult) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if !line.succeeded() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.tokens
            .fetch_add(line.tokens.total_tokens, Ordering::Relaxed);
        self.cost_micro_usd
            .fetch_add((line.cost_usd * 1e6).round() as u64, Ordering::Relaxed);
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                // The tokens and cost shown are at most MESSAGE_EVERY old at each redraw (the
                // bar redraws every 200 ms), without formatting them for every line.
                let due = self.last_message.lock().map_or(true, |mut last| {
                    let due = !line.succeeded()
                        || last.is_none_or(|t: Instant| t.elapsed() >= MESSAGE_EVERY);
                    if due {
                        *last = Some(Instant::now());
                    }
                    due
                });
                if due {
                    bar.set_message(self.message());
                }
            }
            None => {
                let Ok(mut last) = self.last_report.lock() else {
                    return;
                };
                if last.elapsed() >= PLAIN_INTERVAL {
                    *last = Instant::now();
                    eprintln!("{}", self.plain_line());
                }
            }
        }
    }
}

/// How stale the bar's token and cost figures may be.
const MESSAGE_EVERY: Duration = Duration::from_millis(50);

/// `12.3k`, `4.5M`.
pub fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// `45s`, `3m05s`, `1h02m`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}
