//! The JSON report: the whole report model (runs, metrics, every line with each run's outputs,
//! scores and node trace), for scripts that would rather not parse CSV.

use std::io::Write;

use super::error::ReportError;
use super::model::Report;

/// Write the report as pretty-printed JSON.
pub fn write_json<W: Write>(report: &Report, mut out: W) -> Result<(), ReportError> {
    let text = crate::non_finite::to_vec_pretty(report)
        .map_err(|e| ReportError::Template(format!("cannot encode the report as JSON: {e}")))?;
    out.write_all(&text)
        .map_err(|e| ReportError::Template(format!("cannot write the JSON report: {e}")))?;
    out.write_all(b"\n")
        .map_err(|e| ReportError::Template(format!("cannot write the JSON report: {e}")))
}
