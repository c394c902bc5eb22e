//! `meta.json`: what a run was (flow, variant, data, settings to resume it) and how it went
//! (status, counts, tokens, cost, latency percentiles).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::record::Tokens;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    /// Lines are running (or the process died; `flow run --resume` finishes it).
    Running,
    /// Every line succeeded.
    Completed,
    /// Some lines failed.
    Failed,
    /// Stopped by the user (Ctrl-C) before every line ran.
    Canceled,
}

/// Line latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// Percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [f64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        Latency {
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p95: percentile(samples, 95.0),
            p99: percentile(samples, 99.0),
            max: samples[samples.len() - 1],
            mean: (mean * 1000.0).round() / 1000.0,
        }
    }
}

/// The nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The contents of `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub name: String,
    /// The flow directory (absolute).
    pub flow: String,
    pub flow_name: String,
    /// `default`, or the non-default variants applied (`classify.variant_1`).
    pub variant: String,
    /// Every `use_variants` node and the variant it ran with.
    #[serde(default)]
    pub variants: IndexMap<String, String>,
    /// The dataset (absolute path).
    #[serde(default)]
    pub data: Option<String>,
    /// `--column-mapping` as given.
    #[serde(default)]
    pub column_mapping: Vec<String>,
    /// `--run BASE`, when the run joined a base run's outputs.
    #[serde(default)]
    pub base_run: Option<String>,
    pub status: RunStatus,
    pub created: String,
    #[serde(default)]
    pub end_time: Option<String>,
    /// Wall time of the run, summed over resumes, in seconds.
    #[serde(default)]
    pub duration_s: f64,
    pub total_lines: usize,
    pub completed_lines: usize,
    pub failed_lines: usize,
    pub tokens: Tokens,
    /// Total cost in USD, when every model's price is known.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Models used whose price is unknown (the cost is then a lower bound or absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced_models: Vec<String>,
    pub latency_ms: Latency,
    /// LLM requests answered from the response cache.
    #[serde(default)]
    pub cache_hits: u64,
    /// What the cached answers would have cost at the price table's rates (not in `cost_usd`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub saved_usd: f64,
    pub concurrency: usize,
    /// Every model answer came from the offline echo provider.
    #[serde(default)]
    pub offline: bool,
    /// The other settings the run started with, to resume it exactly.
    #[serde(default)]
    pub settings: RunSettings,
    /// The `flow` version that wrote the run.
    pub flow_version: String,
    /// Set when the run is one shard of a dataset (`flow run --shard K/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<super::ShardInfo>,
    /// The shard runs this run was merged from (`flow runs merge`), in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// The experiment this run is part of (`flow experiment`), and what identifies what ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentRef>,
}

/// A run's place in an experiment: recorded in its `meta.json` by `flow experiment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentRef {
    /// The experiment's name.
    pub name: String,
    /// Its comparison directory.
    pub dir: String,
    /// The variant plan (`default`, `ask.long`, ...) and the dataset this run covers.
    pub variant: String,
    pub dataset: String,
    pub hashes: ExperimentHashes,
}

/// The hashes that identify what an experiment run ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentHashes {
    /// The flow as it ran (variants and parameters applied).
    pub flow: String,
    /// The dataset's contents.
    pub dataset: String,
    /// The experiment file's.
    pub experiment: String,
}

/// The settings a run started with, so that `flow run --resume`, a restarted shard and a pod
/// run the rest of it the same way. With `RunMeta::concurrency`, `RunMeta::offline` and
/// `RunMeta::shard`, this is every setting of the run. Fields missing from an older
/// `meta.json` read as unset (the defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// The connections file (`--env-file`, absolute), when one was given.
    #[serde(default)]
    pub env_file: Option<String>,
    /// The connection files' folder (`--connections`, absolute), when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<String>,
    /// Seconds after which a line fails (`--line-timeout`).
    #[serde(default)]
    pub line_timeout_s: Option<f64>,
    /// Seconds before a model request times out (`--request-timeout`).
    #[serde(default)]
    pub request_timeout_s: Option<f64>,
    /// Retries of a model request (`--max-retries`).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// The response cache mode: `on`, `off` or `replay`.
    #[serde(default)]
    pub cache: Option<String>,
    /// Lines whose base-run line failed fail too (evaluation runs).
    #[serde(default)]
    pub require_base_line: bool,
    /// The response cache directory (`--cache-dir` or `FLOW_CACHE_DIR`, absolute), when one
    /// was given (unset: the project's `.flow/cache`).
    #[serde(default)]
    pub cache_dir: Option<String>,
    /// The model prices file (`--prices`, absolute), when one was given.
    #[serde(default)]
    pub prices: Option<String>,
    /// The repeated sample this run is (`flow eval --repeat`): its model requests are cache
    /// entries of their own.
    #[serde(default)]
    pub sample: Option<u32>,
    /// Where the run directory is uploaded when the run ends (`--upload`: the run's own folder
    /// in object storage).
    #[serde(default)]
    pub upload: Option<String>,
    /// A flex flow's `--init` values (a file's path absolute), to make its class entry the
    /// same way when the run is resumed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<String>,
    /// A flex flow's init given as values (an experiment file's `init:`), applied after `init`
    /// when the run is resumed.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub init_values: serde_json::Map<String, serde_json::Value>,
}

impl RunMeta {
    /// The share of lines that succeeded (0 when there are none).
    pub fn success_rate(&self) -> f64 {
        if self.total_lines == 0 {
            0.0
        } else {
            self.completed_lines as f64 / self.total_lines as f64
        }
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_missing_from_an_older_meta_read_as_unset() {
        let old = r#"{"env_file": "/p/.env", "line_timeout_s": 30.0, "request_timeout_s": 120.0,
            "max_retries": 5, "cache": "on", "require_base_line": false}"#;
        let s: RunSettings = serde_json::from_str(old).unwrap();
        assert_eq!(s.env_file.as_deref(), Some("/p/.env"));
        assert_eq!(s.line_timeout_s, Some(30.0));
        assert_eq!(
            (s.cache_dir, s.prices, s.sample, s.upload),
            (None, None, None, None)
        );
        let none: RunSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(none, RunSettings::default());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&mut s);
        assert_eq!(
            (l.p50, l.p90, l.p95, l.p99, l.max),
            (50.0, 90.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(l.mean, 50.5);
        let mut one = vec![7.0];
        assert_eq!(Latency::of(&mut one).p99, 7.0);
        assert_eq!(Latency::of(&mut []).p50, 0.0);
    }

    #[test]
    fn a_runs_experiment_survives_reading_and_writing_its_meta() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = super::super::RunDir::new(tmp.path().join("run"));
        std::fs::create_dir_all(&dir.path).unwrap();
        let written = serde_json::json!({
            "name": "run", "flow": "f", "flow_name": "f", "variant": "default",
            "status": "Completed", "created": "2026-12-06T00:00:00Z", "total_lines": 1,
            "completed_lines": 1, "failed_lines": 0,
            "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "latency_ms": {"p50": 0.0, "p90": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0},
            "concurrency": 1, "flow_version": "test",
            "experiment": {"name": "e", "dir": "d", "variant": "v", "dataset": "ds",
                "hashes": {"flow": "sha256:f", "dataset": "sha256:d", "experiment": "sha256:e"}},
        });
        std::fs::write(dir.meta_file(), written.to_string()).unwrap();
        let mut meta = dir.read_meta().unwrap();
        meta.status = RunStatus::Failed;
        super::super::write_meta(&dir, &meta).unwrap();
        let again = dir.read_meta().unwrap();
        let experiment = again.experiment.expect("the experiment is kept");
        assert_eq!(experiment.variant, "v");
        assert_eq!(experiment.hashes.experiment, "sha256:e");
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.meta_file()).unwrap()).unwrap();
        assert_eq!(raw["experiment"], written["experiment"]);
    }
}
