//! CSV reports, written with the `csv` crate (RFC 4180 quoting: commas, quotes and newlines
//! inside cells are quoted).
//!
//! - **long** (`report.csv`, for scripts): one row per line × run.
//! - **wide** (`report.wide.csv`, for side-by-side reading): one row per line, a column group per
//!   run.
//!
//! Column order is stable: fixed columns, then inputs, outputs, scores and evaluation outputs in
//! the order they first appear (see docs/reports.md).
//!
//! **Formulas cannot run.** Following OWASP's CSV-injection advice, any cell of text that came
//! from a dataset, a model or a name (inputs, outputs, errors, labels, header names) and starts
//! with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which spreadsheets
//! show as text. Numbers this tool writes itself (line numbers, scores, latency, tokens, cost)
//! and values that are JSON numbers are written as plain numbers — a spreadsheet reads `-0.5` as
//! a number, not a formula — so they stay numeric. A *string* `"-1"` from a model is text and is
//! prefixed.
//!
//! **Encoding:** UTF-8 with a byte-order mark by default, because Excel opens a BOM-less CSV in
//! the machine's legacy code page and garbles non-ASCII text; LibreOffice, Google Sheets,
//! pandas and `csv.DictReader(open(f, encoding="utf-8-sig"))` read it fine.
//! `CsvOptions { bom: false }` (`flow report --no-bom`) leaves it out.

use std::io::Write;

use serde_json::Value;

use super::error::ReportError;
use super::model::{LineCell, Report, status_name, value_text};

/// The UTF-8 byte-order mark.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How CSV files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// Start the file with a UTF-8 byte-order mark (for Excel).
    pub bom: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { bom: true }
    }
}

/// Make a text cell inert in spreadsheets: a leading `=`, `+`, `-`, `@`, tab or carriage
/// return gets a `'` in front.
pub fn neutralize(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

/// A data value as a cell: JSON numbers and booleans as they are, anything else as text
/// (neutralised).
fn value_cell(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => neutralize(&value_text(other)).into_owned(),
    }
}

/// A number this tool computed.
fn number(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        String::new()
    }
}

fn text_cell(text: &str) -> String {
    neutralize(text).into_owned()
}

fn writer<W: Write>(mut out: W, options: CsvOptions) -> Result<csv::Writer<W>, ReportError> {
    if options.bom {
        out.write_all(BOM)
            .map_err(|e| ReportError::Csv(csv::Error::from(e)))?;
    }
    Ok(csv::WriterBuilder::new().flexible(false).from_writer(out))
}

/// A run's gate verdict as a cell: `passed`, `failed: <why>`, `inconclusive: <why>`, or empty
/// when no evaluation of the run recorded one (`verdict.json`).
fn verdict_cell(run: &super::model::RunReport) -> String {
    match &run.verdict {
        None => String::new(),
        Some(v) if v.passed => "passed".to_string(),
        Some(v) if v.verdict.starts_with("inconclusive") => text_cell(&v.verdict),
        Some(v) => text_cell(&format!("failed: {}", v.verdict)),
    }
}

/// The per-run columns after `outputs.*`, in order.
fn cell_headers(report: &Report) -> Vec<String> {
    let c = &report.columns;
    let mut h = Vec::new();
    for s in &c.scores {
        h.push(format!("scores.{s}"));
        h.push(format!("scores.{s}.passed"));
    }
    h.extend(c.eval_outputs.iter().map(|e| format!("eval.{e}")));
    for fixed in [
        "status",
        "passed",
        "error",
        "latency_ms",
        "tokens",
        "cost_usd",
    ] {
        h.push(fixed.to_string());
    }
    h
}

/// One run's cells for a line, matching `outputs.*` + [`cell_headers`]; empty when the run did
/// not run the line.
fn cell_values(report: &Report, cell: Option<&LineCell>, out: &mut Vec<String>) {
    let c = &report.columns;
    let width = c.outputs.len() + c.scores.len() * 2 + c.eval_outputs.len() + 6;
    let Some(cell) = cell else {
        out.extend(std::iter::repeat_n(String::new(), width));
        return;
    };
    for o in &c.outputs {
        out.push(cell.outputs.get(o).map(value_cell).unwrap_or_default());
    }
    for s in &c.scores {
        match cell.scores.get(s) {
            Some(score) => {
                out.push(score.score.map(number).unwrap_or_default());
                out.push(score.passed.to_string());
            }
            None => out.extend([String::new(), String::new()]),
        }
    }
    for e in &c.eval_outputs {
        out.push(cell.eval_outputs.get(e).map(value_cell).unwrap_or_default());
    }
    out.push(status_name(cell.status).to_string());
    // `passed` is an evaluator's verdict: without per-line scores there is none, and a line that
    // merely completed is not called passed.
    out.push(if c.scores.is_empty() {
        String::new()
    } else {
        cell.passed().to_string()
    });
    out.push(cell.error.as_deref().map(text_cell).unwrap_or_default());
    out.push(number(cell.latency_ms));
    out.push(cell.tokens.total_tokens.to_string());
    out.push(number(cell.cost_usd));
}

/// Write the long CSV: `run, verdict, variant, dataset, line_number, inputs.*, outputs.*,
/// scores.<e>, scores.<e>.passed, eval.*, status, passed, error, latency_ms, tokens, cost_usd`;
/// one row per line × run, lines in order, runs in report order within a line.
pub fn write_long<W: Write>(
    report: &Report,
    out: W,
    options: CsvOptions,
) -> Result<(), ReportError> {
    let mut w = writer(out, options)?;
    let c = &report.columns;
    let mut header: Vec<String> = ["run", "verdict", "variant", "dataset", "line_number"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(c.inputs.iter().map(|i| text_cell(&format!("inputs.{i}"))));
    header.extend(c.outputs.iter().map(|o| text_cell(&format!("outputs.{o}"))));
    header.extend(cell_headers(report).iter().map(|h| text_cell(h)));
    w.write_record(&header)?;
    let mut row: Vec<String> = Vec::with_capacity(header.len());
    for line in &report.lines {
        for (run, cell) in report.runs.iter().zip(&line.cells) {
            let Some(cell) = cell else { continue };
            row.clear();
            row.push(text_cell(&run.label));
            row.push(verdict_cell(run));
            row.push(text_cell(&run.variant));
            row.push(text_cell(&report.datasets[line.dataset]));
            row.push(line.line_number.to_string());
            for i in &c.inputs {
                row.push(line.inputs.get(i).map(value_cell).unwrap_or_default());
            }
            cell_values(report, Some(cell), &mut row);
            w.write_record(&row)?;
        }
    }
    w.flush().map_err(|e| ReportError::Csv(e.into()))?;
    Ok(())
}

/// Write the wide CSV: `dataset, line_number, inputs.*`, then for each run a group of columns
/// named `<run label>: verdict`, `<run label>: outputs.x`, `<run label>: status`, ...; one row
/// per line.
pub fn write_wide<W: Write>(
    report: &Report,
    out: W,
    options: CsvOptions,
) -> Result<(), ReportError> {
    let mut w = writer(out, options)?;
    let c = &report.columns;
    let mut header: Vec<String> = vec!["dataset".into(), "line_number".into()];
    header.extend(c.inputs.iter().map(|i| text_cell(&format!("inputs.{i}"))));
    let per_run: Vec<String> = std::iter::once("verdict".to_string())
        .chain(c.outputs.iter().map(|o| format!("outputs.{o}")))
        .chain(cell_headers(report))
        .collect();
    for run in &report.runs {
        header.extend(
            per_run
                .iter()
                .map(|h| text_cell(&format!("{}: {h}", run.label))),
        );
    }
    w.write_record(&header)?;
    let mut row: Vec<String> = Vec::with_capacity(header.len());
    for line in &report.lines {
        row.clear();
        row.push(text_cell(&report.datasets[line.dataset]));
        row.push(line.line_number.to_string());
        for i in &c.inputs {
            row.push(line.inputs.get(i).map(value_cell).unwrap_or_default());
        }
        for (run, cell) in report.runs.iter().zip(&line.cells) {
            row.push(match cell {
                Some(_) => verdict_cell(run),
                None => String::new(),
            });
            cell_values(report, cell.as_ref(), &mut row);
        }
        w.write_record(&row)?;
    }
    w.flush().map_err(|e| ReportError::Csv(e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    fn parse(bytes: &[u8]) -> Vec<Vec<String>> {
        let text = std::str::from_utf8(bytes).unwrap();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect()
    }

    #[test]
    fn neutralize_prefixes_what_spreadsheets_would_evaluate() {
        for (input, expected) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("a=1", "a=1"),
            ("", ""),
            ("Zürich", "Zürich"),
        ] {
            assert_eq!(neutralize(input), expected, "{input:?}");
        }
    }

    #[test]
    fn long_csv_columns_rows_quoting_and_neutralisation() {
        let mut report = fixture::report();
        report.runs[1].verdict = Some(crate::eval::eval_dir::VerdictRecord {
            passed: false,
            verdict: "1 gate(s) failed".into(),
            gates: vec![],
        });
        let mut out = Vec::new();
        write_long(&report, &mut out, CsvOptions::default()).unwrap();
        assert!(out.starts_with(BOM));
        let rows = parse(&out);
        assert_eq!(
            rows[0],
            [
                "run",
                "verdict",
                "variant",
                "dataset",
                "line_number",
                "inputs.question",
                "outputs.answer",
                "scores.exact_match",
                "scores.exact_match.passed",
                "status",
                "passed",
                "error",
                "latency_ms",
                "tokens",
                "cost_usd"
            ]
        );
        assert_eq!(rows.len(), 1 + 6, "a row per line × run");
        let formula_label = "'=cmd|' /C calc'!A0";
        assert_eq!(rows[1][..5], ["base", "", "base", "data.jsonl", "0"]);
        assert_eq!(rows[2][1], "failed: 1 gate(s) failed", "the run's verdict");
        assert_eq!(rows[2][0], formula_label, "a label is text too");
        // Newlines, quotes, commas and non-ASCII survive the round trip.
        assert_eq!(rows[1][5], "Capital of France,\n\"the\" city? Zürich ✓");
        assert_eq!(rows[2][6], "Paris, France");
        // A string that looks like a formula is neutralised; a JSON number is not.
        assert_eq!(rows[3][5], "'-1+2");
        assert_eq!(rows[4][6], "-3");
        assert_eq!(rows[4][7], "-0.5", "scores are numbers");
        assert_eq!(rows[5][5], "'+tab\tand = sign");
        // Markup is just text in a CSV.
        assert!(rows[3][6].starts_with("</textarea>\"><img"));
        // The failed line: empty output and score, status, neutralised error.
        assert_eq!(rows[6][6..9], ["", "", "false"]);
        assert_eq!(rows[6][9], "Failed");
        assert_eq!(rows[6][11], "'@SUM(A1) failed, \"quoted\"");
        assert_eq!(rows[1][12..], ["12.5", "15", "0.0001"]);
    }

    #[test]
    fn wide_csv_has_a_column_group_per_run_and_no_bom_when_asked() {
        let report = fixture::report();
        let mut out = Vec::new();
        write_wide(&report, &mut out, CsvOptions { bom: false }).unwrap();
        assert!(!out.starts_with(BOM));
        let rows = parse(&out);
        assert_eq!(rows.len(), 1 + 3, "a row per line");
        let header = &rows[0];
        assert_eq!(header[..3], ["dataset", "line_number", "inputs.question"]);
        assert_eq!(header[3], "base: verdict");
        assert_eq!(header[4], "base: outputs.answer");
        let group = 1 + 1 + 2 + 6;
        assert_eq!(header.len(), 3 + 2 * group);
        assert_eq!(header[4 + group], "'=cmd|' /C calc'!A0: outputs.answer");
        assert_eq!(header[4 + group + 3], "'=cmd|' /C calc'!A0: status");
        assert_eq!(rows[1][4], "Paris");
        assert_eq!(rows[1][4 + group], "Paris, France");
        assert_eq!(rows[3][4 + group + 3], "Failed");
        // Every row has every column.
        assert!(rows.iter().all(|r| r.len() == header.len()));
    }
}
