//! Tests of the command line as a whole: every command's help ends with examples that parse,
//! deprecated spellings warn, and bad values are usage errors naming their flag.

use clap::error::ErrorKind;

use super::{Cli, Command, command, examples, settings};
use clap::FromArgMatches;

/// Split a shell command line: words separated by spaces, '...' and "..." quoting.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn parse(line: &str) -> Result<(Cli, clap::ArgMatches), clap::Error> {
    let matches = command().try_get_matches_from(shell_words(line))?;
    Ok((Cli::from_arg_matches(&matches)?, matches))
}

#[test]
fn the_parser_is_consistent() {
    command().debug_assert();
}

#[test]
fn shell_words_follow_quotes() {
    assert_eq!(
        shell_words("flow run f --inputs q=\"a b\" --variant '${x.y}'"),
        [
            "flow",
            "run",
            "f",
            "--inputs",
            "q=a b",
            "--variant",
            "${x.y}"
        ]
    );
}

#[test]
fn every_command_ends_its_help_with_examples() {
    fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
        let after = cmd
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        if !after.contains("Examples:\n") {
            missing.push(path.clone());
        }
        for sub in cmd.get_subcommands() {
            walk(sub, format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&command(), "flow".into(), &mut missing);
    assert!(
        missing.is_empty(),
        "no examples in the help of: {missing:?}"
    );
    // flow's own help keeps the exit statuses last.
    let top = command()
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    assert!(
        top.trim_end().ends_with(super::EXIT_STATUSES.trim_end()),
        "{top}"
    );
}

#[test]
fn every_example_parses_as_its_command() {
    for (path, text) in examples::all() {
        // Continued lines are shown indented after a ` \`: each must fit the help's 100
        // columns without wrapping.
        let parts: Vec<&str> = text.lines().collect();
        for (i, part) in parts.iter().enumerate() {
            let indent = if i == 0 { 2 } else { 6 };
            let continued = if i + 1 < parts.len() { 2 } else { 0 };
            assert!(
                indent + part.len() + continued <= 100,
                "the example line `{part}` is too long for the help"
            );
        }
        let line = &text.replace('\n', " ");
        let words = shell_words(line);
        assert_eq!(words.first().map(String::as_str), Some("flow"), "{line}");
        assert!(
            words[1..].starts_with(&path.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            "the example `{line}` is not a `flow {}` command",
            path.join(" ")
        );
        if let Err(e) = parse(line) {
            panic!("the example `{line}` does not parse:\n{e}");
        }
    }
}

#[test]
fn deprecated_spellings_are_hidden_flags_that_warn() {
    for (command_line, old, new) in [
        ("flow runs list --json", "--json", "--output json"),
        ("flow runs show main --json", "--json", "--output json"),
        ("flow build f --output dir", "--output DIR", "--out-dir DIR"),
        (
            "flow deploy --target compose --image a:1 --output dir",
            "--output DIR",
            "--out-dir DIR",
        ),
    ] {
        let (_, matches) = parse(command_line).unwrap_or_else(|e| panic!("{command_line}: {e}"));
        let warnings = settings::deprecation_warnings(&matches);
        assert_eq!(warnings.len(), 1, "{command_line}: {warnings:?}");
        assert!(
            warnings[0].contains(old) && warnings[0].contains(new),
            "{command_line}: {}",
            warnings[0]
        );
    }
    for command_line in [
        "flow runs list --output json",
        "flow runs show main",
        "flow build f --out-dir dir",
        "flow build f -o dir",
        "flow deploy --target compose --image a:1 --out-dir dir",
        "flow run f --output json",
    ] {
        let (_, matches) = parse(command_line).unwrap_or_else(|e| panic!("{command_line}: {e}"));
        assert_eq!(
            settings::deprecation_warnings(&matches),
            Vec::<String>::new(),
            "{command_line}"
        );
    }
    // The hidden spellings stay out of the help.
    let mut cmd = command();
    let build = cmd
        .find_subcommand_mut("build")
        .map(|c| c.render_long_help().to_string());
    assert!(build.is_some_and(|h| !h.contains("--output") && h.contains("--out-dir")));
}

#[test]
fn the_old_and_new_spellings_mean_the_same() {
    let out_dir = |line: &str| match parse(line).map(|(cli, _)| cli.command) {
        Ok(Command::Build(b)) => b.out_dir.or(b.output_dir),
        other => panic!("{line}: {other:?}"),
    };
    assert_eq!(
        out_dir("flow build f --output a"),
        out_dir("flow build f --out-dir a")
    );
    assert_eq!(
        out_dir("flow build f -o a"),
        out_dir("flow build f --out-dir a")
    );
    assert!(parse("flow build f --output a --out-dir b").is_err());
    assert!(parse("flow build f").is_err(), "build needs a directory");
    assert!(
        parse("flow run f --output pretty").is_ok(),
        "pretty is text"
    );
    assert!(parse("flow runs list --json --output text").is_err());
}

#[test]
fn bad_values_are_usage_errors_naming_the_flag() {
    for (line, flag) in [
        ("flow run f --request-timeout 0", "--request-timeout"),
        ("flow run f --request-timeout abc", "--request-timeout"),
        ("flow run f --data d --line-timeout nan", "--line-timeout"),
        ("flow run f --data d --line-timeout inf", "--line-timeout"),
        ("flow run f --data d --concurrency 0", "--concurrency"),
        ("flow run f --data d --shards 0", "--shards"),
        ("flow eval --run r --evaluator f1 --repeat 0", "--repeat"),
        (
            "flow eval --run r --evaluator f1 --tolerance=-1",
            "--tolerance",
        ),
        ("flow experiment --concurrency 0", "--concurrency"),
        (
            "flow experiment --upload s3://b --upload-every=-1",
            "--upload-every",
        ),
        ("flow serve f --timeout 0", "--timeout"),
        ("flow serve f --max-body-bytes 0", "--max-body-bytes"),
        ("flow probe --timeout=-1", "--timeout"),
        ("flow cache clear --older-than 7y", "--older-than"),
        (
            "flow deploy --target kubernetes --image a --replicas 0",
            "--replicas",
        ),
        (
            "flow deploy --target kubernetes --image a --hpa-max 0",
            "--hpa-max",
        ),
        (
            "flow deploy smoke --url u --smoke-timeout 0",
            "--smoke-timeout",
        ),
        (
            "flow deploy --target kubernetes-job --image a --shards 0",
            "--shards",
        ),
        (
            "flow deploy --target kubernetes-job --image a --parallelism 0",
            "--parallelism",
        ),
        (
            "flow deploy --target kubernetes-job --image a --wait-timeout 0",
            "--wait-timeout",
        ),
    ] {
        let Err(e) = parse(line) else {
            panic!("`{line}` was accepted");
        };
        assert!(
            matches!(e.kind(), ErrorKind::ValueValidation),
            "{line}: {:?}",
            e.kind()
        );
        assert!(e.use_stderr(), "{line}: a usage error exits 2");
        assert!(e.to_string().contains(flag), "{line}: {e}");
    }
}

#[test]
fn typed_values_keep_their_spellings_and_defaults() {
    let Ok((cli, _)) = parse("flow run f --request-timeout 0.5 --data d --line-timeout 30") else {
        panic!("the command line does not parse");
    };
    let Command::Run(run) = cli.command else {
        panic!("not flow run");
    };
    assert_eq!(
        run.model.request_timeout(),
        std::time::Duration::from_millis(500)
    );
    assert_eq!(
        run.batch
            .options
            .line_timeout
            .map(settings::Seconds::duration),
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(
        run.batch.options.concurrency(),
        settings::DEFAULT_CONCURRENCY
    );
    let Ok((cli, _)) = parse("flow run f") else {
        panic!("the command line does not parse");
    };
    let Command::Run(run) = cli.command else {
        panic!("not flow run");
    };
    assert_eq!(run.model.request_timeout_s(), 120.0);
    assert_eq!(run.output.format, settings::OutputFormat::Text);
}

/// The help of `flag` of `flow run`, short and long.
fn run_help_of(flag: &str) -> (String, String) {
    use clap::CommandFactory;
    let cmd = super::Cli::command();
    let run = cmd.find_subcommand("run").expect("flow run");
    let arg = run
        .get_arguments()
        .find(|a| a.get_long() == Some(flag))
        .unwrap_or_else(|| panic!("--{flag}"));
    (
        arg.get_help().map(ToString::to_string).unwrap_or_default(),
        arg.get_long_help()
            .map(ToString::to_string)
            .unwrap_or_default(),
    )
}

/// Flags that are `Option`s (so `--resume` can tell a value given again from the run's own)
/// write their default into the help by hand: it must be the default used.
#[test]
fn defaults_written_into_the_help_are_the_defaults_used() {
    use super::settings::{DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT_S};
    for (flag, default) in [
        ("request-timeout", DEFAULT_REQUEST_TIMEOUT_S.to_string()),
        ("max-retries", DEFAULT_MAX_RETRIES.to_string()),
        ("concurrency", DEFAULT_CONCURRENCY.to_string()),
    ] {
        let (short, long) = run_help_of(flag);
        let shown = format!("[default: {default}]");
        assert!(short.ends_with(&format!(" {shown}")), "--{flag}: {short}");
        assert!(long.ends_with(&format!("\n\n{shown}")), "--{flag}: {long}");
    }
}
