//! What a report is made of: runs, evaluation runs (their base run is reported, scored by
//! them) and experiment directories (`summary.json`'s runs, see docs/reports.md).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ReportError;
use super::load::{ReportSource, run_meta};
use super::model::ExperimentInfo;
use crate::run_store::{RunDir, RunMeta, list_runs};

/// The file an experiment directory is recognised by.
pub const EXPERIMENT_SUMMARY: &str = "summary.json";

/// Whether `dir` is an experiment comparison directory.
pub fn is_experiment_dir(dir: &Path) -> bool {
    dir.join(EXPERIMENT_SUMMARY).is_file() && !dir.join("meta.json").is_file()
}

#[derive(Deserialize)]
struct Summary {
    #[serde(default)]
    experiment: String,
    #[serde(default)]
    runs: Vec<SummaryRun>,
    #[serde(default)]
    winner: Option<String>,
    #[serde(default)]
    winner_rule: String,
    #[serde(default)]
    winner_metric: Option<String>,
    /// Variant → metric → mean over the datasets.
    #[serde(default)]
    means: indexmap::IndexMap<String, indexmap::IndexMap<String, f64>>,
}

#[derive(Deserialize)]
struct SummaryRun {
    #[serde(default)]
    label: String,
    run_dir: PathBuf,
    #[serde(default)]
    eval_dirs: Vec<PathBuf>,
}

/// The runs of an experiment directory, from its `summary.json` (paths relative to the
/// directory, or absolute).
pub fn experiment_sources(dir: &Path) -> Result<(Vec<ReportSource>, ExperimentInfo), ReportError> {
    let path = dir.join(EXPERIMENT_SUMMARY);
    let text = std::fs::read_to_string(&path).map_err(|e| ReportError::read(&path, e))?;
    let summary: Summary =
        serde_json::from_str(&text).map_err(|e| ReportError::invalid(&path, e))?;
    let sources = summary
        .runs
        .into_iter()
        .map(|r| {
            let run_dir = dir.join(&r.run_dir);
            let label = if r.label.is_empty() {
                RunDir::new(&run_dir).name()
            } else {
                r.label
            };
            ReportSource {
                label,
                run_dir,
                eval_dirs: r.eval_dirs.iter().map(|e| dir.join(e)).collect(),
            }
        })
        .collect();
    let name = if summary.experiment.is_empty() {
        RunDir::new(dir).name()
    } else {
        summary.experiment
    };
    Ok((
        sources,
        ExperimentInfo {
            name,
            winner_value: match (&summary.winner, &summary.winner_metric) {
                (Some(w), Some(m)) => summary.means.get(w).and_then(|x| x.get(m)).copied(),
                _ => None,
            },
            winner: summary.winner,
            winner_rule: summary.winner_rule,
            winner_metric: summary.winner_metric,
        },
    ))
}

/// Whether a run directory is an evaluation (`flow eval`'s): it scored a base run.
pub fn is_evaluation(dir: &Path, meta: &RunMeta) -> bool {
    meta.base_run.is_some()
        && (meta.settings.require_base_line || crate::eval::eval_dir::has_scores(dir))
}

/// The run an evaluation scored (its `meta.json`'s `base_run`).
pub fn evaluated_run(meta: &RunMeta) -> Option<PathBuf> {
    meta.base_run.as_ref().map(PathBuf::from)
}

/// The newest evaluation of `run` among the runs of `project`, if any.
pub fn latest_evaluation(project: &Path, run: &Path) -> Option<PathBuf> {
    let target = canonical(run);
    list_runs(project).into_iter().find_map(|(dir, meta)| {
        let meta = meta?;
        let base = evaluated_run(&meta)?;
        (is_evaluation(&dir.path, &meta) && canonical(&base) == target).then_some(dir.path)
    })
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Label runs by their variant when they are runs of one flow over one dataset with distinct
/// variants (the side-by-side table then reads `default`, `classify.variant_1`, ...); otherwise
/// leave the labels (run names) as they are. Labels are made unique either way.
pub fn label_runs(sources: &mut [ReportSource]) {
    let metas: Vec<Option<RunMeta>> = sources.iter().map(|s| run_meta(&s.run_dir).ok()).collect();
    if sources.len() > 1 && metas.iter().all(Option::is_some) {
        let metas: Vec<&RunMeta> = metas.iter().flatten().collect();
        let same_flow = metas
            .iter()
            .all(|m| m.flow == metas[0].flow && m.data == metas[0].data);
        let mut variants: Vec<&str> = metas.iter().map(|m| m.variant.as_str()).collect();
        variants.sort_unstable();
        variants.dedup();
        if same_flow && variants.len() == metas.len() {
            for (s, m) in sources.iter_mut().zip(metas) {
                s.label = m.variant.clone();
            }
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for s in sources.iter_mut() {
        let mut label = s.label.clone();
        let mut n = 2;
        while seen.contains(&label) {
            label = format!("{} ({n})", s.label);
            n += 1;
        }
        s.label = label.clone();
        seen.push(label);
    }
}
