//! Errors from running Python tools.

use std::path::PathBuf;

/// Why a Python tool could not be inspected or called.
/// What a call that raised did before it raised.
#[derive(Debug, Default)]
pub struct CallSpent {
    /// The `@trace`d calls it made.
    pub traces: Vec<serde_json::Value>,
    /// The model calls it made through flow (they were made, and paid for).
    pub host_calls: Vec<super::HostCall>,
}

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// The interpreter could not be started.
    #[error(
        "{python} not found or not runnable ({source}): install Python 3.9+ or set FLOW_PYTHON to the interpreter's path"
    )]
    Spawn {
        /// The interpreter that was tried.
        python: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The worker started but refused to run (for example a Python older than 3.9).
    #[error("python worker ({python}) failed to start: {stderr_tail}")]
    Startup {
        /// The interpreter that was tried.
        python: String,
        /// The last lines the worker wrote to stderr.
        stderr_tail: String,
    },
    /// The embedded promptflow shim could not be written to the cache directory.
    #[error(
        "cannot write the embedded promptflow shim to {dir}: {source}; check that the temp directory is writable (or set TMPDIR)"
    )]
    ShimInstall {
        /// The directory being written.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The tool file does not exist.
    #[error("python tool file not found: {file}; check the node's `source.path`")]
    NotFound {
        /// The file as requested.
        file: PathBuf,
    },
    /// Importing the tool file raised (including a syntax error, whose message names file and line).
    #[error("cannot import {file}: {type_name}: {message}\n{traceback}")]
    Load {
        /// The tool file.
        file: PathBuf,
        /// The Python exception type, e.g. `SyntaxError`.
        type_name: String,
        /// The exception message.
        message: String,
        /// The traceback, starting at the user's code.
        traceback: String,
    },
    /// The file has no `@tool` function.
    #[error(
        "no @tool function in {file}: decorate the node's function with `@tool` (from promptflow import tool)"
    )]
    NoTool {
        /// The tool file.
        file: PathBuf,
    },
    /// The file has several `@tool` functions and the node did not say which one.
    #[error("{file} has several @tool functions ({}): set the node's `function` to one of them", found.join(", "))]
    AmbiguousTool {
        /// The tool file.
        file: PathBuf,
        /// The `@tool` functions found.
        found: Vec<String>,
    },
    /// The named function does not exist in the file.
    #[error("no function `{function}` in {file}{}", hint(found))]
    FunctionNotFound {
        /// The tool file.
        file: PathBuf,
        /// The function asked for.
        function: String,
        /// The `@tool` functions that do exist.
        found: Vec<String>,
    },
    /// The tool raised an exception.
    #[error("{type_name}: {message}\n{traceback}")]
    Exception {
        /// The Python exception type, e.g. `ValueError`.
        type_name: String,
        /// The exception message.
        message: String,
        /// The traceback, starting at the user's code.
        traceback: String,
        /// What the tool printed before it failed.
        stdout: String,
        /// What it did before it failed that its record keeps (boxed: errors stay small).
        spent: Box<CallSpent>,
    },
    /// The worker process exited or crashed during the call; the pool replaces it.
    #[error(
        "the python worker died during the call (the tool crashed or exited the process); its last stderr lines:\n{stderr_tail}"
    )]
    WorkerDied {
        /// The last lines of the worker's stderr.
        stderr_tail: String,
    },
    /// The worker sent something that is not a valid reply (a bug in flow, please report it).
    #[error("python worker protocol error: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// The pool was shut down.
    #[error("the python worker pool has been shut down")]
    Shutdown,
}

impl crate::error::Classify for PythonError {
    /// A tool that cannot be found, imported or started is configuration; a tool that raises
    /// fails its line.
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            PythonError::Exception { .. }
            | PythonError::WorkerDied { .. }
            | PythonError::Protocol { .. }
            | PythonError::Shutdown => ErrorClass::Quality,
            PythonError::ShimInstall { .. } => ErrorClass::Io,
            _ => ErrorClass::Config,
        }
    }
}

fn hint(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!("; @tool functions there: {}", found.join(", "))
    }
}
