//! Progress of a batch run: an indicatif bar on a terminal, plain periodic lines otherwise
//! (CI logs), fed by the batch engine as each line finishes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use flow::batch::Progress;
use flow::record::LineResult;

/// How often plain-text progress lines are printed when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// Counters shared with the engine, and how to show them.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    total: Option<usize>,
    counts: Arc<Counts>,
    started: Instant,
    last_report: Mutex<Instant>,
    /// Lines an earlier attempt finished (resumed runs).
    already_done: AtomicUsize,
}

/// What the bar shows besides its position: read at every redraw, so the figures are current
/// whenever the bar is drawn.
#[derive(Default)]
struct Counts {
    done: AtomicUsize,
    failed: AtomicUsize,
    tokens: AtomicU64,
    cost_micro_usd: AtomicU64,
}

impl Counts {
    /// `3 failed · 12.3k tokens · $0.0123`.
    fn text(&self) -> String {
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
}

impl CliProgress {
    /// Progress for `total` lines (when known), `already_done` of which finished in an earlier
    /// attempt (resume).
    pub fn new(total: Option<usize>, already_done: usize, terminal: bool) -> Self {
        Self::drawn_to(
            total,
            already_done,
            terminal.then(ProgressDrawTarget::stderr),
        )
    }

    /// [`new`](Self::new), with the bar drawn to `target` (none: plain lines).
    fn drawn_to(
        total: Option<usize>,
        already_done: usize,
        target: Option<ProgressDrawTarget>,
    ) -> Self {
        let counts = Arc::new(Counts::default());
        let shown = Arc::clone(&counts);
        let bar = target.map(|target| {
            let bar = ProgressBar::with_draw_target(total.map(|t| t as u64), target);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:28.cyan/blue} {pos}/{len} lines · {per_sec} · ETA {eta} · {counts}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "counts",
                move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = out.write_str(&shown.text());
                },
            )
            .progress_chars("█▉▊▋▌▍▎▏ ");
            bar.set_style(style);
            bar.set_position(already_done as u64);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        CliProgress {
            bar,
            total,
            counts,
            started: Instant::now(),
            last_report: Mutex::new(Instant::now()),
            already_done: AtomicUsize::new(already_done),
        }
    }

    /// Lines finished in this attempt.
    pub fn done(&self) -> usize {
        self.counts.done.load(Ordering::Relaxed)
    }

    /// Clear the bar before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
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
            self.counts.text()
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
        let c = &self.counts;
        c.done.fetch_add(1, Ordering::Relaxed);
        if !line.succeeded() {
            c.failed.fetch_add(1, Ordering::Relaxed);
        }
        c.tokens
            .fetch_add(line.tokens.total_tokens, Ordering::Relaxed);
        c.cost_micro_usd
            .fetch_add((line.cost_usd * 1e6).round() as u64, Ordering::Relaxed);
        match &self.bar {
            // The bar reads the counts when it redraws (every 200 ms, or now).
            Some(bar) => bar.inc(1),
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

#[cfg(test)]
mod tests {
    use super::*;
    use flow::record::{Status, Tokens};

    /// A terminal that keeps everything written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if let Ok(mut screen) = self.0.lock() {
                screen.push(s.to_string());
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(tokens: u64, cost_usd: f64) -> LineResult {
        LineResult {
            line_number: 0,
            status: Status::Completed,
            inputs: Default::default(),
            outputs: Default::default(),
            error: None,
            nodes: Vec::new(),
            start_time: String::new(),
            end_time: String::new(),
            duration_ms: 1.0,
            tokens: Tokens {
                prompt_tokens: tokens,
                completion_tokens: 0,
                total_tokens: tokens,
            },
            cost_usd,
            saved_usd: 0.0,
            cache_hits: 0,
            unpriced_models: Vec::new(),
        }
    }

    #[test]
    fn every_redraw_shows_the_current_tokens_and_cost() {
        let screen = Screen::default();
        let progress = CliProgress::drawn_to(
            Some(3),
            0,
            Some(ProgressDrawTarget::term_like(Box::new(screen.clone()))),
        );
        // The last bar drawn, after the steady tick (every 200 ms) redrew it.
        let shown = || {
            std::thread::sleep(Duration::from_millis(450));
            if let Some(bar) = &progress.bar {
                bar.tick();
            }
            let writes = screen.0.lock().map(|s| s.clone()).unwrap_or_default();
            writes
                .iter()
                .rev()
                .find(|w| w.contains("lines"))
                .cloned()
                .unwrap_or_default()
        };
        progress.line_finished(&line(10, 0.001));
        assert!(shown().contains("10 tokens · $0.0010"), "{}", shown());
        // Lines finishing in the same instant are all counted at the next redraw.
        progress.line_finished(&line(15, 0.002));
        progress.line_finished(&line(20, 0.0));
        let now = shown();
        assert!(now.contains("3/3 lines"), "{now}");
        assert!(now.contains("45 tokens · $0.0030"), "{now}");
        progress.finish();
    }
}
