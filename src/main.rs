//! The `flow` command line: a thin layer over the `flow` library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
