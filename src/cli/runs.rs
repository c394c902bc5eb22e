//! `flow runs list|show|delete`: the run directories under `.flow/runs`.

use clap::{Args, Subcommand};

use super::output::{Failure, bold, dim, stdout_is_terminal};
use super::settings::{OutputArgs, OutputFormat};
use flow::run_store::{RunDir, RunMeta, find_run, list_runs};

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub action: RunsAction,
}

#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// List runs, newest first.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        // json: one array of meta.json objects.
        #[command(flatten)]
        output: OutputArgs,
        /// Deprecated spelling of --output json.
        #[arg(long, hide = true, conflicts_with = "output")]
        json: bool,
    },
    /// Show one run: status, counts, tokens, cost, latency, metrics and the first errors.
    Show {
        /// The run's name (under .flow/runs) or its directory.
        run: String,
        // json: meta.json and metrics.json as one JSON object.
        #[command(flatten)]
        output: OutputArgs,
        /// Deprecated spelling of --output json.
        #[arg(long, hide = true, conflicts_with = "output")]
        json: bool,
    },
    /// Merge the shard runs of `flow run --shard K/N` into one run.
    Merge(Box<super::merge::MergeArgs>),
    /// Delete runs.
    Delete {
        /// The runs' names or directories.
        #[arg(required = true)]
        runs: Vec<String>,
    },
}

pub fn run(args: RunsArgs) -> Result<(), Failure> {
    let project = super::common::workdir()?.root;
    match args.action {
        RunsAction::List {
            limit,
            output,
            json,
        } => list(&project, limit, json || output.format == OutputFormat::Json),
        RunsAction::Show { run, output, json } => {
            show(&project, &run, json || output.format == OutputFormat::Json)
        }
        RunsAction::Delete { runs } => delete(&project, &runs),
        RunsAction::Merge(merge) => super::merge::run(&project, *merge),
    }
}

/// Find a run or fail with the names that exist.
pub fn locate(project: &std::path::Path, run: &str) -> Result<RunDir, Failure> {
    match flow::run_store::lookup_run(project, run) {
        flow::run_store::RunLookup::Found(dir) => return Ok(dir),
        flow::run_store::RunLookup::Ambiguous(names) => {
            return Err(Failure::usage(format!(
                "error: `{run}` starts the names of {} runs: {}\n  help: give more of the name",
                names.len(),
                names.join(", ")
            )));
        }
        flow::run_store::RunLookup::NotFound => {}
    }
    find_run(project, run).ok_or_else(|| {
        let names: Vec<String> = list_runs(project)
            .into_iter()
            .take(5)
            .map(|(d, _)| d.name())
            .collect();
        let hint = if names.is_empty() {
            format!(
                "there are no runs in {} yet",
                flow::run_store::runs_root(project).display()
            )
        } else {
            let all: Vec<String> = list_runs(project)
                .into_iter()
                .map(|(d, _)| d.name())
                .collect();
            match flow::model::closest(run, all.iter().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`? recent runs: {}", names.join(", ")),
                None => format!("recent runs: {}", names.join(", ")),
            }
        };
        Failure::usage(format!(
            "error: no run `{run}` (looked in {} and at the path)\n  help: {hint}",
            flow::run_store::runs_root(project).display()
        ))
    })
}

fn list(project: &std::path::Path, limit: usize, json: bool) -> Result<(), Failure> {
    let runs = list_runs(project);
    if json {
        let metas: Vec<&RunMeta> = runs
            .iter()
            .filter_map(|(_, m)| m.as_ref())
            .take(limit)
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&metas).unwrap_or_default()
        );
        return Ok(());
    }
    if runs.is_empty() {
        outln!(
            "no runs yet in {} (a batch run `flow run FLOW --data FILE` creates one)",
            flow::run_store::runs_root(project).display()
        );
        return Ok(());
    }
    let color = stdout_is_terminal();
    outln!(
        "{}",
        bold(
            &format!(
                "{:<52} {:<10} {:>10} {:>10} {:>10}  {}",
                "RUN", "STATUS", "LINES OK", "TOKENS", "COST", "CREATED"
            ),
            color
        )
    );
    for (dir, meta) in runs.into_iter().take(limit) {
        match meta {
            Some(m) => outln!(
                "{:<52} {:<10} {:>10} {:>10} {:>10}  {}",
                dir.name(),
                status_text(&dir, &m),
                format!("{}/{}", m.completed_lines, m.total_lines),
                m.tokens.total_tokens,
                m.cost_usd.map_or("?".to_string(), |c| format!("${c:.4}")),
                m.created.get(..19).unwrap_or(&m.created).replace('T', " "),
            ),
            None => outln!(
                "{:<52} {}",
                dir.name(),
                dim("(no readable meta.json)", color)
            ),
        }
    }
    Ok(())
}

fn show(project: &std::path::Path, run: &str, json: bool) -> Result<(), Failure> {
    let dir = locate(project, run)?;
    let meta = dir
        .read_meta()
        .map_err(|e| Failure::own_file("cannot read", &dir.meta_file(), &e))?;
    let metrics: serde_json::Value = std::fs::read_to_string(dir.metrics_file())
        .ok()
        .and_then(|t| flow::non_finite::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    if json {
        let doc = serde_json::json!({"meta": meta, "metrics": metrics, "path": dir.path});
        outln!(
            "{}",
            flow::non_finite::to_string_pretty(&doc).unwrap_or_default()
        );
        return Ok(());
    }
    let color = stdout_is_terminal();
    outln!("{} {}", bold(&meta.name, color), status_text(&dir, &meta));
    outln!("  path:      {}", dir.path.display());
    outln!("  flow:      {} (variant {})", meta.flow, meta.variant);
    if let Some(d) = &meta.data {
        outln!("  data:      {d}");
    }
    if let Some(b) = &meta.base_run {
        outln!("  base run:  {b}");
    }
    if let Some(s) = &meta.shard {
        outln!(
            "  shard:     {} of {} ({} of the dataset's {} lines; merge with `flow runs merge`)",
            s.index,
            s.count,
            meta.total_lines,
            s.dataset_lines
        );
    }
    if !meta.merged_from.is_empty() {
        outln!("  merged from: {}", meta.merged_from.join(", "));
    }
    outln!(
        "  lines:     {} succeeded, {} failed, {} total",
        meta.completed_lines,
        meta.failed_lines,
        meta.total_lines
    );
    outln!(
        "  tokens:    {} ({} prompt, {} completion){}",
        meta.tokens.total_tokens,
        meta.tokens.prompt_tokens,
        meta.tokens.completion_tokens,
        if meta.cache_hits > 0 {
            format!(", {} cached answers", meta.cache_hits)
        } else {
            String::new()
        }
    );
    match meta.cost_usd {
        Some(c) if meta.saved_usd > 0.0 => outln!(
            "  cost:      ${c:.4} (the cached answers saved ${:.4})",
            meta.saved_usd
        ),
        Some(c) => outln!("  cost:      ${c:.4}"),
        None => outln!(
            "  cost:      unknown (no price for: {})",
            meta.unpriced_models.join(", ")
        ),
    }
    let l = &meta.latency_ms;
    outln!(
        "  latency:   p50 {:.0} ms · p95 {:.0} ms · max {:.0} ms",
        l.p50,
        l.p95,
        l.max
    );
    outln!(
        "  wall time: {:.1} s at concurrency {}",
        meta.duration_s,
        meta.concurrency
    );
    if meta.offline {
        outln!("  offline:   every answer came from the echo provider, not a model");
    }
    if let serde_json::Value::Object(m) = &metrics {
        let user: Vec<_> = m.iter().filter(|(k, _)| !k.starts_with("flow.")).collect();
        if !user.is_empty() {
            outln!("  metrics:");
            for (k, v) in user {
                let v = flow::non_finite::to_string(v).unwrap_or_else(|_| v.to_string());
                outln!("    {k}: {v}");
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.error_file()) {
        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Some(errors) = doc["errors"].as_array() {
                outln!("  first errors:");
                for e in errors.iter().take(5) {
                    outln!(
                        "    line {}: {}",
                        e["line_number"],
                        e["error"]["message"].as_str().unwrap_or("?")
                    );
                }
            }
        }
    }
    Ok(())
}

fn delete(project: &std::path::Path, runs: &[String]) -> Result<(), Failure> {
    let dirs: Vec<RunDir> = runs
        .iter()
        .map(|r| locate(project, r))
        .collect::<Result<_, _>>()?;
    for dir in dirs {
        std::fs::remove_dir_all(&dir.path)
            .map_err(|e| Failure::own_file("cannot delete", &dir.path, &e))?;
        outln!("deleted {}", dir.name());
    }
    Ok(())
}

/// A run's status as people read it: a `Running` run whose writer is gone (killed, crashed) is
/// `Interrupted` (`flow run --resume` finishes it), not running.
fn status_text(dir: &RunDir, meta: &RunMeta) -> String {
    if meta.status == flow::run_store::RunStatus::Running
        && !flow::run_store::has_live_writer(&dir.path)
    {
        return "Interrupted".to_string();
    }
    format!("{:?}", meta.status)
}
