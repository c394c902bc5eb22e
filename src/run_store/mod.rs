//! The run directory (docs/batch-runs.md), laid out as promptflow lays it out:
//!
//! ```text
//! .flow/runs/<run-name>/
//!   flow_outputs/output.jsonl        {"line_number": N, <output>: ...} for succeeded lines
//!   node_artifacts/<node>/<NNNNNNNNN>.jsonl   one record per node per line (aggregation: 000000000)
//!   flow_artifacts/<lo>_<hi>.jsonl   line records in batches of 25 lines: the append-only journal
//!   inputs.jsonl                     resolved inputs with line_number
//!   metrics.json                     log_metric values and built-in run metrics
//!   meta.json                        name, flow, variant, data, status, counts, tokens, cost, timings
//!   error.json                       present when any line failed
//!   snapshot/                        the flow as it ran (variant applied)
//! ```
//!
//! Records are appended as lines finish, by one writer thread, one `write` per record: a run killed
//! at any moment keeps every finished line (a torn last record is detected and ignored). When the
//! run ends — or is resumed and ends — the outputs and inputs are rewritten in line order from
//! the journal, so a resumed run's directory equals an uninterrupted one's.

mod journal;
mod lock;
mod meta;
mod records;
pub mod remote;
mod run_upload;
mod shard;
mod snapshot;
mod writer;

use std::path::{Path, PathBuf};

pub use journal::{Journal, read_journal, succeeded_lines_with};
pub use lock::{LOCK_FILE, LockError, RunLock, has_live_writer};
pub use meta::{
    ExperimentHashes, ExperimentRef, Latency, RunMeta, RunSettings, RunStatus, percentile,
};
pub use records::{parse_line_record, parse_node_record};
pub use run_upload::RunUpload;
pub use shard::{Shard, ShardError, ShardHashError, ShardInfo};
pub use snapshot::{copy_flow, write_snapshot};
pub use writer::{RunWriter, finalize, write_meta};

/// Width of the zero-padded line numbers in file names, as promptflow writes them.
pub const LINE_NUMBER_WIDTH: usize = 9;

/// Lines per `flow_artifacts` file.
pub const LINES_PER_ARTIFACT_FILE: usize = 25;

/// The paths of one run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// The run directory at `path` (not created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    /// The run's name: its directory's name.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn output_file(&self) -> PathBuf {
        self.path.join("flow_outputs").join("output.jsonl")
    }

    pub fn inputs_file(&self) -> PathBuf {
        self.path.join("inputs.jsonl")
    }

    pub fn meta_file(&self) -> PathBuf {
        self.path.join("meta.json")
    }

    pub fn metrics_file(&self) -> PathBuf {
        self.path.join("metrics.json")
    }

    pub fn error_file(&self) -> PathBuf {
        self.path.join("error.json")
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.path.join("snapshot")
    }

    pub fn node_artifacts_dir(&self) -> PathBuf {
        self.path.join("node_artifacts")
    }

    pub fn flow_artifacts_dir(&self) -> PathBuf {
        self.path.join("flow_artifacts")
    }

    /// `node_artifacts/<node>/<NNNNNNNNN>.jsonl`
    pub fn node_artifact(&self, node: &str, line_number: usize) -> PathBuf {
        self.node_artifacts_dir()
            .join(node)
            .join(format!("{line_number:0LINE_NUMBER_WIDTH$}.jsonl"))
    }

    /// `flow_artifacts/<lo>_<hi>.jsonl` holding `line_number`.
    pub fn flow_artifact(&self, line_number: usize) -> PathBuf {
        let lo = line_number / LINES_PER_ARTIFACT_FILE * LINES_PER_ARTIFACT_FILE;
        let hi = lo + LINES_PER_ARTIFACT_FILE - 1;
        self.flow_artifacts_dir().join(format!(
            "{lo:0LINE_NUMBER_WIDTH$}_{hi:0LINE_NUMBER_WIDTH$}.jsonl"
        ))
    }

    /// Read `meta.json`.
    pub fn read_meta(&self) -> std::io::Result<RunMeta> {
        let text = std::fs::read_to_string(self.meta_file())?;
        serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", self.meta_file().display()),
            )
        })
    }
}

/// Where runs live: `<project>/.flow/runs`.
pub fn runs_root(project: &Path) -> PathBuf {
    project.join(".flow").join("runs")
}

/// Find a run by name (under `runs_root`) or by path.
pub fn find_run(project: &Path, name_or_path: &str) -> Option<RunDir> {
    let by_name = runs_root(project).join(name_or_path);
    if by_name.join("meta.json").is_file() {
        return Some(RunDir::new(by_name));
    }
    let by_path = PathBuf::from(name_or_path);
    if by_path.join("meta.json").is_file() {
        return Some(RunDir::new(by_path));
    }
    None
}

/// How a run name given on the command line matched.
#[derive(Debug)]
pub enum RunLookup {
    /// One run: by its name, its path, `latest` (the newest run), or a prefix only it has.
    Found(RunDir),
    /// A prefix several runs share (their names, newest first).
    Ambiguous(Vec<String>),
    /// No run.
    NotFound,
}

/// The run `name` names: a run's name or directory, `latest` (the newest run, when no run is
/// named so), or the start of exactly one run's name.
pub fn lookup_run(project: &Path, name: &str) -> RunLookup {
    if let Some(dir) = find_run(project, name) {
        return RunLookup::Found(dir);
    }
    let runs = list_runs(project);
    if name == "latest" {
        return runs
            .into_iter()
            .next()
            .map_or(RunLookup::NotFound, |(dir, _)| RunLookup::Found(dir));
    }
    if name.is_empty() || name.contains(['/', '\\']) {
        return RunLookup::NotFound;
    }
    let mut matching: Vec<RunDir> = runs
        .into_iter()
        .map(|(dir, _)| dir)
        .filter(|dir| dir.name().starts_with(name) && dir.meta_file().is_file())
        .collect();
    match matching.len() {
        0 => RunLookup::NotFound,
        1 => RunLookup::Found(matching.remove(0)),
        _ => RunLookup::Ambiguous(matching.iter().map(RunDir::name).collect()),
    }
}

/// Every run under `runs_root(project)`, newest first.
pub fn list_runs(project: &Path) -> Vec<(RunDir, Option<RunMeta>)> {
    let mut runs: Vec<(RunDir, Option<RunMeta>)> = std::fs::read_dir(runs_root(project))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| {
                    let dir = RunDir::new(e.path());
                    let meta = dir.read_meta().ok();
                    (dir, meta)
                })
                .collect()
        })
        .unwrap_or_default();
    runs.sort_by(|a, b| {
        let ka = a.1.as_ref().map(|m| m.created.clone()).unwrap_or_default();
        let kb = b.1.as_ref().map(|m| m.created.clone()).unwrap_or_default();
        kb.cmp(&ka).then_with(|| b.0.name().cmp(&a.0.name()))
    });
    runs
}
