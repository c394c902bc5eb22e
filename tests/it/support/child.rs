//! One test of this binary re-run alone in a child process, for tests that need a process of
//! their own: process-wide environment variables, or several processes sharing a directory.

use std::process::Command;

/// A command that runs the ignored test `name` of `module` (pass `module_path!()`) alone in a
/// fresh process of this test binary. Add environment variables, then check that its output
/// says `1 passed` (a misspelt name runs nothing and still succeeds).
pub fn test_in_child(module: &str, name: &str) -> Command {
    // `module_path!()` starts with the crate (`it::cache`); test names do not (`cache::name`).
    let path = match module.split_once("::") {
        Some((_, inner)) => format!("{inner}::{name}"),
        None => name.to_string(),
    };
    let exe = std::env::current_exe().expect("the path of this test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["--ignored", "--exact", &path, "--test-threads", "1"]);
    cmd
}
