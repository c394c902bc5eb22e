//! The comparison: `summary.json` (metrics per variant and dataset, the best variant per
//! metric, the winner and the rule that chose it, the content hashes, the run and evaluation
//! directories) and the table printed at the end.
//!
//! The winner: the variant with the best mean of the winner metric over the datasets it ran on
//! (higher is better unless the metric is a latency, cost, token count, error rate and the like,
//! or `winner: {goal: min}` says so). The winner metric is `winner.metric` from the file, else
//! the first metric the first evaluator reported. Ties go to the variant planned first.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::file::WinnerDef;
use super::runner::RunResult;
use crate::gate::{Direction, direction_of};

/// The file written into the comparison directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// SHA-256 hashes of everything an experiment read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hashes {
    /// Experiment file name (base, overlay) → hash.
    pub experiment: IndexMap<String, String>,
    /// Dataset name → hash of its file.
    pub datasets: IndexMap<String, String>,
    /// Variant id → hash of the flow as it ran.
    pub flows: IndexMap<String, String>,
    /// Evaluator name → hash of its flow (or its spec, for a built-in).
    #[serde(default)]
    pub evaluators: IndexMap<String, String>,
}

impl Hashes {
    /// One hash of the experiment file(s), for each run's meta.
    pub fn experiment_digest(&self) -> String {
        let joined: Vec<String> = self
            .experiment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.experiment.len() == 1 {
            self.experiment.values().next().cloned().unwrap_or_default()
        } else {
            crate::hash::sha256_bytes(joined.join("\n").as_bytes())
        }
    }
}

/// One run in the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRun {
    /// `variant · dataset`.
    pub label: String,
    pub variant: String,
    pub dataset: String,
    /// Relative to the comparison directory.
    pub run_dir: String,
    pub eval_dirs: Vec<String>,
    /// Evaluator metrics (`accuracy`, `exact_match.mean`, ...).
    pub metrics: Map<String, Json>,
    pub status: String,
    pub lines: usize,
    pub failed_lines: usize,
    pub tokens: u64,
    pub cost_usd: Option<f64>,
    pub cache_hits: u64,
    pub latency_p50_ms: f64,
    pub flow_hash: String,
    pub dataset_hash: String,
    /// Evaluations that failed, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The best run for one metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Best {
    pub variant: String,
    pub dataset: String,
    pub value: f64,
    pub higher_is_better: bool,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Always `flow.experiment`.
    pub kind: String,
    pub experiment: String,
    pub created: String,
    pub file: String,
    #[serde(default)]
    pub overlay: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    /// Variant ids in the order they were planned.
    pub variants: Vec<String>,
    pub datasets: Vec<String>,
    pub runs: Vec<SummaryRun>,
    /// Metric → the best (variant, dataset).
    pub best: IndexMap<String, Best>,
    /// Dataset → metric → the best variant there.
    pub best_by_dataset: IndexMap<String, IndexMap<String, Best>>,
    /// Variant → metric → mean over datasets.
    pub means: IndexMap<String, IndexMap<String, f64>>,
    pub winner: Option<String>,
    pub winner_metric: Option<String>,
    pub winner_rule: String,
    pub hashes: Hashes,
    /// An earlier comparison with the very same hashes, if any.
    #[serde(default)]
    pub unchanged_since: Option<String>,
    pub offline: bool,
    pub flow_version: String,
}

fn relative(from: &Path, to: &Path) -> String {
    // Both live under `.flow/`: experiments/<x>/ and runs/<y>/.
    match (from.parent().and_then(Path::parent), to.parent()) {
        (Some(flow_a), Some(runs)) if runs.parent() == Some(flow_a) => {
            let runs_name = runs.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = to.file_name().map(|n| n.to_string_lossy().into_owned());
            match (runs_name, name) {
                (Some(r), Some(n)) => format!("../../{r}/{n}"),
                _ => to.display().to_string(),
            }
        }
        _ => to.display().to_string(),
    }
}

/// Build the summary of `results` (in plan order), written to `dir`.
#[allow(clippy::too_many_arguments)]
pub fn build(
    experiment: &super::Experiment,
    env: Option<&str>,
    dir: &Path,
    variants: &[String],
    results: &[RunResult],
    hashes: Hashes,
    winner: Option<&WinnerDef>,
    offline: bool,
) -> Summary {
    let runs: Vec<SummaryRun> = results
        .iter()
        .map(|r| {
            let mut metrics = Map::new();
            let mut problems = Vec::new();
            for e in &r.evals {
                for (k, v) in &e.metrics {
                    let key = if metrics.contains_key(k) {
                        format!("{}.{k}", e.evaluator)
                    } else {
                        k.clone()
                    };
                    metrics.insert(key, v.clone());
                }
                if let Some(p) = &e.problem {
                    problems.push(format!("{}: {p}", e.evaluator));
                }
            }
            SummaryRun {
                label: format!("{} · {}", r.variant, r.dataset),
                variant: r.variant.clone(),
                dataset: r.dataset.clone(),
                run_dir: relative(dir, &r.dir.path),
                eval_dirs: r.evals.iter().map(|e| relative(dir, &e.dir.path)).collect(),
                metrics,
                status: format!("{:?}", r.meta.status).to_lowercase(),
                lines: r.meta.total_lines,
                failed_lines: r.meta.failed_lines,
                tokens: r.meta.tokens.total_tokens,
                cost_usd: r.meta.cost_usd,
                cache_hits: r.meta.cache_hits,
                latency_p50_ms: r.meta.latency_ms.p50,
                flow_hash: r.flow_hash.clone(),
                dataset_hash: r.dataset_hash.clone(),
                problems,
            }
        })
        .collect();

    let ranking = rank(&runs, variants, winner);
    Summary {
        kind: "flow.experiment".into(),
        experiment: experiment.name.clone(),
        created: crate::record::timestamp(std::time::SystemTime::now()),
        file: experiment.file.display().to_string(),
        overlay: experiment.overlay.as_ref().map(|p| p.display().to_string()),
        env: env.map(str::to_string),
        variants: variants.to_vec(),
        datasets: experiment.datasets.iter().map(|d| d.name.clone()).collect(),
        runs,
        best: ranking.best,
        best_by_dataset: ranking.best_by_dataset,
        means: ranking.means,
        winner: ranking.winner,
        winner_metric: ranking.winner_metric,
        winner_rule: ranking.winner_rule,
        hashes,
        unchanged_since: None,
        offline,
        flow_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The comparison of some runs: best per metric (overall and per dataset), each variant's mean
/// per metric, and the winner with its rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub best: IndexMap<String, Best>,
    pub best_by_dataset: IndexMap<String, IndexMap<String, Best>>,
    pub means: IndexMap<String, IndexMap<String, f64>>,
    pub winner: Option<String>,
    pub winner_metric: Option<String>,
    pub winner_rule: String,
}

/// Rank `runs` of `variants` (in plan order) by their metrics.
pub fn rank(runs: &[SummaryRun], variants: &[String], winner: Option<&WinnerDef>) -> Ranking {
    // Metric names in the order first seen.
    let mut metric_names: Vec<String> = Vec::new();
    for r in runs {
        for k in r.metrics.keys() {
            if !metric_names.contains(k) {
                metric_names.push(k.clone());
            }
        }
    }
    let higher = |metric: &str| -> bool {
        match winner {
            Some(w) if w.metric.as_deref() == Some(metric) && w.higher_is_better.is_some() => {
                w.higher_is_better == Some(true)
            }
            _ => direction_of(metric) == Direction::HigherIsBetter,
        }
    };
    let better = |a: f64, b: f64, hi: bool| if hi { a > b } else { a < b };

    let mut best: IndexMap<String, Best> = IndexMap::new();
    let mut best_by_dataset: IndexMap<String, IndexMap<String, Best>> = IndexMap::new();
    for m in &metric_names {
        let hi = higher(m);
        for r in runs {
            let Some(v) = r.metrics.get(m).and_then(Json::as_f64) else {
                continue;
            };
            let candidate = Best {
                variant: r.variant.clone(),
                dataset: r.dataset.clone(),
                value: v,
                higher_is_better: hi,
            };
            match best.get(m) {
                Some(b) if !better(v, b.value, hi) => {}
                _ => {
                    best.insert(m.clone(), candidate.clone());
                }
            }
            let per = best_by_dataset.entry(r.dataset.clone()).or_default();
            match per.get(m) {
                Some(b) if !better(v, b.value, hi) => {}
                _ => {
                    per.insert(m.clone(), candidate);
                }
            }
        }
    }

    let mut means: IndexMap<String, IndexMap<String, f64>> = IndexMap::new();
    for variant in variants {
        let mut per = IndexMap::new();
        for m in &metric_names {
            let values: Vec<f64> = runs
                .iter()
                .filter(|r| &r.variant == variant)
                .filter_map(|r| r.metrics.get(m).and_then(Json::as_f64))
                .collect();
            if !values.is_empty() {
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                per.insert(m.clone(), (mean * 1e6).round() / 1e6);
            }
        }
        means.insert(variant.clone(), per);
    }

    let winner_metric = winner
        .and_then(|w| w.metric.clone())
        .or_else(|| metric_names.first().cloned());
    let (winner_name, winner_rule) = match &winner_metric {
        None => (
            None,
            "no evaluator reported a metric, so there is no winner".to_string(),
        ),
        Some(m) => {
            let hi = higher(m);
            let mut chosen: Option<(&String, f64)> = None;
            for v in variants {
                if let Some(x) = means.get(v).and_then(|p| p.get(m)) {
                    if chosen.is_none_or(|(_, c)| better(*x, c, hi)) {
                        chosen = Some((v, *x));
                    }
                }
            }
            let rule = format!(
                "{} mean `{m}` over the datasets; ties go to the variant planned first",
                if hi { "highest" } else { "lowest" }
            );
            (chosen.map(|(v, _)| v.clone()), rule)
        }
    };

    Ranking {
        best,
        best_by_dataset,
        means,
        winner: winner_name,
        winner_metric,
        winner_rule,
    }
}

/// `.flow/experiments` under `project`.
pub fn experiments_root(project: &Path) -> PathBuf {
    project.join(".flow").join("experiments")
}

/// The newest earlier comparison of experiment `name` whose hashes equal `hashes`.
pub fn unchanged_since(
    project: &Path,
    name: &str,
    hashes: &Hashes,
    skip: &Path,
) -> Option<PathBuf> {
    let entries = std::fs::read_dir(experiments_root(project)).ok()?;
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path == skip {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path.join(SUMMARY_FILE)) else {
            continue;
        };
        let Ok(s) = crate::non_finite::from_str::<Summary>(&text) else {
            continue;
        };
        if s.experiment == name && &s.hashes == hashes {
            found.push((s.created, path));
        }
    }
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// Write `summary.json` into `dir`.
pub fn write(dir: &Path, summary: &Summary) -> std::io::Result<()> {
    let value = serde_json::to_value(summary).map_err(std::io::Error::other)?;
    crate::record::write_json_atomic(&dir.join(SUMMARY_FILE), &value)
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The table printed at the end: a row per variant and dataset, a column per metric, the best
/// value of each metric per dataset marked `*`, then the winner line.
pub fn table(summary: &Summary) -> String {
    let metrics: Vec<String> = summary.best.keys().cloned().collect();
    let mut header = vec!["variant".to_string(), "dataset".to_string()];
    header.extend(metrics.iter().cloned());
    header.extend([
        "lines".to_string(),
        "failed".to_string(),
        "cached".to_string(),
    ]);
    let mut rows: Vec<Vec<String>> = vec![header];
    for r in &summary.runs {
        let mut row = vec![r.variant.clone(), r.dataset.clone()];
        for m in &metrics {
            let cell = match r.metrics.get(m).and_then(crate::non_finite::as_f64) {
                Some(v) => {
                    let is_best = summary
                        .best_by_dataset
                        .get(&r.dataset)
                        .and_then(|b| b.get(m))
                        .is_some_and(|b| b.value == v);
                    format!("{}{}", fmt(v), if is_best { "*" } else { "" })
                }
                None => "-".into(),
            };
            row.push(cell);
        }
        row.push(r.lines.to_string());
        row.push(r.failed_lines.to_string());
        row.push(r.cache_hits.to_string());
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (ri, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if ri == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    match (&summary.winner, &summary.winner_metric) {
        (Some(w), Some(m)) => {
            let value = summary
                .means
                .get(w)
                .and_then(|p| p.get(m))
                .map(|v| fmt(*v))
                .unwrap_or_default();
            out.push_str(&format!(
                "winner: {w} ({m} {value}; rule: {})\n",
                summary.winner_rule
            ));
        }
        _ => out.push_str(&format!("winner: none ({})\n", summary.winner_rule)),
    }
    if summary.offline {
        out.push_str("offline: the answers came from the echo provider, so the winner says nothing about a model\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(variant: &str, dataset: &str, metrics: &[(&str, f64)]) -> SummaryRun {
        SummaryRun {
            label: format!("{variant} · {dataset}"),
            variant: variant.into(),
            dataset: dataset.into(),
            run_dir: String::new(),
            eval_dirs: Vec::new(),
            metrics: metrics
                .iter()
                .map(|(k, v)| (k.to_string(), Json::from(*v)))
                .collect(),
            status: "completed".into(),
            lines: 1,
            failed_lines: 0,
            tokens: 0,
            cost_usd: None,
            cache_hits: 0,
            latency_p50_ms: 0.0,
            flow_hash: String::new(),
            dataset_hash: String::new(),
            problems: Vec::new(),
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_winner_has_the_best_mean_of_the_first_metric_over_datasets() {
        let runs = [
            run("default", "a", &[("accuracy", 0.5), ("latency_ms", 100.0)]),
            run("default", "b", &[("accuracy", 0.9), ("latency_ms", 100.0)]),
            run("v1", "a", &[("accuracy", 0.8), ("latency_ms", 300.0)]),
            run("v1", "b", &[("accuracy", 0.7), ("latency_ms", 50.0)]),
        ];
        let r = rank(&runs, &ids(&["default", "v1"]), None);
        assert_eq!(r.winner_metric.as_deref(), Some("accuracy"));
        assert_eq!(r.winner.as_deref(), Some("v1"), "0.75 beats 0.7");
        assert_eq!(r.best["accuracy"].variant, "default");
        assert_eq!(r.best["accuracy"].dataset, "b");
        // Latency improves downwards.
        assert_eq!(r.best["latency_ms"].value, 50.0);
        assert!(!r.best["latency_ms"].higher_is_better);
        assert_eq!(r.best_by_dataset["a"]["accuracy"].variant, "v1");
        assert_eq!(r.means["default"]["latency_ms"], 100.0);
        assert!(r.winner_rule.contains("highest mean `accuracy`"));
    }

    #[test]
    fn the_winner_rule_can_name_a_metric_and_a_goal_and_ties_go_first() {
        let runs = [
            run("default", "a", &[("accuracy", 0.5), ("score", 2.0)]),
            run("v1", "a", &[("accuracy", 0.5), ("score", 1.0)]),
        ];
        let tie = rank(&runs, &ids(&["default", "v1"]), None);
        assert_eq!(tie.winner.as_deref(), Some("default"));
        let rule = WinnerDef {
            metric: Some("score".into()),
            higher_is_better: Some(false),
            origin: super::super::Origin {
                file: "e.yaml".into(),
                path: "winner".into(),
                location: None,
            },
        };
        let r = rank(&runs, &ids(&["default", "v1"]), Some(&rule));
        assert_eq!(r.winner.as_deref(), Some("v1"));
        assert!(r.winner_rule.starts_with("lowest mean `score`"));
        let none = rank(&[run("default", "a", &[])], &ids(&["default"]), None);
        assert_eq!(none.winner, None);
    }
}
