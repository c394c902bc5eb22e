//! A sharded batch run or experiment as a Kubernetes Indexed Job: N indexes, each pod running
//! `flow run FLOW --data DATA --shards N` or `flow experiment FILE --shards N` (its shard from
//! `JOB_COMPLETION_INDEX`) and uploading its run directories to object storage (or writing them
//! to a shared volume), then a second Job merging the shards: `flow runs merge`, or
//! `flow experiment FILE --merge-shards`, which also evaluates and compares.
//!
//! Retries: each index has its own retry budget (`backoffLimitPerIndex`); a retried pod resumes
//! the shard it uploaded. A configuration error (exit 2) is the same on every retry, so the pod
//! failure policy fails that index at once; a pod evicted or pre-empted (`DisruptionTarget`) does
//! not count against the budget.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::build::secrets::SecretGuard;
use crate::connection::EnvVars;
use crate::experiment::{EvaluatorKind, Experiment};
use crate::model::Flow;

use super::kubernetes::APP_LABEL;

/// Where `flow build` puts the flow in the image.
pub const IMAGE_FLOW_PATH: &str = "/app/flow";
/// Where the flow is mounted when delivered by ConfigMap or volume.
pub const MOUNTED_FLOW_PATH: &str = "/flow";
/// Where an experiment's folder (the experiment file, its flows and datasets) is mounted when
/// delivered by ConfigMap or volume.
pub const MOUNTED_PROJECT_PATH: &str = "/project";
/// Where a project baked into an image is: relative paths are taken under it.
pub const IMAGE_PROJECT_PATH: &str = "/app";
/// Where the data file is mounted when delivered by ConfigMap.
pub const MOUNTED_DATA_DIR: &str = "/flow-data";
/// The pods' writable working directory (an emptyDir): `.flow/runs` lives here.
pub const WORK_DIR: &str = "/work";
/// The flow binary in the image.
pub const FLOW_BINARY: &str = "/usr/local/bin/flow";
/// What Kubernetes allows in one ConfigMap (its keys and values together).
pub const CONFIG_MAP_LIMIT: usize = 1024 * 1024;
/// The exit status of a configuration error, which a retry cannot fix.
pub const CONFIG_ERROR_EXIT: i32 = 2;

/// Why the Job's manifests cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(
        "the ConfigMap would hold {total} bytes (flow {flow} bytes, data {data} bytes), over Kubernetes' 1 MiB ({CONFIG_MAP_LIMIT} bytes) limit\n  help: bake the flow and data into the image (`flow build`, --deliver image) or put them on a volume (--deliver volume --pvc NAME)"
    )]
    ConfigMapTooLarge {
        total: usize,
        flow: usize,
        data: usize,
    },
    #[error(
        "{0} is not UTF-8 text, which a ConfigMap delivery does not carry\n  help: deliver with --deliver image or --deliver volume --pvc NAME"
    )]
    Binary(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("two files of the flow map to the same ConfigMap key `{0}`: rename one")]
    KeyClash(String),
    #[error("{path}: {message}")]
    Flow { path: PathBuf, message: String },
    #[error(
        "{path} would carry a secret into the ConfigMap: {reason}\n  help: read it from the environment instead (an experiment's connection takes `api_key: ${{api_key}}`, read from <CONNECTION>_API_KEY in the Secret)"
    )]
    Secret { path: PathBuf, reason: String },
    #[error(
        "{path} is outside the experiment's folder {folder}, so a ConfigMap cannot carry it at the same relative path\n  help: keep the flows and datasets under the experiment file's folder, or deliver with --deliver image or --deliver volume --pvc NAME"
    )]
    OutsideProject { path: PathBuf, folder: PathBuf },
}

impl crate::error::Classify for JobError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            JobError::Read { source, .. } => crate::error::class_of_user_file(source),
            _ => crate::error::ErrorClass::Config,
        }
    }
}

/// How the pods get the flow and the data.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Baked into the image by `flow build` (the flow at [`IMAGE_FLOW_PATH`]).
    Image,
    /// A ConfigMap holding the flow's files and the data file.
    ConfigMap(ConfigMapFiles),
    /// A PersistentVolumeClaim holding the flow (at `sub_path` inside it, or its root).
    Volume {
        pvc: String,
        sub_path: Option<String>,
    },
}

impl Delivery {
    /// The flow directory inside the pod.
    pub fn flow_path(&self) -> &'static str {
        match self {
            Delivery::Image => IMAGE_FLOW_PATH,
            _ => MOUNTED_FLOW_PATH,
        }
    }
}

/// The text files a ConfigMap delivery carries.
#[derive(Debug, Clone, Default)]
pub struct ConfigMapFiles {
    /// The files mounted at the workload's mount path, by path relative to it (`/`-separated):
    /// the flow's files (a batch run), or the experiment's folder: the experiment file, its flows
    /// and its datasets (an experiment).
    pub flow: Vec<(String, String)>,
    /// A batch run's data file: its name and content.
    pub data: Option<(String, String)>,
}

impl ConfigMapFiles {
    /// The files `flow build` would put in the image (secrets left out the same way) and the
    /// data file, read as text.
    pub fn read(flow: &Flow, env: &EnvVars, data: &Path) -> Result<Self, JobError> {
        let name = data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data.jsonl".into());
        Ok(Self {
            flow: flow_files(flow, env, false)?,
            data: Some((name, read_text(data)?)),
        })
    }

    /// What an experiment reads, at its path relative to the experiment file's folder: the
    /// experiment file (and its overlay), each flow it runs or evaluates with (the files `flow
    /// build` would copy: secrets left out) and each dataset. Everything must be inside that
    /// folder.
    pub fn read_experiment(experiment: &Experiment, env: &EnvVars) -> Result<Self, JobError> {
        let folder = std::fs::canonicalize(&experiment.dir).map_err(|source| JobError::Read {
            path: experiment.dir.clone(),
            source,
        })?;
        let relative = |path: &Path| -> Result<String, JobError> {
            let full = std::fs::canonicalize(path).map_err(|source| JobError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            full.strip_prefix(&folder)
                .map(slash_path)
                .map_err(|_| JobError::OutsideProject {
                    path: path.to_path_buf(),
                    folder: experiment.dir.clone(),
                })
        };
        let guard = SecretGuard::new(env, &experiment.dir);
        let (flows, plain) = experiment_inputs(experiment);
        let mut files = Vec::new();
        for path in plain {
            if let Some(reason) = guard.reason_to_skip(&path) {
                return Err(JobError::Secret { path, reason });
            }
            files.push((relative(&path)?, read_text(&path)?));
        }
        for path in flows {
            let flow = crate::model::load(&path, &[]).map_err(|e| JobError::Flow {
                path: path.clone(),
                message: e
                    .diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            })?;
            let rel = relative(&flow.dir)?;
            // The experiment picks the variants: the flow keeps them all.
            for (file, text) in flow_files(&flow, env, true)? {
                let path = if rel.is_empty() {
                    file
                } else {
                    format!("{rel}/{file}")
                };
                files.push((path, text));
            }
        }
        files.sort();
        files.dedup_by(|a, b| a.0 == b.0);
        Ok(Self {
            flow: files,
            data: None,
        })
    }
}

/// What an experiment reads: the flows it runs and evaluates with, and the other files (its
/// file and overlay, its datasets and the evaluators' reference files), each once.
pub fn experiment_inputs(experiment: &Experiment) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut flows = vec![experiment.flow.clone()];
    let mut files: Vec<PathBuf> = std::iter::once(experiment.file.clone())
        .chain(experiment.overlay.clone())
        .chain(experiment.datasets.iter().map(|d| d.source.clone()))
        .collect();
    for e in &experiment.evaluators {
        if let EvaluatorKind::Flow(dir) = &e.kind {
            flows.push(dir.clone());
        }
        files.extend(e.datasets.iter().map(|d| d.source.clone()));
    }
    let mut seen = std::collections::HashSet::new();
    flows.retain(|p| seen.insert(p.clone()));
    files.retain(|p| seen.insert(p.clone()));
    (flows, files)
}

/// The files of `flow` that `flow build` would copy (secrets left out), relative to its folder;
/// its YAML with the selected variants applied, or as written (`keep_variants`).
fn flow_files(
    flow: &Flow,
    env: &EnvVars,
    keep_variants: bool,
) -> Result<Vec<(String, String)>, JobError> {
    let guard = SecretGuard::new(env, &flow.dir);
    let staging = std::env::temp_dir().join(format!(
        "flow-configmap-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let copied =
        crate::run_store::copy_flow(flow, &staging, &|p| guard.reason_to_skip(p).is_some())
            .map_err(|source| JobError::Read {
                path: flow.dir.clone(),
                source,
            });
    let files = copied.and_then(|()| {
        let mut files = Vec::new();
        collect(&staging, &staging, &mut files)?;
        Ok(files)
    });
    let _ = std::fs::remove_dir_all(&staging);
    let mut files = files?;
    if keep_variants {
        if let Some(reason) = guard.reason_to_skip(&flow.file) {
            return Err(JobError::Secret {
                path: flow.file.clone(),
                reason,
            });
        }
        let name = flow
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let original = read_text(&flow.file)?;
        for (path, text) in files.iter_mut() {
            if *path == name {
                *text = original.clone();
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A relative path with `/` separators (`.` parts left out).
pub fn slash_path(p: &Path) -> String {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn read_text(path: &Path) -> Result<String, JobError> {
    let bytes = std::fs::read(path).map_err(|source| JobError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| JobError::Binary(path.to_path_buf()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), JobError> {
    let entries = std::fs::read_dir(dir).map_err(|source| JobError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            let rel = slash_path(path.strip_prefix(root).unwrap_or(&path));
            out.push((rel, read_text(&path)?));
        }
    }
    Ok(())
}

/// Object storage credentials the pods read (by reference).
#[derive(Debug, Clone)]
pub struct StorageSecret {
    pub name: String,
    /// Optional when not named by the user: clusters with workload identity need none.
    pub optional: bool,
}

/// What the pods run.
#[derive(Debug, Clone)]
pub enum Workload {
    /// A batch run: `flow run FLOW --data DATA`, merged by `flow runs merge`.
    Run {
        /// The data file as the pods see it.
        data: String,
        /// `--variant` values passed to `flow run`.
        variants: Vec<String>,
    },
    /// An experiment: `flow experiment FILE` (every variant run, each pod its shard of each),
    /// merged, evaluated and compared by `flow experiment FILE --merge-shards`.
    Experiment {
        /// The experiment file as the pods see it.
        file: String,
        /// The overlay (`--env ENV`: `experiment.<ENV>.yaml`).
        env: Option<String>,
        /// `--variants` values passed to `flow experiment`.
        variants: Vec<String>,
        /// Lines in flight in the merge pod, which runs the evaluators alone.
        merge_concurrency: usize,
    },
}

/// Where the shards' runs go, so the merge finds them (pods share no disk of their own).
#[derive(Debug, Clone)]
pub enum Storage {
    /// An object storage folder (s3://, az://, gs://): shards under `<url>/<name>-shards/`, the
    /// merged result under `<url>/<name>/`.
    Upload(String),
    /// A ReadWriteMany PersistentVolumeClaim mounted as every pod's working directory, so
    /// `.flow/` (shard runs, merged runs, comparisons) is on it.
    SharedVolume(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The Job's and the merged run's (or comparison's) name, a DNS-1123 label.
    pub name: String,
    pub image: String,
    pub namespace: Option<String>,
    /// N: shards, the Job's completions.
    pub shards: u32,
    /// P: pods running at once.
    pub parallelism: u32,
    /// A batch run or an experiment.
    pub workload: Workload,
    /// Where the shards' runs go.
    pub storage: Storage,
    /// Lines in flight in each pod.
    pub concurrency: usize,
    /// The Secret holding the connection variables.
    pub secret: String,
    /// The connections the pods use (recorded on the Job, read from `secret`).
    pub connections: Vec<String>,
    pub storage_secret: Option<StorageSecret>,
    pub delivery: Delivery,
    /// Retries of one index before it fails.
    pub retries_per_index: u32,
    /// Failed indexes tolerated before the whole Job fails.
    pub max_failed_indexes: u32,
    /// Pass `--allow-failures` to the shards and the merge.
    pub allow_failures: bool,
}

/// A pod's `flow` command line, typed: [`JobSpec`] decides the values, [`PodCommand::argv`]
/// spells them with the flags of `flow run`, `flow runs merge` and `flow experiment` (a test of
/// the binary parses every spelling back with the real parser, so the two cannot drift apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodCommand {
    /// `flow run FLOW --data DATA --shards N --name NAME [--upload URL] --concurrency C
    /// [--variant V]... [--allow-failures]`: one shard of a batch run.
    RunShard {
        flow: String,
        data: String,
        shards: u32,
        name: String,
        upload: Option<String>,
        concurrency: usize,
        variants: Vec<String>,
        allow_failures: bool,
    },
    /// `flow runs merge SHARD... --name NAME [--to URL] [--allow-failures]`: the shards merged.
    MergeRuns {
        shards: Vec<String>,
        name: String,
        to: Option<String>,
        allow_failures: bool,
    },
    /// `flow experiment FILE [--env ENV] [--variants V]... --shards N [--upload URL]
    /// --concurrency C`: one shard of every run of an experiment.
    ExperimentShard {
        file: String,
        env: Option<String>,
        variants: Vec<String>,
        shards: u32,
        upload: Option<String>,
        concurrency: usize,
    },
    /// `flow experiment FILE [--env ENV] [--variants V]... --merge-shards [FROM] --name NAME
    /// [--to URL] --concurrency C`: the shards merged, evaluated and compared.
    MergeExperiment {
        file: String,
        env: Option<String>,
        variants: Vec<String>,
        from: Option<String>,
        name: String,
        to: Option<String>,
        concurrency: usize,
    },
}

impl PodCommand {
    /// The command line, the binary first.
    pub fn argv(&self) -> Vec<String> {
        /// `name value`, when there is a value.
        fn flag(c: &mut Vec<String>, name: &str, value: Option<&str>) {
            if let Some(value) = value {
                c.extend([name.to_string(), value.to_string()]);
            }
        }
        let mut c: Vec<String> = vec![FLOW_BINARY.into()];
        match self {
            PodCommand::RunShard {
                flow,
                data,
                shards,
                name,
                upload,
                concurrency,
                variants,
                allow_failures,
            } => {
                c.extend(["run".into(), flow.clone()]);
                flag(&mut c, "--data", Some(data));
                flag(&mut c, "--shards", Some(&shards.to_string()));
                flag(&mut c, "--name", Some(name));
                flag(&mut c, "--upload", upload.as_deref());
                flag(&mut c, "--concurrency", Some(&concurrency.to_string()));
                for v in variants {
                    flag(&mut c, "--variant", Some(v));
                }
                if *allow_failures {
                    c.push("--allow-failures".into());
                }
            }
            PodCommand::MergeRuns {
                shards,
                name,
                to,
                allow_failures,
            } => {
                c.extend(["runs".into(), "merge".into()]);
                c.extend(shards.iter().cloned());
                flag(&mut c, "--name", Some(name));
                flag(&mut c, "--to", to.as_deref());
                if *allow_failures {
                    c.push("--allow-failures".into());
                }
            }
            PodCommand::ExperimentShard {
                file,
                env,
                variants,
                shards,
                upload,
                concurrency,
            } => {
                c.extend(["experiment".into(), file.clone()]);
                flag(&mut c, "--env", env.as_deref());
                for v in variants {
                    flag(&mut c, "--variants", Some(v));
                }
                flag(&mut c, "--shards", Some(&shards.to_string()));
                flag(&mut c, "--upload", upload.as_deref());
                flag(&mut c, "--concurrency", Some(&concurrency.to_string()));
            }
            PodCommand::MergeExperiment {
                file,
                env,
                variants,
                from,
                name,
                to,
                concurrency,
            } => {
                c.extend(["experiment".into(), file.clone()]);
                flag(&mut c, "--env", env.as_deref());
                for v in variants {
                    flag(&mut c, "--variants", Some(v));
                }
                c.push("--merge-shards".into());
                c.extend(from.iter().cloned());
                flag(&mut c, "--name", Some(name));
                flag(&mut c, "--to", to.as_deref());
                flag(&mut c, "--concurrency", Some(&concurrency.to_string()));
            }
        }
        c
    }
}

/// The group that owns a shared volume's files (`fsGroup`).
pub const SHARED_VOLUME_GROUP: u32 = 65532;

/// The annotation listing the connections a Job's pods use.
pub const CONNECTIONS_ANNOTATION: &str = "flow/connections";

/// Each pod's `--concurrency`: the total divided among the pods running at once, rounded up.
pub fn per_shard_concurrency(total: usize, parallelism: u32) -> usize {
    total.div_ceil(parallelism.max(1) as usize).max(1)
}

impl JobSpec {
    fn upload_root(&self) -> Option<&str> {
        match &self.storage {
            Storage::Upload(url) => Some(url.trim_end_matches('/')),
            Storage::SharedVolume(_) => None,
        }
    }

    /// Where the shards go: `<upload>/<name>-shards`, or `.flow/runs` on the shared volume.
    pub fn shards_url(&self) -> String {
        match self.upload_root() {
            Some(root) => format!("{root}/{}-shards", self.name),
            None => format!("{WORK_DIR}/.flow/runs"),
        }
    }

    /// Where the merged result goes: `<upload>/<name>` (a run; an experiment's comparison and
    /// runs laid out as `.flow/`), or `.flow/runs/<name>` / `.flow/experiments/<name>` on the
    /// shared volume.
    pub fn merged_url(&self) -> String {
        match (self.upload_root(), &self.workload) {
            (Some(root), _) => format!("{root}/{}", self.name),
            (None, Workload::Run { .. }) => format!("{WORK_DIR}/.flow/runs/{}", self.name),
            (None, Workload::Experiment { .. }) => {
                format!("{WORK_DIR}/.flow/experiments/{}", self.name)
            }
        }
    }

    /// The merge Job's name.
    pub fn merge_job_name(&self) -> String {
        format!("{}-merge", self.name)
    }

    /// The ConfigMap's name (ConfigMap delivery).
    pub fn config_map_name(&self) -> String {
        format!("{}-flow", self.name)
    }

    /// Where a ConfigMap or volume delivery is mounted: the flow, or the experiment's folder.
    pub fn mount_path(&self) -> &'static str {
        match self.workload {
            Workload::Run { .. } => MOUNTED_FLOW_PATH,
            Workload::Experiment { .. } => MOUNTED_PROJECT_PATH,
        }
    }

    /// What each pod of the Indexed Job runs.
    pub fn shard_command(&self) -> PodCommand {
        let upload = self.upload_root().map(|_| self.shards_url());
        match &self.workload {
            Workload::Run { data, variants } => PodCommand::RunShard {
                flow: self.delivery.flow_path().to_string(),
                data: data.clone(),
                shards: self.shards,
                name: self.name.clone(),
                upload,
                concurrency: self.concurrency,
                variants: variants.clone(),
                allow_failures: self.allow_failures,
            },
            Workload::Experiment {
                file,
                env,
                variants,
                ..
            } => PodCommand::ExperimentShard {
                file: file.clone(),
                env: env.clone(),
                variants: variants.clone(),
                shards: self.shards,
                upload,
                concurrency: self.concurrency,
            },
        }
    }

    /// What the merge Job's pod runs.
    pub fn merge_command(&self) -> PodCommand {
        match &self.workload {
            Workload::Run { .. } => PodCommand::MergeRuns {
                shards: match self.upload_root() {
                    Some(_) => vec![self.shards_url()],
                    // The shard runs by name, on the shared volume.
                    None => (1..=self.shards)
                        .map(|k| format!("{}-shard-{k}-of-{}", self.name, self.shards))
                        .collect(),
                },
                name: self.name.clone(),
                to: self.upload_root().map(str::to_string),
                allow_failures: self.allow_failures,
            },
            Workload::Experiment {
                file,
                env,
                variants,
                merge_concurrency,
            } => PodCommand::MergeExperiment {
                file: file.clone(),
                env: env.clone(),
                variants: variants.clone(),
                from: self.upload_root().map(|_| self.shards_url()),
                name: self.name.clone(),
                to: self.upload_root().map(|_| self.merged_url()),
                concurrency: *merge_concurrency,
            },
        }
    }

    fn metadata(&self, name: &str, component: &str) -> Value {
        let mut m = json!({"name": name, "labels": self.labels(component)});
        if !self.connections.is_empty() && component != "flow" {
            m["annotations"] = json!({CONNECTIONS_ANNOTATION: self.connections.join(",")});
        }
        if let Some(ns) = &self.namespace {
            m["namespace"] = Value::String(ns.clone());
        }
        m
    }

    fn labels(&self, component: &str) -> Value {
        json!({
            APP_LABEL: self.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "flow",
        })
    }

    /// The pod template running `command`.
    fn pod(&self, command: &[String], component: &str) -> Value {
        let mut env_from = vec![json!({"secretRef": {"name": self.secret}})];
        if let Some(s) = &self.storage_secret {
            let mut r = json!({"name": s.name});
            if s.optional {
                r["optional"] = Value::Bool(true);
            }
            env_from.push(json!({"secretRef": r}));
        }
        let mut mounts = vec![
            json!({"name": "work", "mountPath": WORK_DIR}),
            json!({"name": "tmp", "mountPath": "/tmp"}),
        ];
        let work = match &self.storage {
            Storage::Upload(_) => json!({"name": "work", "emptyDir": {}}),
            Storage::SharedVolume(claim) => {
                json!({"name": "work", "persistentVolumeClaim": {"claimName": claim}})
            }
        };
        // The merge downloads every shard run to /tmp first: no size limit there.
        let tmp = if component == "merge" {
            json!({"name": "tmp", "emptyDir": {}})
        } else {
            json!({"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}})
        };
        let mut volumes = vec![work, tmp];
        // A batch run's merge reads the flow from the shards' snapshots: only the shards mount
        // it. An experiment's merge runs the evaluators, which read the experiment's folder.
        let mount = self.mount_path();
        if component == "shard" || matches!(self.workload, Workload::Experiment { .. }) {
            match &self.delivery {
                Delivery::Image => {}
                Delivery::ConfigMap(files) => {
                    let flow_items: Vec<Value> = files
                        .flow
                        .iter()
                        .map(|(path, _)| json!({"key": flow_key(path), "path": path}))
                        .collect();
                    volumes.push(json!({"name": "flow", "configMap": {"name": self.config_map_name(), "items": flow_items}}));
                    mounts.push(json!({"name": "flow", "mountPath": mount, "readOnly": true}));
                    if let Some((name, _)) = &files.data {
                        volumes.push(json!({"name": "data", "configMap": {"name": self.config_map_name(), "items": [{"key": data_key(name), "path": name}]}}));
                        mounts.push(
                            json!({"name": "data", "mountPath": MOUNTED_DATA_DIR, "readOnly": true}),
                        );
                    }
                }
                Delivery::Volume { pvc, sub_path } => {
                    volumes.push(json!({"name": "flow", "persistentVolumeClaim": {"claimName": pvc, "readOnly": true}}));
                    let mut m = json!({"name": "flow", "mountPath": mount, "readOnly": true});
                    if let Some(s) = sub_path {
                        m["subPath"] = Value::String(s.clone());
                    }
                    mounts.push(m);
                }
            }
        }
        let mut security = json!({
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
        });
        if matches!(self.storage, Storage::SharedVolume(_)) {
            // The claim's files get this group, which the pod's user has as a supplementary
            // group: the image's user (65532 or 10001) can write them either way.
            security["fsGroup"] = json!(SHARED_VOLUME_GROUP);
        }
        json!({
            "metadata": {"labels": self.labels(component)},
            "spec": {
                // A pod failure policy needs Never: the Job, not the kubelet, retries.
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 60,
                "securityContext": security,
                "containers": [{
                    "name": "flow",
                    "image": self.image,
                    "command": [command[0]],
                    "args": &command[1..],
                    "workingDir": WORK_DIR,
                    "envFrom": env_from,
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "128Mi"},
                        "limits": {"memory": "1Gi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            },
        })
    }

    /// The Indexed Job running the shards.
    pub fn indexed_job(&self) -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(&self.name, "shard"),
            "spec": {
                "completionMode": "Indexed",
                "completions": self.shards,
                "parallelism": self.parallelism.min(self.shards),
                "backoffLimitPerIndex": self.retries_per_index,
                "maxFailedIndexes": self.max_failed_indexes,
                "podFailurePolicy": {"rules": [
                    {
                        // A configuration error fails the same way on every retry.
                        "action": "FailIndex",
                        "onExitCodes": {"containerName": "flow", "operator": "In", "values": [CONFIG_ERROR_EXIT]},
                    },
                    {
                        // Evicted, pre-empted, node drained: not the shard's fault.
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget"}],
                    },
                ]},
                "template": self.pod(&self.shard_command().argv(), "shard"),
            },
        })
    }

    /// The Job merging the shards (apply it when the Indexed Job has completed).
    pub fn merge_job(&self) -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(&self.merge_job_name(), "merge"),
            "spec": {
                "completions": 1,
                "parallelism": 1,
                "backoffLimit": 2,
                "podFailurePolicy": {"rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "flow", "operator": "In", "values": [CONFIG_ERROR_EXIT]},
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]},
                "template": self.pod(&self.merge_command().argv(), "merge"),
            },
        })
    }

    /// The ConfigMap of a ConfigMap delivery, checked against Kubernetes' size limit.
    pub fn config_map(&self) -> Result<Option<Value>, JobError> {
        let Delivery::ConfigMap(files) = &self.delivery else {
            return Ok(None);
        };
        let mut data = Map::new();
        let mut flow_size = 0;
        for (path, text) in &files.flow {
            let key = flow_key(path);
            flow_size += key.len() + text.len();
            if data
                .insert(key.clone(), Value::String(text.clone()))
                .is_some()
            {
                return Err(JobError::KeyClash(key));
            }
        }
        let mut data_size = 0;
        if let Some((name, text)) = &files.data {
            let key = data_key(name);
            data_size = key.len() + text.len();
            data.insert(key, Value::String(text.clone()));
        }
        if flow_size + data_size > CONFIG_MAP_LIMIT {
            return Err(JobError::ConfigMapTooLarge {
                total: flow_size + data_size,
                flow: flow_size,
                data: data_size,
            });
        }
        Ok(Some(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.metadata(&self.config_map_name(), "flow"),
            "data": data,
        })))
    }

    /// The objects of the shard step, in order: the ConfigMap (if any), the Indexed Job.
    pub fn shard_manifests(&self) -> Result<Vec<Value>, JobError> {
        let mut objects = Vec::new();
        if let Some(cm) = self.config_map()? {
            objects.push(cm);
        }
        objects.push(self.indexed_job());
        Ok(objects)
    }
}

/// A ConfigMap key (`[-._a-zA-Z0-9]+`) for a flow file: `flow.` and the path, `/` as `__`.
fn flow_key(path: &str) -> String {
    format!("flow.{}", key_chars(&path.replace('/', "__")))
}

fn data_key(name: &str) -> String {
    format!("data.{}", key_chars(name))
}

fn key_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The indexes a failed Job's status names (`status.failedIndexes`, e.g. "1,3-5"), expanded
/// to 1-based shard numbers.
pub fn failed_shards(status: &Value) -> Vec<u32> {
    let Some(text) = status["status"]["failedIndexes"].as_str() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            out.extend((a..=b.min(a.saturating_add(100_000))).map(|i| i + 1));
        }
    }
    out
}

/// Why a failed Job failed, from its `Failed` condition (reason: message).
pub fn failure_reason(status: &Value) -> Option<String> {
    status["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Failed" && c["status"] == "True")
        .map(|c| {
            format!(
                "{}: {}",
                c["reason"].as_str().unwrap_or("Failed"),
                c["message"].as_str().unwrap_or("")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_divided_among_running_pods() {
        assert_eq!(per_shard_concurrency(32, 4), 8);
        assert_eq!(per_shard_concurrency(32, 5), 7);
        assert_eq!(per_shard_concurrency(3, 8), 1);
        assert_eq!(per_shard_concurrency(10, 0), 10);
    }

    #[test]
    fn failed_indexes_become_shard_numbers() {
        let s = json!({"status": {"failedIndexes": "0,3-5"}});
        assert_eq!(failed_shards(&s), vec![1, 4, 5, 6]);
        assert!(failed_shards(&json!({})).is_empty());
    }

    #[test]
    fn keys_are_valid_config_map_keys() {
        assert_eq!(flow_key("sub dir/a.py"), "flow.sub_dir__a.py");
        assert_eq!(data_key("d.jsonl"), "data.d.jsonl");
    }
}
