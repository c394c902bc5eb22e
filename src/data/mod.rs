//! Batch-run data: streaming readers for JSONL, CSV, TSV and JSON-array files, column mapping
//! (`--column-mapping in='${data.col}'`) and base runs for `${run.outputs.col}` chaining.
//!
//! Readers are blocking iterators that hold one row at a time, so memory does not grow with the
//! file; the batch engine drives them from `spawn_blocking` and forwards rows over a channel.
//! A malformed row is an `Err(RowError)` item (that line fails, the run goes on); a file that
//! cannot be read at all is a [`DataError`].
//!
//! Values follow promptflow's loader (`_utils/load_data.py`): CSV/TSV cells stay strings (pandas
//! is called with `dtype=object, keep_default_na=False`, so `""` stays `""`), JSON values keep
//! their JSON types; the flow's declared input types coerce them later.

mod base_run;
mod delimited;
mod error;
mod json_array;
mod jsonl;
mod mapping;
mod preflight;
mod reader;

pub use base_run::{BaseLine, BaseRun};
pub use error::{DataError, Position, RowError};
pub use mapping::{ColumnMapping, MappingError, MappingSource, MissingColumn};
pub use preflight::{InputsError, check_images, check_inputs};
pub use reader::{DataReader, Format, count_rows, open};

use serde_json::{Map, Value};

/// One data row, ready for column mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 0-based index among the data rows (promptflow's `line_number`).
    pub line_number: usize,
    /// 1-based position for messages: the file line for JSONL/CSV/TSV (the CSV header is line 1;
    /// a multi-line CSV record is reported at its first line), the element index + 1 for JSON arrays.
    pub row: usize,
    /// The row's columns, in file order.
    pub values: Map<String, Value>,
}
