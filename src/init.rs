//! `flow init`: scaffold a working project (a flow, a dataset, `.env.example`, `.gitignore`,
//! a README) from templates embedded in the binary.
//!
//! Templates live under `templates/init/<template>/` and are compiled in with `include_str!`.
//! The only substitution is the `{{flow_name}}` placeholder, replaced by plain string
//! replacement in both file paths and contents; Jinja2 prompts in the templates are otherwise
//! copied verbatim.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// The placeholder replaced by the flow's name in template paths and contents.
pub const FLOW_NAME_PLACEHOLDER: &str = "{{flow_name}}";

/// The flow name used when the target directory's name yields no usable identifier.
pub const FALLBACK_FLOW_NAME: &str = "my_flow";

/// Which kind of project `flow init` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum InitTemplate {
    /// An LLM node followed by a Python post-processing node.
    Standard,
    /// A chat flow with `chat_history`, a chat prompt and a Python clean-up node.
    Chat,
    /// An evaluation flow: LLM judge, line-level grading and an aggregation node with metrics.
    Evaluation,
}

impl InitTemplate {
    /// Every template, in the order they are listed to users.
    pub const ALL: [InitTemplate; 3] = [Self::Standard, Self::Chat, Self::Evaluation];

    /// The template's name as typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Chat => "chat",
            Self::Evaluation => "evaluation",
        }
    }

    /// The files this template writes: (relative path, contents), both with placeholders.
    pub fn files(self) -> &'static [TemplateFile] {
        match self {
            Self::Standard => STANDARD,
            Self::Chat => CHAT,
            Self::Evaluation => EVALUATION,
        }
    }
}

impl fmt::Display for InitTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InitTemplate {
    type Err = InitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| InitError::UnknownTemplate(s.to_owned()))
    }
}

/// One embedded template file: its path relative to the project root and its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateFile {
    /// Path relative to the project root; may contain `{{flow_name}}`.
    pub path: &'static str,
    /// File contents; may contain `{{flow_name}}`.
    pub contents: &'static str,
}

const fn file(path: &'static str, contents: &'static str) -> TemplateFile {
    TemplateFile { path, contents }
}

const ENV_EXAMPLE: TemplateFile = file(
    ".env.example",
    include_str!("../templates/init/common/env.example"),
);
const FLOW_TOML: TemplateFile = file(
    crate::project::ROOT_FILE,
    include_str!("../templates/init/common/flow.toml"),
);
const GITIGNORE: TemplateFile = file(
    ".gitignore",
    include_str!("../templates/init/common/gitignore"),
);

const STANDARD: &[TemplateFile] = &[
    file(
        "flows/{{flow_name}}/flow.dag.yaml",
        include_str!("../templates/init/standard/flow.dag.yaml"),
    ),
    file(
        "flows/{{flow_name}}/answer.jinja2",
        include_str!("../templates/init/standard/answer.jinja2"),
    ),
    file(
        "flows/{{flow_name}}/format_answer.py",
        include_str!("../templates/init/standard/format_answer.py"),
    ),
    file(
        "datasets/{{flow_name}}.jsonl",
        include_str!("../templates/init/standard/data.jsonl"),
    ),
    file(
        "README.md",
        include_str!("../templates/init/standard/README.md"),
    ),
    ENV_EXAMPLE,
    GITIGNORE,
    FLOW_TOML,
];

const CHAT: &[TemplateFile] = &[
    file(
        "flows/{{flow_name}}/flow.dag.yaml",
        include_str!("../templates/init/chat/flow.dag.yaml"),
    ),
    file(
        "flows/{{flow_name}}/chat.jinja2",
        include_str!("../templates/init/chat/chat.jinja2"),
    ),
    file(
        "flows/{{flow_name}}/clean_reply.py",
        include_str!("../templates/init/chat/clean_reply.py"),
    ),
    file(
        "datasets/{{flow_name}}.jsonl",
        include_str!("../templates/init/chat/data.jsonl"),
    ),
    file(
        "README.md",
        include_str!("../templates/init/chat/README.md"),
    ),
    ENV_EXAMPLE,
    GITIGNORE,
    FLOW_TOML,
];

const EVALUATION: &[TemplateFile] = &[
    file(
        "flows/{{flow_name}}/flow.dag.yaml",
        include_str!("../templates/init/evaluation/flow.dag.yaml"),
    ),
    file(
        "flows/{{flow_name}}/judge.jinja2",
        include_str!("../templates/init/evaluation/judge.jinja2"),
    ),
    file(
        "flows/{{flow_name}}/grade.py",
        include_str!("../templates/init/evaluation/grade.py"),
    ),
    file(
        "flows/{{flow_name}}/aggregate.py",
        include_str!("../templates/init/evaluation/aggregate.py"),
    ),
    file(
        "datasets/{{flow_name}}.jsonl",
        include_str!("../templates/init/evaluation/data.jsonl"),
    ),
    file(
        "README.md",
        include_str!("../templates/init/evaluation/README.md"),
    ),
    ENV_EXAMPLE,
    GITIGNORE,
    FLOW_TOML,
];

/// What [`scaffold`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffold {
    /// The project directory, as given.
    pub root: PathBuf,
    /// The template used.
    pub template: InitTemplate,
    /// The flow's name (a safe identifier derived from the directory name).
    pub flow_name: String,
    /// The flow directory, `<root>/flows/<flow_name>`.
    pub flow_dir: PathBuf,
    /// The dataset, `<root>/datasets/<flow_name>.jsonl`.
    pub dataset: PathBuf,
    /// Every file written, in writing order.
    pub files: Vec<PathBuf>,
}

impl Scaffold {
    /// Shell commands to suggest after scaffolding, to type verbatim where `flow init` ran:
    /// into the project (its root is where `.env` and `.flow/` are found), an offline run,
    /// configuring `.env`, and a batch run over the dataset.
    pub fn next_steps(&self) -> Vec<String> {
        let mut steps = Vec::new();
        if self
            .root
            .components()
            .any(|c| !matches!(c, std::path::Component::CurDir))
        {
            steps.push(format!(
                "cd {}",
                shell_word(&self.root.display().to_string())
            ));
        }
        let flow = format!("flows/{}", self.flow_name);
        steps.push(format!("flow run {flow} --offline"));
        steps.push("cp .env.example .env   # then fill in one provider".to_string());
        if self.template == InitTemplate::Chat {
            steps.push(format!("flow run {flow} --inputs question=\"Hello!\""));
        }
        steps.push(format!(
            "flow run {flow} --data datasets/{}.jsonl",
            self.flow_name
        ));
        steps
    }
}

/// `text` as one word for a POSIX shell: as it is when it holds only safe characters, else in
/// single quotes.
fn shell_word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./+,:@%".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Why [`scaffold`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The template name is not one of the known templates.
    #[error("unknown template '{0}': expected one of standard, chat, evaluation")]
    UnknownTemplate(String),
    /// Scaffolding would overwrite files that already exist.
    #[error(
        "refusing to overwrite {} existing file(s) in {}: {}; move them away or re-run with --force to overwrite them",
        .files.len(),
        .root.display(),
        display_list(.files)
    )]
    WouldOverwrite {
        /// The project directory.
        root: PathBuf,
        /// The existing files that would be overwritten.
        files: Vec<PathBuf>,
    },
    /// A path that must be a file or directory is the other kind.
    #[error("cannot write {}: a directory is in the way; remove or rename it", .0.display())]
    DirectoryInTheWay(PathBuf),
    /// Creating a directory failed.
    #[error("cannot create directory {}: {source}; check the path and its permissions", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {}: {source}; check the path and its permissions", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
}

impl crate::error::Classify for InitError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            InitError::CreateDir { source, .. } | InitError::Write { source, .. } => {
                crate::error::class_of_user_file(source)
            }
            _ => crate::error::ErrorClass::Config,
        }
    }
}

fn display_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns a directory's base name into a safe flow name: lower-case ASCII letters, digits and
/// single `_`, starting with a letter; [`FALLBACK_FLOW_NAME`] when nothing usable remains.
pub fn flow_name_for(dir: &Path) -> String {
    let base = lexical_base_name(dir).unwrap_or_default();
    let mut name = String::with_capacity(base.len());
    for c in base.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('_') {
            name.push('_');
        }
    }
    while name.ends_with('_') {
        name.pop();
    }
    if name.is_empty() {
        return FALLBACK_FLOW_NAME.to_owned();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "flow_");
    }
    name
}

/// The last normal component of `dir` once `.`/`..` are resolved lexically against the
/// current directory (no filesystem access beyond reading the current directory).
fn lexical_base_name(dir: &Path) -> Option<String> {
    let absolute = std::path::absolute(dir).ok()?;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in absolute.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    parts.last().map(|p| p.to_string_lossy().into_owned())
}

/// Writes the `template` project into `dir` (created if missing).
///
/// Refuses to overwrite any existing file unless `force`; in that case nothing is written and
/// the error lists every file that would have been overwritten.
pub fn scaffold(dir: &Path, template: InitTemplate, force: bool) -> Result<Scaffold, InitError> {
    let flow_name = flow_name_for(dir);
    let planned: Vec<(PathBuf, String)> = template
        .files()
        .iter()
        .map(|f| {
            let rel = f.path.replace(FLOW_NAME_PLACEHOLDER, &flow_name);
            let contents = f.contents.replace(FLOW_NAME_PLACEHOLDER, &flow_name);
            (dir.join(rel), contents)
        })
        .collect();

    for (path, _) in &planned {
        if path.is_dir() {
            return Err(InitError::DirectoryInTheWay(path.clone()));
        }
    }
    if !force {
        let existing: Vec<PathBuf> = planned
            .iter()
            .filter(|(path, _)| path.exists())
            .map(|(path, _)| path.clone())
            .collect();
        if !existing.is_empty() {
            return Err(InitError::WouldOverwrite {
                root: dir.to_path_buf(),
                files: existing,
            });
        }
    }

    let mut files = Vec::with_capacity(planned.len());
    for (path, contents) in planned {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| InitError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, contents).map_err(|source| InitError::Write {
            path: path.clone(),
            source,
        })?;
        files.push(path);
    }

    Ok(Scaffold {
        root: dir.to_path_buf(),
        template,
        flow_dir: dir.join("flows").join(&flow_name),
        dataset: dir.join("datasets").join(format!("{flow_name}.jsonl")),
        flow_name,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn yaml(path: &Path) -> serde_yaml::Value {
        let text = std::fs::read_to_string(path).unwrap();
        serde_yaml::from_str(&text).unwrap()
    }

    /// Every `source.path` of nodes and variant nodes, plus the requirements file if named.
    fn referenced_files(dag: &serde_yaml::Value) -> Vec<String> {
        let mut out = Vec::new();
        let mut node_bodies: Vec<&serde_yaml::Value> = Vec::new();
        if let Some(nodes) = dag["nodes"].as_sequence() {
            node_bodies.extend(nodes.iter());
        }
        if let Some(variants) = dag["node_variants"].as_mapping() {
            for spec in variants.values() {
                if let Some(vs) = spec["variants"].as_mapping() {
                    node_bodies.extend(vs.values().map(|v| &v["node"]));
                }
            }
        }
        for node in node_bodies {
            if let Some(p) = node["source"]["path"].as_str() {
                out.push(p.to_owned());
            }
        }
        if let Some(p) = dag["environment"]["python_requirements_txt"].as_str() {
            out.push(p.to_owned());
        }
        out
    }

    /// Names used as `${name.…}` / `${name}` references anywhere in the YAML text.
    fn reference_roots(text: &str) -> BTreeSet<(String, Option<String>)> {
        let re = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?")
            .unwrap();
        re.captures_iter(text)
            .map(|c| (c[1].to_owned(), c.get(2).map(|m| m.as_str().to_owned())))
            .collect()
    }

    #[test]
    fn template_names_round_trip() {
        for t in InitTemplate::ALL {
            assert_eq!(t.to_string().parse::<InitTemplate>().unwrap(), t);
            let value = <InitTemplate as clap::ValueEnum>::from_str(t.as_str(), false).unwrap();
            assert_eq!(value, t);
        }
        assert_eq!("Chat".parse::<InitTemplate>().unwrap(), InitTemplate::Chat);
        let err = "fancy".parse::<InitTemplate>().unwrap_err();
        assert!(err.to_string().contains("fancy"), "{err}");
        assert!(err.to_string().contains("standard"), "{err}");
    }

    #[test]
    fn flow_names_are_safe_identifiers() {
        assert_eq!(
            flow_name_for(Path::new("/tmp/My Project-2")),
            "my_project_2"
        );
        assert_eq!(flow_name_for(Path::new("support-bot/")), "support_bot");
        assert_eq!(flow_name_for(Path::new("/x/__weird__name__")), "weird_name");
        assert_eq!(flow_name_for(Path::new("/x/2024 eval")), "flow_2024_eval");
        assert_eq!(flow_name_for(Path::new("/x/ünïcode")), "n_code");
        assert_eq!(flow_name_for(Path::new("/x/---")), FALLBACK_FLOW_NAME);
        assert_eq!(flow_name_for(Path::new("/")), FALLBACK_FLOW_NAME);
        assert_eq!(flow_name_for(Path::new("/a/b/..")), "a");
        assert_eq!(flow_name_for(Path::new("/a/b/./c/.")), "c");
    }

    #[test]
    fn each_template_writes_a_complete_project() {
        for template in InitTemplate::ALL {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("Support Bot");
            let s = scaffold(&root, template, false).unwrap();

            assert_eq!(s.flow_name, "support_bot");
            assert_eq!(s.template, template);
            assert_eq!(s.flow_dir, root.join("flows/support_bot"));
            assert_eq!(s.dataset, root.join("datasets/support_bot.jsonl"));
            assert_eq!(s.files.len(), template.files().len());
            for f in &s.files {
                assert!(f.is_file(), "{template}: {} not written", f.display());
                let text = std::fs::read_to_string(f).unwrap();
                assert!(!text.contains(FLOW_NAME_PLACEHOLDER), "{}", f.display());
                assert!(!text.trim().is_empty(), "{} is empty", f.display());
            }
            for rel in [
                "flows/support_bot/flow.dag.yaml",
                ".env.example",
                ".gitignore",
                "README.md",
            ] {
                assert!(
                    s.files.contains(&root.join(rel)),
                    "{template}: missing {rel}"
                );
            }
            assert!(s.files.contains(&s.dataset));

            let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap();
            let lines: Vec<&str> = gitignore.lines().map(str::trim).collect();
            assert!(
                lines.contains(&".env") && lines.contains(&".flow/"),
                "{gitignore}"
            );

            let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
            assert!(
                readme.contains("flow run flows/support_bot --offline"),
                "{readme}"
            );

            let py: Vec<_> = s
                .files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "py"))
                .collect();
            let jinja = s
                .files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "jinja2"))
                .count();
            assert!(
                !py.is_empty() && jinja > 0,
                "{template}: needs a python node and a prompt"
            );
            for f in py {
                let code = std::fs::read_to_string(f).unwrap();
                assert!(
                    code.contains("from promptflow.core import") && code.contains("@tool"),
                    "{}",
                    f.display()
                );
            }
        }
    }

    #[test]
    fn next_steps_go_into_the_project_and_name_the_written_flow_and_dataset() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("qa");
        let s = scaffold(&root, InitTemplate::Chat, false).unwrap();
        let steps = s.next_steps();
        assert_eq!(steps[0], format!("cd {}", root.display()));
        assert_eq!(steps[1], "flow run flows/qa --offline");
        assert_eq!(
            steps[2],
            "cp .env.example .env   # then fill in one provider"
        );
        assert_eq!(
            steps.last().unwrap(),
            "flow run flows/qa --data datasets/qa.jsonl"
        );
        assert!(
            scaffold(&tmp.path().join("std"), InitTemplate::Standard, false)
                .unwrap()
                .next_steps()
                .iter()
                .all(|c| !c.contains("question="))
        );
        // A project in the current directory needs no `cd`; a name with a space is quoted.
        let s = Scaffold {
            root: PathBuf::from("."),
            ..s.clone()
        };
        assert!(s.next_steps()[0].starts_with("flow run"));
        assert_eq!(shell_word("my proj"), "'my proj'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("a/b-c_1.d"), "a/b-c_1.d");
    }

    #[test]
    fn env_example_is_all_comments_and_covers_every_provider() {
        let text = ENV_EXAMPLE.contents;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.trim_start().starts_with('#'),
                "uncommented line: {line}"
            );
        }
        for api_type in ["openai", "azure", "ollama", "anthropic"] {
            let setting = format!("# OPEN_AI_CONNECTION_API_TYPE={api_type}");
            assert!(text.contains(&setting), "missing {setting}");
        }
        assert!(text.contains("OPEN_AI_CONNECTION_API_VERSION"));
        assert!(text.contains("OPEN_AI_CONNECTION_API_BASE=http://localhost:11434/v1"));
        let repo_copy = include_str!("../.env.example");
        assert_eq!(
            repo_copy, text,
            "keep .env.example and templates/init/common/env.example in sync"
        );
    }

    #[test]
    fn flow_yaml_parses_and_references_only_existing_files_and_names() {
        for template in InitTemplate::ALL {
            let tmp = tempfile::tempdir().unwrap();
            let s = scaffold(&tmp.path().join("proj"), template, false).unwrap();
            let dag_path = s.flow_dir.join("flow.dag.yaml");
            let dag = yaml(&dag_path);
            assert_eq!(
                dag["$schema"].as_str(),
                Some("https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json")
            );

            let files = referenced_files(&dag);
            assert!(!files.is_empty());
            for rel in &files {
                assert!(
                    s.flow_dir.join(rel).is_file(),
                    "{template}: {rel} does not exist"
                );
            }

            let inputs: BTreeSet<String> = dag["inputs"]
                .as_mapping()
                .unwrap()
                .keys()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect();
            let nodes: BTreeSet<String> = dag["nodes"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|n| n["name"].as_str().unwrap().to_owned())
                .collect();
            let text = std::fs::read_to_string(&dag_path).unwrap();
            for (root, field) in reference_roots(&text) {
                if root == "inputs" {
                    let field = field.unwrap();
                    assert!(inputs.contains(&field), "{template}: unknown input {field}");
                } else {
                    assert!(nodes.contains(&root), "{template}: unknown node {root}");
                }
            }

            // Every dataset row is a JSON object whose keys are flow inputs.
            let data = std::fs::read_to_string(&s.dataset).unwrap();
            let rows: Vec<serde_json::Value> = data
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert!(rows.len() >= 5, "{template}: only {} rows", rows.len());
            for row in rows {
                for key in row.as_object().unwrap().keys() {
                    assert!(
                        inputs.contains(key),
                        "{template}: dataset column {key} is no input"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_to_overwrite_without_force_and_overwrites_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("demo");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("README.md"), "mine").unwrap();
        std::fs::write(root.join(".gitignore"), "mine too").unwrap();

        let err = scaffold(&root, InitTemplate::Standard, false).unwrap_err();
        match &err {
            InitError::WouldOverwrite { files, .. } => {
                let got: BTreeSet<_> = files.iter().cloned().collect();
                let want: BTreeSet<_> = [root.join("README.md"), root.join(".gitignore")].into();
                assert_eq!(got, want);
            }
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("README.md") && msg.contains(".gitignore") && msg.contains("--force"),
            "{msg}"
        );
        // Nothing was written.
        assert_eq!(
            std::fs::read_to_string(root.join("README.md")).unwrap(),
            "mine"
        );
        assert!(!root.join("flows").exists());
        assert!(!root.join(".env.example").exists());

        let s = scaffold(&root, InitTemplate::Standard, true).unwrap();
        assert!(s.files.contains(&root.join("README.md")));
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert!(readme.contains("# demo"), "{readme}");

        // A second scaffold of another template into the same project clashes on shared files.
        let err = scaffold(&root, InitTemplate::Chat, false).unwrap_err();
        assert!(matches!(err, InitError::WouldOverwrite { .. }));
    }

    #[test]
    fn a_directory_where_a_file_goes_is_an_error_even_with_force() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("proj");
        std::fs::create_dir_all(root.join("README.md")).unwrap();
        let err = scaffold(&root, InitTemplate::Evaluation, true).unwrap_err();
        assert!(
            matches!(err, InitError::DirectoryInTheWay(ref p) if p.ends_with("README.md")),
            "{err}"
        );
    }
}
