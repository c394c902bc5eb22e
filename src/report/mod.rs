//! Reports people read and scripts parse (docs/reports.md): runs, their evaluations and experiments
//! loaded into one [`Report`] (`load`, `sources`), rendered as CSV (`csv`: long and wide), one
//! self-contained HTML file (`html`, with `charts`) or JSON (`json`).
//!
//! ```text
//! run dirs + eval dirs + summary.json ─► load ─► Report ─► csv  (report.csv, report.wide.csv)
//!                                                        ├► html (report.html)
//!                                                        └► json
//! ```

mod charts;
pub mod csv;
mod error;
pub mod html;
pub mod invisible;
mod json;
mod load;
mod model;
mod sources;

use std::io::Write as _;
use std::path::{Path, PathBuf};

pub use self::csv::{CsvOptions, neutralize, write_long, write_wide};
pub use error::ReportError;
pub use html::render_html;
pub use json::write_json;
pub use load::{
    LoadOptions, ReportSource, TRACE_ALL_LIMIT, TRACE_TEXT_LIMIT, Traces, load_report, run_meta,
};
pub use model::{
    Columns, ExperimentInfo, LineCell, NodeTrace, Report, ReportLine, RunReport, RunSummary,
    ScoreCell,
};
pub use sources::{
    EXPERIMENT_SUMMARY, evaluated_run, experiment_sources, is_evaluation, is_experiment_dir,
    label_runs, latest_evaluation,
};

/// The files [`write_reports`] wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub html: PathBuf,
    pub csv: PathBuf,
    pub wide_csv: PathBuf,
}

/// Load `sources` (the first is the baseline) and write `report.html`, `report.csv` (long) and
/// `report.wide.csv` into `out_dir` (created if missing).
pub fn write_reports(
    out_dir: &Path,
    title: &str,
    sources: &[ReportSource],
) -> Result<ReportFiles, ReportError> {
    let report = load_report(sources, &LoadOptions::new(title))?;
    write_report_files(out_dir, &report, CsvOptions::default())
}

/// Write the three report files of an already loaded report into `out_dir`.
pub fn write_report_files(
    out_dir: &Path,
    report: &Report,
    csv: CsvOptions,
) -> Result<ReportFiles, ReportError> {
    std::fs::create_dir_all(out_dir).map_err(|e| ReportError::Write {
        path: out_dir.to_path_buf(),
        source: e,
    })?;
    let files = ReportFiles {
        html: out_dir.join("report.html"),
        csv: out_dir.join("report.csv"),
        wide_csv: out_dir.join("report.wide.csv"),
    };
    let html = render_html(report)?;
    write_file(&files.html, |f| {
        f.write_all(html.as_bytes())
            .map_err(|e| ReportError::Write {
                path: files.html.clone(),
                source: e,
            })
    })?;
    write_file(&files.csv, |f| write_long(report, f, csv))?;
    write_file(&files.wide_csv, |f| write_wide(report, f, csv))?;
    Ok(files)
}

/// Whether the file at `path` is a report `flow` wrote (HTML, CSV or JSON), judged from its
/// beginning: only such a file is replaced without asking.
pub fn written_by_flow(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    if std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .is_err()
    {
        return false;
    }
    let text = String::from_utf8_lossy(&head);
    let text = text.trim_start_matches('\u{feff}');
    text.contains("<meta name=\"generator\" content=\"flow ")
        || text.starts_with("run,verdict,variant,dataset,line_number")
        || text.starts_with("run,variant,dataset,line_number")
        || text.starts_with("dataset,line_number,")
        || (text.starts_with("{\n  \"title\":") && text.contains("\"generated\":"))
}

/// Write `path` through a buffered temporary file renamed into place, so a reader never sees a
/// half-written report. A file already there that `flow` did not write is never replaced
/// ([`ReportError::WouldOverwrite`]).
pub fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    use std::io::Write;
    let err = |e: std::io::Error| ReportError::Write {
        path: path.to_path_buf(),
        source: e,
    };
    if path.is_dir() || (path.exists() && !written_by_flow(path)) {
        return Err(ReportError::WouldOverwrite {
            path: path.to_path_buf(),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(err)?;
    let mut out = std::io::BufWriter::new(file);
    let result = write(&mut out).and_then(|()| out.flush().map_err(err));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(out);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod fixture;
