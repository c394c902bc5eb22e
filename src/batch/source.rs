//! Where a batch's lines come from: the dataset, read on its own thread as a stream, each row
//! turned into flow inputs by the column mapping, sent in chunks over a bounded channel (so
//! reading never runs far ahead of the lines in flight).

use std::collections::HashSet;
use std::path::Path;
use std::thread::JoinHandle;

use indexmap::IndexMap;
use tokio::sync::mpsc;

use super::PendingLine;
use crate::data::{BaseRun, ColumnMapping, DataError};
use crate::model::FlowInput;
use crate::record::{ErrorInfo, ErrorKind};
use crate::run_store::Shard;

/// Lines sent over the channel at once. The reader thread then wakes once per chunk, not once
/// per line, when the batch takes lines from a full channel (docs/performance.md).
const CHUNK: usize = 32;

/// A running line source: the channel of lines, in chunks of up to [`CHUNK`] in line order, and
/// the reader thread (which returns the error that stopped it early, if any).
pub struct LineSource {
    pub lines: mpsc::Receiver<Vec<PendingLine>>,
    pub reader: JoinHandle<Option<String>>,
}

/// Open `data` (errors such as a missing file come back here, before anything runs) and start
/// reading it. Lines whose numbers are in `skip` (already done, when resuming) are not sent, nor
/// lines outside `shard` when one is given.
/// With `require_base_line`, a line whose base-run line failed or never ran fails too (an
/// evaluation must count those lines, never drop them).
#[allow(clippy::too_many_arguments)]
pub fn spawn_line_source(
    data: &Path,
    mapping: ColumnMapping,
    base: Option<BaseRun>,
    inputs: IndexMap<String, FlowInput>,
    skip: HashSet<usize>,
    shard: Option<Shard>,
    capacity: usize,
    require_base_line: bool,
    message_format: crate::image::MessageFormat,
) -> Result<LineSource, DataError> {
    let skipped = move |n: usize| skip.contains(&n) || shard.is_some_and(|s| !s.contains(n));
    let reader = crate::data::open(data)?.with_message_format(message_format);
    let (tx, rx) = mpsc::channel((capacity / CHUNK).max(2));
    let handle = std::thread::Builder::new()
        .name("flow-data-reader".into())
        .spawn(move || {
            let mut reader = reader;
            let mut chunk = Vec::with_capacity(CHUNK);
            for item in reader.by_ref() {
                let pending = match item {
                    Ok(row) => {
                        if skipped(row.line_number) {
                            continue;
                        }
                        let base_problem = match (&base, require_base_line) {
                            (Some(b), true) => base_line_problem(b, row.line_number),
                            _ => None,
                        };
                        let inputs = match base_problem {
                            Some(problem) => Err(ErrorInfo::new(ErrorKind::Input, problem)),
                            None => mapping
                                .apply_with_run(&inputs, &row, base.as_ref())
                                .map_err(|e| ErrorInfo::new(ErrorKind::Input, e.to_string())),
                        };
                        PendingLine {
                            line_number: row.line_number,
                            inputs,
                        }
                    }
                    Err(e) => {
                        if skipped(e.line_number) {
                            continue;
                        }
                        PendingLine {
                            line_number: e.line_number,
                            inputs: Err(ErrorInfo::new(ErrorKind::Input, e.to_string())),
                        }
                    }
                };
                chunk.push(pending);
                // A full chunk goes; so does a partial one when the batch has nothing left to
                // start (a slow source, the first lines), so lines never wait for a chunk to fill.
                if (chunk.len() >= CHUNK || tx.capacity() == tx.max_capacity())
                    && tx
                        .blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                        .is_err()
                {
                    return None;
                }
            }
            if !chunk.is_empty() && tx.blocking_send(chunk).is_err() {
                return None;
            }
            reader.fatal().map(|e| e.to_string())
        })
        .map_err(|e| {
            DataError::new(
                data,
                None,
                format!("cannot start the reader thread: {e}"),
                "",
            )
        })?;
    Ok(LineSource {
        lines: rx,
        reader: handle,
    })
}

/// Why line `n` of the base run cannot be evaluated, if it cannot.
fn base_line_problem(base: &BaseRun, n: usize) -> Option<String> {
    match base.line(n) {
        Ok(Some(line)) if line.outputs.is_some() => None,
        Ok(Some(_)) => Some(format!(
            "line {n} of the base run {} failed, so it counts as a failed evaluation",
            base.dir().display()
        )),
        Ok(None) => Some(format!(
            "line {n} is not in the base run {} (it never ran), so it counts as a failed evaluation",
            base.dir().display()
        )),
        Err(e) => Some(e.to_string()),
    }
}
