//! `flow report RUN [RUN...] --format html|csv|json|all [-o PATH]`: runs, evaluations and
//! experiments as a self-contained HTML page, CSV (long or wide) or JSON.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::output::Failure;
use flow::report::{
    CsvOptions, LoadOptions, ReportError, ReportSource, Traces, evaluated_run, experiment_sources,
    is_evaluation, is_experiment_dir, label_runs, latest_evaluation, load_report, render_html,
    write_file, write_json, write_long, write_report_files, write_wide,
};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Runs (names under .flow/runs, or directories), evaluation runs (the run they scored is
    /// reported with their scores) or experiment directories (with summary.json). A run given
    /// alone is reported with its newest evaluation, if it has one.
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<String>,
    /// What to write: html (one self-contained page), csv (one row per line × run; --wide for a
    /// column group per run), json, or all (report.html, report.csv and report.wide.csv in the
    /// -o directory).
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Where to write [default: report.html for html, stdout for csv and json, the current
    /// directory for all; `-` is stdout].
    #[arg(short = 'o', long = "out", value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// CSV: one row per line with a column group per run (side by side), instead of one row per
    /// line × run.
    #[arg(long)]
    pub wide: bool,
    /// The run deltas are computed against (added to the report if not among RUN) [default: the
    /// first run].
    #[arg(long, value_name = "RUN")]
    pub baseline: Option<String>,
    /// The report's title.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// CSV files: leave out the UTF-8 byte-order mark (it is written by default so that Excel
    /// reads the file as UTF-8; never on stdout).
    #[arg(long)]
    pub no_bom: bool,
    /// Which lines' node traces the HTML and JSON include: all, not-passed (lines that failed or
    /// that an evaluator failed, in some run), none, or auto (all up to 6,000 line × run cells,
    /// not-passed beyond, to keep large reports small and fast).
    #[arg(long, value_enum, default_value_t = TraceArg::Auto)]
    pub traces: TraceArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceArg {
    Auto,
    All,
    NotPassed,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Csv,
    Json,
    All,
}

pub fn run(args: ReportArgs) -> Result<(), Failure> {
    let project = super::common::workdir()?.root;
    let mut resolved = Resolved::default();
    for arg in &args.runs {
        resolved.add(&project, arg)?;
    }
    let mut baseline = 0;
    if let Some(b) = &args.baseline {
        let before = resolved.sources.len();
        let index = resolved.add(&project, b)?;
        if resolved.sources.len() > before {
            // A baseline not among the runs goes first.
            let source = resolved.sources.remove(index);
            resolved.sources.insert(0, source);
            let auto = resolved.auto.remove(index);
            resolved.auto.insert(0, auto);
        } else {
            baseline = index;
        }
    }
    for (source, auto) in resolved.sources.iter_mut().zip(&resolved.auto) {
        if *auto
            && source.eval_dirs.is_empty()
            && let Some(eval) = latest_evaluation(&project, &source.run_dir)
        {
            eprintln!(
                "note: scores of `{}` from its evaluation `{}`",
                source.label,
                eval.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            source.eval_dirs.push(eval);
        }
    }
    if resolved.experiment.is_none() {
        label_runs(&mut resolved.sources);
    }
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| match &resolved.experiment {
            Some(e) => format!("Experiment {}", e.name),
            None => {
                let labels: Vec<&str> = resolved.sources.iter().map(|s| s.label.as_str()).collect();
                if labels.len() == 1 {
                    format!("Report of {}", labels[0])
                } else {
                    format!("Comparison: {}", labels.join(" vs "))
                }
            }
        });
    let options = LoadOptions {
        title,
        baseline,
        traces: match (args.format, args.traces) {
            (ReportFormat::Csv, _) | (_, TraceArg::None) => Traces::None,
            (_, TraceArg::All) => Traces::All,
            (_, TraceArg::NotPassed) => Traces::NotPassed,
            (_, TraceArg::Auto) => Traces::Auto,
        },
        experiment: resolved.experiment.clone(),
    };
    let report = load_report(&resolved.sources, &options).map_err(report_failure)?;
    let csv = CsvOptions { bom: !args.no_bom };
    let to_stdout = args.out.as_deref() == Some(Path::new("-"));
    match args.format {
        ReportFormat::All => {
            let dir = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
            let files = write_report_files(&dir, &report, csv).map_err(report_failure)?;
            for f in [files.html, files.csv, files.wide_csv] {
                outln!("wrote {}", f.display());
            }
        }
        ReportFormat::Html => {
            let html = render_html(&report).map_err(report_failure)?;
            match (&args.out, to_stdout) {
                (_, true) => write_stdout(html.as_bytes())?,
                (out, false) => {
                    let path = out.clone().unwrap_or_else(|| PathBuf::from("report.html"));
                    write_file(&path, |f| {
                        f.write_all(html.as_bytes())
                            .map_err(|e| ReportError::Write {
                                path: path.clone(),
                                source: e,
                            })
                    })
                    .map_err(report_failure)?;
                    outln!("wrote {}", path.display());
                }
            }
        }
        ReportFormat::Csv | ReportFormat::Json => {
            let write = |out: &mut dyn Write, bom: bool| match args.format {
                ReportFormat::Json => write_json(&report, out),
                _ if args.wide => write_wide(&report, out, CsvOptions { bom }),
                _ => write_long(&report, out, CsvOptions { bom }),
            };
            match &args.out {
                Some(path) if !to_stdout => {
                    write_file(path, |f| write(f, csv.bom)).map_err(report_failure)?;
                    outln!("wrote {}", path.display());
                }
                _ => {
                    let mut buf = Vec::new();
                    write(&mut buf, false).map_err(report_failure)?;
                    write_stdout(&buf)?;
                }
            }
        }
    }
    Ok(())
}

/// Runs gathered from the command line.
#[derive(Default)]
struct Resolved {
    sources: Vec<ReportSource>,
    /// Per source: given as a plain run (its newest evaluation may be added).
    auto: Vec<bool>,
    experiment: Option<flow::report::ExperimentInfo>,
}

impl Resolved {
    /// Add what `arg` names; returns the index of its (last) source.
    fn add(&mut self, project: &Path, arg: &str) -> Result<usize, Failure> {
        let as_path = PathBuf::from(arg);
        let in_experiments = project.join(".flow").join("experiments").join(arg);
        for dir in [&as_path, &in_experiments] {
            if is_experiment_dir(dir) {
                let (sources, info) = experiment_sources(dir).map_err(report_failure)?;
                if sources.is_empty() {
                    return Err(Failure::usage(format!(
                        "error: the experiment at {} lists no runs",
                        dir.display()
                    )));
                }
                for s in sources {
                    self.push(s, false);
                }
                self.experiment = Some(info);
                return Ok(self.sources.len() - 1);
            }
        }
        let run = super::runs::locate(project, arg)?;
        let meta = run
            .read_meta()
            .map_err(|e| Failure::own_file("cannot read", &run.meta_file(), &e))?;
        if is_evaluation(&run.path, &meta)
            && let Some(base) = evaluated_run(&meta)
        {
            let index = self.push(
                ReportSource {
                    label: name_of(&base),
                    run_dir: base,
                    eval_dirs: Vec::new(),
                },
                false,
            );
            let evals = &mut self.sources[index].eval_dirs;
            if !evals.iter().any(|e| same_path(e, &run.path)) {
                evals.push(run.path.clone());
            }
            return Ok(index);
        }
        Ok(self.push(
            ReportSource {
                label: meta.name.clone(),
                run_dir: run.path.clone(),
                eval_dirs: Vec::new(),
            },
            true,
        ))
    }

    /// Add a source unless its run is already there; returns its index.
    fn push(&mut self, source: ReportSource, auto: bool) -> usize {
        if let Some(i) = self
            .sources
            .iter()
            .position(|s| same_path(&s.run_dir, &source.run_dir))
        {
            let existing = &mut self.sources[i];
            for e in source.eval_dirs {
                if !existing.eval_dirs.iter().any(|x| same_path(x, &e)) {
                    existing.eval_dirs.push(e);
                }
            }
            self.auto[i] &= auto;
            return i;
        }
        self.sources.push(source);
        self.auto.push(auto);
        self.sources.len() - 1
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

fn report_failure(e: ReportError) -> Failure {
    Failure::of(&e)
}

/// Write to stdout; a closed pipe ends the program quietly.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::io(format!("error: cannot write to stdout: {e}"))),
    }
}
