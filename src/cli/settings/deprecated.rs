//! Spellings that still work but are no longer documented: each is a hidden flag that prints a
//! one-line warning naming its replacement, so scripts keep running while they are updated.

use clap::ArgMatches;
use clap::parser::ValueSource;

/// A deprecated flag of one command.
pub(super) struct Deprecated {
    /// The subcommand path, e.g. `["runs", "list"]`.
    pub command: &'static [&'static str],
    /// The clap id of the hidden flag.
    pub id: &'static str,
    /// The old spelling, as the user wrote it.
    pub old: &'static str,
    /// The spelling to use instead.
    pub new: &'static str,
}

/// Every deprecated spelling. The hidden flags are declared next to their replacements.
pub(super) const DEPRECATED: &[Deprecated] = &[
    Deprecated {
        command: &["runs", "list"],
        id: "json",
        old: "--json",
        new: "--output json",
    },
    Deprecated {
        command: &["runs", "show"],
        id: "json",
        old: "--json",
        new: "--output json",
    },
    Deprecated {
        command: &["build"],
        id: "output_dir",
        old: "--output DIR",
        new: "--out-dir DIR",
    },
    Deprecated {
        command: &["deploy"],
        id: "output_dir",
        old: "--output DIR",
        new: "--out-dir DIR",
    },
];

/// One warning line per deprecated spelling used on the command line.
pub fn warnings(matches: &ArgMatches) -> Vec<String> {
    let mut path: Vec<&str> = Vec::new();
    let mut current = matches;
    let mut out = Vec::new();
    loop {
        for d in DEPRECATED.iter().filter(|d| d.command == path.as_slice()) {
            let given = current.try_contains_id(d.id).unwrap_or(false)
                && current.value_source(d.id) == Some(ValueSource::CommandLine);
            if given {
                out.push(format!(
                    "warning: `flow {} {}` is deprecated: use `{}` instead (the old spelling still works for now)",
                    d.command.join(" "),
                    d.old,
                    d.new
                ));
            }
        }
        match current.subcommand() {
            Some((name, sub)) => {
                path.push(name);
                current = sub;
            }
            None => return out,
        }
    }
}
