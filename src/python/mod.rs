//! Python `@tool` nodes: a pool of long-lived `python3` worker processes.
//!
//! Each worker runs the embedded `worker.py` with the embedded `promptflow` shim first on
//! `sys.path`, so flows written for Microsoft's promptflow import `tool`, `log_metric` and the
//! connection classes without the real package installed. Requests and replies are single JSON
//! lines on private file descriptors; prints made by tools are captured per call.

mod entry;
mod error;
mod host;
mod pool;
mod shim;
mod types;
mod worker;

pub use entry::{EntryDescription, EntryError, EntryKind, EntryParam, InitParam, describe_entry};
pub use error::{CallSpent, PythonError};
pub use host::{
    DEFAULT_HOST_TIMEOUT, HostCall, HostDeltas, HostError, HostFuture, HostHandler, HostReply,
    HostWants, MAX_HOST_REQUEST_BYTES,
};
pub use pool::PythonPool;
pub use shim::install_shim;
pub use types::{PythonCall, PythonConfig, PythonOutput, StreamEvent, ToolParam, ToolSignature};
