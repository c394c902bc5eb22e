//! `GET /metrics`: counters and a latency histogram in the Prometheus text format (0.0.4),
//! written by hand: a few counters need no metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::record::{LineResult, Status};

/// Upper bounds (seconds) of the `/score` latency histogram's buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The server's metrics; shared by every request.
#[derive(Debug, Default)]
pub struct Metrics {
    in_flight: AtomicI64,
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// (route, status) → requests.
    requests: BTreeMap<(&'static str, u16), u64>,
    /// Cumulative counts per bucket of `LATENCY_BUCKETS` (plus the `+Inf` one).
    latency_buckets: Vec<u64>,
    latency_sum: f64,
    latency_count: u64,
    /// Line status → lines.
    lines: BTreeMap<&'static str, u64>,
    /// Error kind → failed lines.
    errors: BTreeMap<String, u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_usd: f64,
}

/// Decrements the in-flight gauge when dropped (a request that ends in any way).
#[derive(Debug)]
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts a request in flight until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One answered request of `route` with `status`.
    pub fn record_request(&self, route: &'static str, status: u16) {
        *self.counters().requests.entry((route, status)).or_default() += 1;
    }

    /// One `/score` line: its wall time (to the last byte for a stream), status, tokens, cost.
    pub fn record_line(&self, line: &LineResult, elapsed: Duration) {
        let mut c = self.counters();
        c.observe_latency(elapsed.as_secs_f64());
        let status = match line.status {
            Status::Completed => "completed",
            _ => "failed",
        };
        *c.lines.entry(status).or_default() += 1;
        if let Some(e) = &line.error {
            let kind = serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "other".into());
            *c.errors.entry(kind).or_default() += 1;
        }
        c.prompt_tokens += line.tokens.prompt_tokens;
        c.completion_tokens += line.tokens.completion_tokens;
        c.cost_usd += line.cost_usd;
    }

    /// A `/score` request that ran out of time (its line never finished).
    pub fn record_timeout(&self, elapsed: Duration) {
        let mut c = self.counters();
        c.observe_latency(elapsed.as_secs_f64());
        *c.lines.entry("failed").or_default() += 1;
        *c.errors.entry("timeout".into()).or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, ready: bool) -> String {
        let c = self.counters();
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP flow_requests_total HTTP requests answered, by route and status.\n# TYPE flow_requests_total counter"
        );
        for ((route, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "flow_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP flow_request_duration_seconds Time to answer POST /score (to the last byte of a stream).\n# TYPE flow_request_duration_seconds histogram"
        );
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let n = c.latency_buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "flow_request_duration_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "flow_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\nflow_request_duration_seconds_sum {}\nflow_request_duration_seconds_count {}",
            c.latency_count, c.latency_sum, c.latency_count
        );
        let _ = writeln!(
            out,
            "# HELP flow_requests_in_flight Requests being answered now.\n# TYPE flow_requests_in_flight gauge\nflow_requests_in_flight {}",
            self.in_flight()
        );
        let _ = writeln!(
            out,
            "# HELP flow_lines_total Flow lines run by POST /score, by status.\n# TYPE flow_lines_total counter"
        );
        for status in ["completed", "failed"] {
            let n = c.lines.get(status).copied().unwrap_or(0);
            let _ = writeln!(out, "flow_lines_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP flow_line_errors_total Failed lines, by error kind.\n# TYPE flow_line_errors_total counter"
        );
        for (kind, n) in &c.errors {
            let _ = writeln!(out, "flow_line_errors_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP flow_tokens_total Model tokens used, by type.\n# TYPE flow_tokens_total counter\nflow_tokens_total{{type=\"prompt\"}} {}\nflow_tokens_total{{type=\"completion\"}} {}",
            c.prompt_tokens, c.completion_tokens
        );
        let _ = writeln!(
            out,
            "# HELP flow_cost_usd_total Cost of model calls whose price is known, in USD.\n# TYPE flow_cost_usd_total counter\nflow_cost_usd_total {}",
            c.cost_usd
        );
        let _ = writeln!(
            out,
            "# HELP flow_ready Whether the flow is loaded and the server takes requests.\n# TYPE flow_ready gauge\nflow_ready {}",
            u8::from(ready)
        );
        out
    }
}

impl Counters {
    fn observe_latency(&mut self, seconds: f64) {
        if self.latency_buckets.is_empty() {
            self.latency_buckets = vec![0; LATENCY_BUCKETS.len()];
        }
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.latency_buckets[i] += 1;
            }
        }
        self.latency_sum += seconds;
        self.latency_count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record_timeout(Duration::from_millis(30));
        m.record_timeout(Duration::from_millis(300));
        m.record_request("/score", 504);
        let text = m.render(true);
        assert!(text.contains("flow_request_duration_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("flow_request_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("flow_request_duration_seconds_bucket{le=\"0.5\"} 2"));
        assert!(text.contains("flow_request_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("flow_request_duration_seconds_count 2"));
        assert!(text.contains("flow_requests_total{route=\"/score\",status=\"504\"} 1"));
        assert!(text.contains("flow_line_errors_total{kind=\"timeout\"} 2"));
        assert!(text.contains("flow_ready 1"));
    }
}
