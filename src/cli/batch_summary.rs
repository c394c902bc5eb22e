//! The lines printed when a batch ends: lines succeeded and failed, time and rate, tokens, cost
//! and cache hits; latency; the run's metrics; the first errors. Printed for the batches
//! `flow eval` runs (the evaluation flow, repeated samples) and `flow run --data`, one way.

use std::time::Duration;

use super::output::{bold, color_stderr, dim};
use super::progress::{human_count, human_duration};
use flow::batch::BatchOutcome;
use flow::run_store::{RunDir, RunMeta, RunStatus};

/// Print the summary of a finished batch: `ran` lines ran in `elapsed`.
pub(super) fn print(
    meta: &RunMeta,
    outcome: &BatchOutcome,
    dir: &RunDir,
    elapsed: Duration,
    ran: usize,
) {
    let color = color_stderr();
    let rate = if elapsed.as_secs_f64() > 0.0 {
        ran as f64 / elapsed.as_secs_f64()
    } else {
        0.0
    };
    let mark = if meta.failed_lines == 0 && meta.status == RunStatus::Completed {
        "✓"
    } else {
        "✗"
    };
    let mut parts = vec![format!(
        "{}/{} lines succeeded",
        meta.completed_lines, meta.total_lines
    )];
    if meta.failed_lines > 0 {
        parts.push(format!("{} failed", meta.failed_lines));
    }
    parts.push(format!(
        "{} at {rate:.1} lines/s",
        human_duration(elapsed.as_secs_f64())
    ));
    parts.push(format!("{} tokens", human_count(meta.tokens.total_tokens)));
    match meta.cost_usd {
        Some(c) => parts.push(format!("${c:.4}")),
        None if !meta.unpriced_models.is_empty() => parts.push("cost unknown".into()),
        None => {}
    }
    if meta.cache_hits > 0 {
        parts.push(if meta.saved_usd > 0.0 {
            format!(
                "{} cached (saved ${:.4})",
                human_count(meta.cache_hits),
                meta.saved_usd
            )
        } else {
            format!("{} cached", human_count(meta.cache_hits))
        });
    }
    eprintln!("{} {}", bold(mark, color), parts.join(" · "));
    eprintln!(
        "{}",
        dim(
            &format!(
                "latency p50 {:.0} ms · p95 {:.0} ms · run {}",
                meta.latency_ms.p50,
                meta.latency_ms.p95,
                dir.path.display()
            ),
            color
        )
    );
    if let Some(aggregation) = &outcome.aggregation {
        for (k, v) in &aggregation.metrics {
            eprintln!("metric {k}: {}", human_value(v));
        }
    }
    if meta.offline {
        eprintln!(
            "{}",
            dim(
                "offline: every model answer came from the echo provider, not a model",
                color
            )
        );
    }
    for (line, e) in &outcome.first_errors {
        eprintln!("  line {line}: {}", e.message.lines().next().unwrap_or(""));
    }
    if meta.failed_lines > outcome.first_errors.len() && !outcome.first_errors.is_empty() {
        eprintln!("  ... see {}", dir.error_file().display());
    }
}

/// A metric as people read it: a number rounded to at most 6 significant digits (no
/// `0.000019799999999999997`), anything else as JSON. Files keep the exact value.
pub(super) fn human_value(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(x) if v.is_f64() && x.is_finite() && x != 0.0 => {
            let digits = (6 - 1 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
            let text = format!("{x:.digits$}");
            if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                text
            }
        }
        Some(x) if v.is_f64() && x == 0.0 => "0".to_string(),
        _ => flow::non_finite::to_string(v).unwrap_or_else(|_| v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::human_value;
    use serde_json::json;

    #[test]
    fn numbers_are_rounded_for_people() {
        for (value, shown) in [
            (json!(0.000019799999999999997), "0.0000198"),
            (json!(0.1 + 0.2), "0.3"),
            (json!(0.8333333333333334), "0.833333"),
            (json!(12345.678), "12345.7"),
            (json!(3), "3"),
            (json!(2.0), "2"),
            (json!(0.0), "0"),
            (json!("text"), "\"text\""),
        ] {
            assert_eq!(human_value(&value), shown, "{value}");
        }
    }
}
