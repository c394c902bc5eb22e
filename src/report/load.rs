//! Loading runs into a [`Report`]: each run's journal (streamed, line by line), its metrics, the
//! scores of its evaluations (`scores.jsonl`, `judge_scores.jsonl`, an evaluation flow's
//! per-line outputs), and optionally each line's node trace from `node_artifacts`. Runs load in
//! parallel, one thread each.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use indexmap::{IndexMap, IndexSet};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ReportError;
use super::model::{
    Columns, ExperimentInfo, LineCell, NodeTrace, Report, ReportLine, RunReport, RunSummary,
    ScoreCell,
};
use crate::record::{LineResult, NodeRun, Status, Tokens};
use crate::run_store::{
    Latency, RunDir, RunMeta, parse_line_record, parse_node_record, read_journal,
};

/// One run to put in a report, with the evaluations that scored it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSource {
    /// What the report calls the run (unique within a report).
    pub label: String,
    pub run_dir: PathBuf,
    /// Evaluation run directories (`flow eval`'s layout) whose scores belong to this run.
    pub eval_dirs: Vec<PathBuf>,
}

/// Which lines' node traces to read from `node_artifacts` (the HTML and JSON show them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Traces {
    /// Every line's.
    All,
    /// Lines that did not pass in some run (failed, or an evaluator failed them): the ones a
    /// reviewer opens.
    NotPassed,
    /// None.
    None,
    /// `All` up to [`TRACE_ALL_LIMIT`] line × run cells, `NotPassed` beyond.
    Auto,
}

/// Up to this many line × run cells, `Traces::Auto` reads every trace (one file per node and
/// line: 10,000 lines × 3 runs × 2 nodes is 60,000 files).
pub const TRACE_ALL_LIMIT: usize = 6000;

/// How to load a report.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub title: String,
    /// Index of the source deltas are computed against.
    pub baseline: usize,
    pub traces: Traces,
    pub experiment: Option<ExperimentInfo>,
}

impl LoadOptions {
    /// A report titled `title`, against the first run, with node traces (`Traces::Auto`).
    pub fn new(title: impl Into<String>) -> Self {
        LoadOptions {
            title: title.into(),
            baseline: 0,
            traces: Traces::Auto,
            experiment: None,
        }
    }
}

/// Longest string (in characters) kept in a node trace; longer ones are cut and say so.
pub const TRACE_TEXT_LIMIT: usize = 2000;

/// Load every source into one report.
pub fn load_report(sources: &[ReportSource], options: &LoadOptions) -> Result<Report, ReportError> {
    if sources.is_empty() {
        return Err(ReportError::NoRuns);
    }
    let loaded = in_parallel(sources.iter().collect(), load_run)?;

    let mut datasets: IndexSet<String> = IndexSet::new();
    let mut inputs: IndexSet<String> = IndexSet::new();
    let mut outputs: IndexSet<String> = IndexSet::new();
    let mut scores: IndexSet<String> = IndexSet::new();
    let mut eval_outputs: IndexSet<String> = IndexSet::new();
    let mut lines: BTreeMap<(usize, usize), ReportLine> = BTreeMap::new();
    let mut runs = Vec::with_capacity(loaded.len());
    let run_count = loaded.len();
    for (index, (run, source)) in loaded.into_iter().zip(sources).enumerate() {
        let dataset_key = run.meta.data.clone().unwrap_or_default();
        let (dataset, _) = datasets.insert_full(dataset_key);
        scores.extend(run.score_names.iter().cloned());
        eval_outputs.extend(run.eval_output_names.iter().cloned());
        let summary = summarize(&run);
        let mut metrics = run.metrics;
        standard_metrics(&summary, &mut metrics);
        runs.push(RunReport {
            label: source.label.clone(),
            name: run.meta.name.clone(),
            path: source.run_dir.display().to_string(),
            flow_name: run.meta.flow_name.clone(),
            variant: run.meta.variant.clone(),
            dataset,
            status: format!("{:?}", run.meta.status),
            offline: run.meta.offline,
            evaluations: run.evaluations,
            summary,
            metrics,
            verdict: run.verdict,
        });
        for (line_number, (line_inputs, cell)) in run.cells {
            inputs.extend(line_inputs.keys().cloned());
            outputs.extend(cell.outputs.keys().cloned());
            let row = lines
                .entry((dataset, line_number))
                .or_insert_with(|| ReportLine {
                    dataset,
                    line_number,
                    inputs: line_inputs,
                    cells: vec![None; run_count],
                });
            row.cells[index] = Some(cell);
        }
    }
    let cells: usize = lines
        .values()
        .map(|l| l.cells.iter().flatten().count())
        .sum();
    let traces = match options.traces {
        Traces::Auto if cells <= TRACE_ALL_LIMIT => Traces::All,
        Traces::Auto => Traces::NotPassed,
        other => other,
    };
    if traces != Traces::None {
        attach_traces(&runs, &mut lines, traces)?;
    }
    Ok(Report {
        title: options.title.clone(),
        traces,
        generated: crate::record::timestamp(std::time::SystemTime::now()),
        baseline: options.baseline.min(runs.len().saturating_sub(1)),
        runs,
        datasets: datasets.into_iter().map(|d| dataset_label(&d)).collect(),
        columns: Columns {
            inputs: inputs.into_iter().collect(),
            outputs: outputs.into_iter().collect(),
            scores: scores.into_iter().collect(),
            eval_outputs: eval_outputs.into_iter().collect(),
        },
        lines: lines.into_values().collect(),
        experiment: options.experiment.clone(),
    })
}

/// Run `work` on every item on its own thread; the results in order, or the first error.
fn in_parallel<T: Send, R: Send>(
    items: Vec<T>,
    work: impl Fn(T) -> Result<R, ReportError> + Sync,
) -> Result<Vec<R>, ReportError> {
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || work(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ReportError::Template(
                        "a report loader thread panicked".into(),
                    ))
                })
            })
            .collect()
    })
}

/// Read the node traces of the lines `which` selects, each run on its own thread.
fn attach_traces(
    runs: &[RunReport],
    lines: &mut BTreeMap<(usize, usize), ReportLine>,
    which: Traces,
) -> Result<(), ReportError> {
    let wanted: Vec<(PathBuf, Vec<usize>)> = runs
        .iter()
        .enumerate()
        .map(|(r, run)| {
            let numbers = lines
                .values()
                .filter(|l| l.cells[r].is_some())
                .filter(|l| which == Traces::All || l.cells.iter().flatten().any(|c| !c.passed()))
                .map(|l| l.line_number)
                .collect();
            (PathBuf::from(&run.path), numbers)
        })
        .collect();
    let traces = in_parallel(wanted, |(path, numbers)| {
        read_traces(&RunDir::new(path), &numbers)
    })?;
    for (r, (run, per_line)) in runs.iter().zip(traces).enumerate() {
        for (n, trace) in per_line {
            if let Some(Some(cell)) = lines.get_mut(&(run.dataset, n)).map(|l| &mut l.cells[r]) {
                cell.trace = trace;
            }
        }
    }
    Ok(())
}

/// A dataset's file name (or `(none)`).
fn dataset_label(path: &str) -> String {
    if path.is_empty() {
        return "(no dataset)".into();
    }
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// One run as read from disk.
struct LoadedRun {
    meta: RunMeta,
    /// Line number → (resolved inputs, the run's cell).
    cells: BTreeMap<usize, (Map<String, Value>, LineCell)>,
    metrics: IndexMap<String, f64>,
    score_names: Vec<String>,
    eval_output_names: Vec<String>,
    evaluations: Vec<String>,
    verdict: Option<crate::eval::eval_dir::VerdictRecord>,
}

fn read_meta(dir: &RunDir) -> Result<RunMeta, ReportError> {
    if !dir.meta_file().is_file() {
        return Err(ReportError::NotARun(dir.path.clone()));
    }
    let text = std::fs::read_to_string(dir.meta_file())
        .map_err(|e| ReportError::read(dir.meta_file(), e))?;
    serde_json::from_str(&text).map_err(|e| ReportError::invalid(dir.meta_file(), e))
}

/// Read `meta.json` of a run directory.
pub fn run_meta(path: &Path) -> Result<RunMeta, ReportError> {
    read_meta(&RunDir::new(path))
}

fn load_run(source: &ReportSource) -> Result<LoadedRun, ReportError> {
    let dir = RunDir::new(&source.run_dir);
    let meta = read_meta(&dir)?;
    let mut cells = BTreeMap::new();
    read_lines(&dir, |mut line| {
        let inputs = std::mem::take(&mut line.inputs);
        cells.insert(line.line_number, (inputs, cell_of(line)));
    })?;
    let mut metrics = IndexMap::new();
    read_metrics(&dir.metrics_file(), &mut metrics, |k| {
        !k.starts_with("flow.")
    })?;
    let mut score_names: IndexSet<String> = IndexSet::new();
    let mut eval_output_names: IndexSet<String> = IndexSet::new();
    let mut evaluations = Vec::new();
    let mut verdict = None;
    for eval_dir in &source.eval_dirs {
        let eval = RunDir::new(eval_dir);
        evaluations.push(eval.name());
        verdict = crate::eval::eval_dir::read_verdict(&eval.path).or(verdict);
        read_metrics(&eval.metrics_file(), &mut metrics, |k| {
            !k.starts_with("flow.") && !k.starts_with("eval.")
        })?;
        for file in crate::eval::eval_dir::SCORE_FILES {
            read_scores(&eval.path.join(file), &mut cells, &mut score_names)?;
        }
        if eval.flow_artifacts_dir().is_dir() {
            let journal =
                read_journal(&eval).map_err(|e| ReportError::read(eval.flow_artifacts_dir(), e))?;
            journal
                .for_each(|line| {
                    if line.status != Status::Completed {
                        return Ok(());
                    }
                    if let Some((_, cell)) = cells.get_mut(&line.line_number) {
                        for (k, v) in line.outputs {
                            eval_output_names.insert(k.clone());
                            cell.eval_outputs.insert(k, v);
                        }
                    }
                    Ok(())
                })
                .map_err(|e| ReportError::read(eval.flow_artifacts_dir(), e))?;
        }
    }
    Ok(LoadedRun {
        meta,
        cells,
        metrics,
        score_names: score_names.into_iter().collect(),
        eval_output_names: eval_output_names.into_iter().collect(),
        evaluations,
        verdict,
    })
}

/// Stream a run's journal (`flow_artifacts/*.jsonl`, in file order) once, calling `visit` with
/// every line record; a line's later record replaces its earlier one in the caller's map, as
/// `run_store::read_journal` keeps the latest. A torn record (a crash mid-write) is skipped.
fn read_lines(dir: &RunDir, mut visit: impl FnMut(LineResult)) -> Result<(), ReportError> {
    let root = dir.flow_artifacts_dir();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&root) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ReportError::read(root, e)),
    };
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path).map_err(|e| ReportError::read(&path, e))?;
        for record in bytes.split(|b| *b == b'\n') {
            if record.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Ok(line) = parse_line_record(record) {
                visit(line);
            }
        }
    }
    Ok(())
}

fn cell_of(line: LineResult) -> LineCell {
    LineCell {
        status: line.status,
        error: line.error.map(|e| match e.node {
            Some(node) if !e.message.contains(&node) => format!("{node}: {}", e.message),
            _ => e.message,
        }),
        outputs: line.outputs,
        scores: IndexMap::new(),
        eval_outputs: Map::new(),
        latency_ms: line.duration_ms,
        tokens: line.tokens,
        cost_usd: line.cost_usd,
        cache_hits: line.cache_hits,
        saved_usd: line.saved_usd,
        trace: Vec::new(),
    }
}

/// Numeric values of a `metrics.json` whose names `keep` accepts (a missing file has none).
fn read_metrics(
    path: &Path,
    into: &mut IndexMap<String, f64>,
    keep: impl Fn(&str) -> bool,
) -> Result<(), ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ReportError::read(path, e)),
    };
    let map: Map<String, Value> =
        crate::non_finite::from_str(&text).map_err(|e| ReportError::invalid(path, e))?;
    for (k, v) in map {
        // NaN and the infinities are shown as such (never ranked, charted or compared).
        if let Some(x) = crate::gate::metric_value(&v).or_else(|| crate::non_finite::marker(&v))
            && keep(&k)
        {
            into.insert(k, x);
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct ScoreLine {
    line_number: usize,
    #[serde(default)]
    scores: IndexMap<String, ScoreRecord>,
}

#[derive(Deserialize)]
struct ScoreRecord {
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    passed: bool,
    #[serde(default)]
    reason: String,
}

/// Attach the per-line scores of `scores.jsonl` / `judge_scores.jsonl` (a missing file has none).
fn read_scores(
    path: &Path,
    cells: &mut BTreeMap<usize, (Map<String, Value>, LineCell)>,
    names: &mut IndexSet<String>,
) -> Result<(), ReportError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ReportError::read(path, e)),
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| ReportError::read(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: ScoreLine = crate::non_finite::from_str(&line)
            .map_err(|e| ReportError::invalid(path, format!("line {}: {e}", i + 1)))?;
        let Some((_, cell)) = cells.get_mut(&record.line_number) else {
            continue;
        };
        for (name, s) in record.scores {
            names.insert(name.clone());
            cell.scores.insert(
                name,
                ScoreCell {
                    score: s.score.filter(|x| x.is_finite()),
                    passed: s.passed,
                    reason: s.reason,
                },
            );
        }
    }
    Ok(())
}

/// Read the node records of `numbers` from `node_artifacts/<node>/<NNNNNNNNN>.jsonl`, each
/// line's in the order its nodes started (aggregation nodes, which only have line 0's file,
/// are not part of any line).
fn read_traces(
    dir: &RunDir,
    numbers: &[usize],
) -> Result<Vec<(usize, Vec<NodeTrace>)>, ReportError> {
    let root = dir.node_artifacts_dir();
    let mut nodes: Vec<String> = match std::fs::read_dir(&root) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReportError::read(root, e)),
    };
    let aggregation = aggregation_nodes(dir);
    nodes.retain(|n| !aggregation.contains(n));
    nodes.sort();
    let mut out = Vec::with_capacity(numbers.len());
    let mut bytes = Vec::new();
    for &line_number in numbers {
        let mut trace = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let path = dir.node_artifact(node, line_number);
            bytes.clear();
            let read = std::fs::File::open(&path)
                .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes));
            match read {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ReportError::read(path, e)),
            }
            // A torn record (the run was killed while writing it) is left out, not an error.
            let Ok(node) = parse_node_record(&bytes) else {
                continue;
            };
            trace.push(trace_of(node));
        }
        trace.sort_by(|a, b| a.start_time.cmp(&b.start_time));
        out.push((line_number, trace));
    }
    Ok(out)
}

/// The aggregation nodes of the run's flow, from `snapshot/flow.dag.yaml`.
fn aggregation_nodes(dir: &RunDir) -> HashSet<String> {
    #[derive(Deserialize)]
    struct Dag {
        #[serde(default)]
        nodes: Vec<DagNode>,
    }
    #[derive(Deserialize)]
    struct DagNode {
        #[serde(default)]
        name: String,
        #[serde(default)]
        aggregation: bool,
    }
    std::fs::read_to_string(dir.snapshot_dir().join("flow.dag.yaml"))
        .ok()
        .and_then(|t| serde_yaml::from_str::<Dag>(&t).ok())
        .map(|d| {
            d.nodes
                .into_iter()
                .filter(|n| n.aggregation)
                .map(|n| n.name)
                .collect()
        })
        .unwrap_or_default()
}

fn trace_of(run: NodeRun) -> NodeTrace {
    NodeTrace {
        node: run.node,
        status: run.status,
        inputs: run
            .inputs
            .into_iter()
            .map(|(k, v)| (k, shorten(v)))
            .collect(),
        output: shorten(run.output),
        error: run.error.map(|e| e.message),
        start_time: run.start_time,
        duration_ms: run.duration_ms,
        tokens: run.tokens,
        model: run.model,
        cached: run.cached,
    }
}

/// Cut strings longer than [`TRACE_TEXT_LIMIT`] characters, saying how much was cut.
fn shorten(value: Value) -> Value {
    match value {
        Value::String(s) => {
            let count = s.chars().count();
            if count <= TRACE_TEXT_LIMIT {
                Value::String(s)
            } else {
                let kept: String = s.chars().take(TRACE_TEXT_LIMIT).collect();
                Value::String(format!(
                    "{kept}… [{} more characters]",
                    count - TRACE_TEXT_LIMIT
                ))
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(shorten).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, shorten(v))).collect())
        }
        other => other,
    }
}

fn summarize(run: &LoadedRun) -> RunSummary {
    let mut s = RunSummary {
        total_lines: run.meta.total_lines.max(run.cells.len()),
        lines: run.cells.len(),
        ..RunSummary::default()
    };
    let mut latencies = Vec::with_capacity(run.cells.len());
    let mut tokens = Tokens::default();
    let mut cost = 0.0;
    for (_, cell) in run.cells.values() {
        match cell.status {
            Status::Completed => s.completed += 1,
            _ => s.failed += 1,
        }
        if cell.passed() {
            s.passed += 1;
        }
        latencies.push(cell.latency_ms);
        tokens.add(&cell.tokens);
        cost += cell.cost_usd;
        s.cache_hits += u64::from(cell.cache_hits);
        s.saved_usd += cell.saved_usd;
    }
    s.saved_usd = round6(s.saved_usd);
    s.pass_rate = ratio(s.passed, s.lines);
    s.tokens = tokens;
    s.cost_usd = if run.meta.unpriced_models.is_empty() {
        Some((cost * 1e6).round() / 1e6)
    } else {
        None
    };
    let latency = Latency::of(&mut latencies);
    s.latency_p50_ms = latency.p50;
    s.latency_p95_ms = latency.p95;
    s.latency_mean_ms = latency.mean;
    s
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// The metrics every run has, after its own and its evaluations'.
fn standard_metrics(s: &RunSummary, metrics: &mut IndexMap<String, f64>) {
    metrics.insert("lines.pass_rate".into(), round6(s.pass_rate));
    metrics.insert(
        "lines.success_rate".into(),
        round6(ratio(s.completed, s.lines)),
    );
    metrics.insert("latency.p50_ms".into(), s.latency_p50_ms);
    metrics.insert("latency.p95_ms".into(), s.latency_p95_ms);
    metrics.insert("tokens.total".into(), s.tokens.total_tokens as f64);
    if let Some(c) = s.cost_usd {
        metrics.insert(super::model::COST_METRIC.into(), c);
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize, status: &str, answer: &str) -> String {
        let line = serde_json::json!({
            "line_number": n, "status": status, "inputs": {"q": n}, "outputs": {"a": answer},
            "nodes": [], "start_time": "", "end_time": "", "duration_ms": 1.0,
            "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        });
        format!(
            "{}\n",
            serde_json::json!({"line_number": n, "status": status, "run_info": line})
        )
    }

    #[test]
    fn the_journal_is_read_once_with_the_latest_record_winning_and_torn_records_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::create_dir_all(run.flow_artifacts_dir()).unwrap();
        let torn = record(2, "Completed", "torn");
        let text = format!(
            "{}{}{}{}",
            record(0, "Failed", "first"),
            record(1, "Completed", "one"),
            record(0, "Completed", "resumed"),
            &torn[..torn.len() / 2]
        );
        std::fs::write(run.flow_artifact(0), text).unwrap();
        std::fs::write(run.flow_artifact(30), record(30, "Completed", "thirty")).unwrap();
        let mut seen = BTreeMap::new();
        read_lines(&run, |l| {
            seen.insert(l.line_number, (l.status, l.outputs["a"].clone()));
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[&0], (Status::Completed, serde_json::json!("resumed")));
        assert_eq!(seen[&30].1, "thirty");
        let mut none = 0;
        read_lines(&RunDir::new(dir.path().join("missing")), |_| none += 1).unwrap();
        assert_eq!(none, 0);
    }
}
