//! Batch runs: many lines of one flow, concurrently, each written to the run directory as it
//! finishes; then aggregation once (docs/batch-runs.md).
//!
//! Lines come from a channel fed by a reader thread (the dataset is streamed, never loaded);
//! at most `concurrency` lines are in flight; each finished line goes to the run writer thread and
//! is dropped, so memory stays flat however large the dataset is. Only the values aggregation
//! nodes need are kept.

mod engine;
pub mod merge;
mod source;
mod to_dir;

pub use engine::{BatchConfig, BatchOutcome, PendingLine, Progress, run_batch};
pub use source::{LineSource, spawn_line_source};
pub use to_dir::{BatchStart, DirBatch, DirBatchError, DirRun, new_run_meta, run_to_dir};
