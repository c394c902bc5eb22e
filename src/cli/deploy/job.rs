//! `flow deploy --target kubernetes-job`: a sharded batch run (`--data`) or experiment
//! (`--experiment`) as a Kubernetes Indexed Job and a merge Job; `--dry-run` writes them,
//! `--apply` applies the Indexed Job, waits for it, then applies the merge Job and waits for that.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::super::common::{load_flow, parse_variants};
use super::super::output::{Failure, color_stderr, dim};
use super::super::settings::{Count, DEFAULT_CONCURRENCY, Seconds};
use super::write_file;
use flow::connection::EnvVars;
use flow::deploy::{self, job};

/// How the pods get the flow and the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Deliver {
    /// In the image (the flow at /app/flow, where `flow build` puts it; an experiment's folder
    /// under /app).
    Image,
    /// A ConfigMap generated from --flow and --data, or from the experiment's folder (at most
    /// 1 MiB).
    Configmap,
    /// A PersistentVolumeClaim (--pvc) holding the flow and the data, or the experiment's folder.
    Volume,
}

/// The options of `--target kubernetes-job`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The data file, as the pods see it: inside the image (a path under --flow maps to
    /// /app/flow/...), on the volume (relative to the flow's folder), or the local file to put in
    /// the ConfigMap.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Shard an experiment instead of one run: every pod runs its shard of every (variant,
    /// dataset) run of this experiment file, and the merge Job merges, evaluates and compares
    /// [default FILE: experiment.yaml]. The file is read here (connections, flows, datasets); the
    /// pods find it in the image under /app, on the volume, or in the ConfigMap.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "experiment.yaml",
        conflicts_with_all = ["data", "variant", "allow_failures"])]
    pub experiment: Option<PathBuf>,
    /// The experiment's overlay `experiment.<ENV>.yaml`, passed to `flow experiment --env`.
    #[arg(long, value_name = "ENV", requires = "experiment")]
    pub env: Option<String>,
    /// The experiment's variant selection, passed to `flow experiment --variants` (repeatable)
    /// [default: the experiment file's].
    #[arg(long, value_name = "SPEC", requires = "experiment")]
    pub variants: Vec<String>,
    /// N: shards, one Kubernetes index each (the Job's completions).
    #[arg(long, value_name = "N")]
    pub shards: Option<Count<u32>>,
    /// P: pods running at once [default: N].
    #[arg(long, value_name = "P")]
    pub parallelism: Option<Count<u32>>,
    /// How the flow and data reach the pods.
    #[arg(long, value_enum, default_value_t = Deliver::Image)]
    pub deliver: Deliver,
    /// The PersistentVolumeClaim of --deliver volume.
    #[arg(long, value_name = "NAME")]
    pub pvc: Option<String>,
    /// The flow's (an experiment's) folder inside the volume [default: its root].
    #[arg(long, value_name = "DIR", requires = "pvc")]
    pub volume_path: Option<String>,
    /// Use a variant: '${node.variant_id}' (repeatable).
    #[arg(long, value_name = "VARIANT")]
    pub variant: Vec<String>,
    /// Object storage folder (s3://, az://, gs://): shards go to <URL>/<name>-shards/, the
    /// merged run to <URL>/<name>/ (an experiment: its comparison to
    /// <URL>/<name>/experiments/<name>/, its runs to <URL>/<name>/runs/).
    #[arg(long, value_name = "URL")]
    pub upload: Option<String>,
    /// Instead of --upload: a ReadWriteMany PersistentVolumeClaim mounted as every pod's working
    /// directory, so the shards, the merged runs and the comparison are in its .flow/.
    #[arg(long, value_name = "NAME", conflicts_with = "upload")]
    pub runs_pvc: Option<String>,
    /// Lines in flight across all pods; each pod gets ceil(C / P) (an experiment's pod shares
    /// them among its runs; its merge pod, running the evaluators alone, gets C).
    #[arg(long, value_name = "C", default_value_t = Count::at_least_one(DEFAULT_CONCURRENCY))]
    pub concurrency: Count,
    /// Lines in flight in each pod, instead of dividing --concurrency.
    #[arg(long, value_name = "N")]
    pub per_shard_concurrency: Option<Count>,
    /// Retries of one shard before it counts as failed (backoffLimitPerIndex).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries_per_index: u32,
    /// Failed shards tolerated before the whole Job stops (maxFailedIndexes).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_failed_indexes: u32,
    /// The Secret with the object storage credentials [default: <name>-storage, optional].
    #[arg(long, value_name = "NAME")]
    pub storage_secret: Option<String>,
    /// Seconds `--apply` waits for each Job.
    #[arg(long, value_name = "SECONDS", default_value = "86400")]
    pub wait_timeout: Seconds,
    /// Shards and merge exit 0 even when some lines failed.
    #[arg(long)]
    pub allow_failures: bool,
    /// The env file whose secret values are kept out of the ConfigMap [default: the nearest .env up to the project root].
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

/// Everything `rollout` resolved for the Job.
pub struct JobTarget<'a> {
    pub name: String,
    pub image: String,
    pub namespace: Option<String>,
    pub secret: Option<String>,
    pub flow: Option<&'a Path>,
    /// `--out-dir`: where the files go [default: deploy/<name>].
    pub out_dir: Option<PathBuf>,
    pub apply: bool,
    /// `--name` was given (else an experiment's Job is named after the experiment).
    pub named: bool,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::usage(message)
}

/// Build the spec from the options, write the manifests, and apply them with `--apply`.
pub fn rollout(mut t: JobTarget<'_>, args: &JobArgs) -> Result<(), Failure> {
    let experiment = match &args.experiment {
        Some(file) => Some(load_experiment(file, args)?),
        // clap does not insist on `requires` when a conflicting option (--data) is there.
        None if args.env.is_some() || !args.variants.is_empty() => {
            return Err(usage(
                "error: --env and --variants go with --experiment [FILE] (a batch run takes --variant)",
            ));
        }
        None => None,
    };
    if let (Some(e), false) = (&experiment, t.named) {
        t.name = deploy::name_from(&e.experiment.name);
    }
    let dir = t
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("deploy").join(&t.name));
    let spec = spec(&t, args, experiment.as_ref())?;
    let shard_objects = spec
        .shard_manifests()
        .map_err(|e| usage(format!("error: {e}")))?;
    let job_yaml = deploy::to_yaml_documents(&shard_objects)
        .map_err(|e| usage(format!("error: cannot write the manifests: {e}")))?;
    let merge_yaml = deploy::to_yaml_documents(&[spec.merge_job()])
        .map_err(|e| usage(format!("error: cannot write the manifests: {e}")))?;
    std::fs::create_dir_all(&dir).map_err(|e| Failure::own_file("cannot create", &dir, &e))?;
    let job_file = dir.join("job.yaml");
    let merge_file = dir.join("merge-job.yaml");
    write_file(&job_file, &job_yaml)?;
    write_file(&merge_file, &merge_yaml)?;
    let kinds: Vec<String> = shard_objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    outln!("wrote {} ({})", job_file.display(), kinds.join(", "));
    outln!(
        "wrote {} (Job/{}: runs when every shard has succeeded)",
        merge_file.display(),
        spec.merge_job_name()
    );
    let shards_at = match &spec.storage {
        job::Storage::Upload(_) => format!("{}/", spec.shards_url()),
        job::Storage::SharedVolume(claim) => format!("{}/ on claim {claim}", spec.shards_url()),
    };
    outln!(
        "shards: {} ({} at once, {} lines in flight each) → {shards_at}",
        spec.shards,
        spec.parallelism.min(spec.shards),
        spec.concurrency,
    );
    let result = match (&experiment, &spec.storage) {
        (None, _) => format!("merged run: {}/", spec.merged_url()),
        (Some(e), job::Storage::Upload(_)) => format!(
            "experiment: {} run{} per shard, sharing its {} lines in flight; comparison: {}/experiments/{}/ (summary.json, report.html), runs: {}/runs/",
            e.runs,
            if e.runs == 1 { "" } else { "s" },
            spec.concurrency,
            spec.merged_url(),
            spec.name,
            spec.merged_url()
        ),
        (Some(e), job::Storage::SharedVolume(claim)) => format!(
            "experiment: {} run{} per shard, sharing its {} lines in flight; comparison: {}/ on claim {claim} (summary.json, report.html)",
            e.runs,
            if e.runs == 1 { "" } else { "s" },
            spec.concurrency,
            spec.merged_url()
        ),
    };
    outln!("{result}");
    if !spec.connections.is_empty() {
        outln!(
            "connections: {} (their variables, e.g. {}_API_KEY, from Secret/{})",
            spec.connections.join(", "),
            flow::connection::env_prefix(&spec.connections[0]),
            spec.secret
        );
    }
    let ns: Vec<String> = spec
        .namespace
        .iter()
        .flat_map(|n| ["--namespace".to_string(), n.clone()])
        .collect();
    let ns_text: String = ns.iter().map(|s| format!(" {s}")).collect();
    if !t.apply {
        eprintln!(
            "{}",
            dim(
                &format!(
                    "dry run: nothing applied. The pods read the Secret `{secret}`: kubectl create secret generic {secret} --from-env-file=.env{ns_text}\nthen: kubectl{ns_text} apply -f {job}\n      kubectl{ns_text} wait --for=condition=complete job/{name} --timeout=24h\n      kubectl{ns_text} apply -f {merge}\n(or flow deploy ... --apply, which does these steps and stops when a shard fails)",
                    secret = spec.secret,
                    job = job_file.display(),
                    merge = merge_file.display(),
                    name = spec.name,
                ),
                color_stderr()
            )
        );
        return Ok(());
    }
    let timeout = args.wait_timeout.duration().max(Duration::from_secs(1));
    kubectl(&ns, &["apply", "-f", &job_file.to_string_lossy()])?;
    wait_for_job(&ns, &spec.name, timeout, Some(spec.shards))?;
    outln!("job/{}: all {} shards succeeded", spec.name, spec.shards);
    kubectl(&ns, &["apply", "-f", &merge_file.to_string_lossy()])?;
    wait_for_job(&ns, &spec.merge_job_name(), timeout, None)?;
    let what = if experiment.is_some() {
        "experiment compared"
    } else {
        "merged run"
    };
    outln!(
        "job/{}: {what} {} written to {}/",
        spec.merge_job_name(),
        spec.name,
        spec.merged_url()
    );
    Ok(())
}

/// The experiment of `--experiment`, read here: its connections, its planned runs.
struct LoadedExperiment {
    /// The file as given (its path in the image or on the volume too).
    file: PathBuf,
    experiment: flow::experiment::Experiment,
    connections: Vec<String>,
    /// Runs per shard: variants × datasets.
    runs: usize,
}

fn load_experiment(file: &Path, args: &JobArgs) -> Result<LoadedExperiment, Failure> {
    use flow::experiment;
    if !file.is_file() {
        return Err(usage(format!(
            "error: no experiment file at {}\n  help: give its path here (`--experiment path/to/experiment.yaml`, the same path it has in the image or on the volume); it is read to find the connections, flows and datasets the pods need",
            file.display()
        )));
    }
    let exp = experiment::load(file, args.env.as_deref())
        .map_err(|e| Failure::diagnostics(&e.diagnostics))?;
    let selection = experiment::effective_selection(
        &exp,
        (!args.variants.is_empty()).then(|| experiment::Selection::parse(&args.variants)),
    );
    let variants = experiment::plan_variants(&exp, &selection)
        .map_err(super::super::experiment::experiment_failure)?;
    let connections =
        experiment::connections_used(&exp).map_err(super::super::experiment::experiment_failure)?;
    Ok(LoadedExperiment {
        file: file.to_path_buf(),
        runs: variants.len() * exp.datasets.len(),
        experiment: exp,
        connections,
    })
}

/// What the Job runs, as given: a batch run's data file, or an experiment read here.
enum Given<'a> {
    Data(&'a Path),
    Experiment(&'a LoadedExperiment),
}

/// An object storage URL, or the error saying what to give.
fn object_storage(upload: &str) -> Result<String, Failure> {
    if ["s3://", "az://", "gs://"]
        .iter()
        .any(|p| upload.starts_with(p))
    {
        Ok(upload.to_string())
    } else {
        Err(usage(format!(
            "error: --upload {upload}: give an object storage URL (s3://, az://, gs://)"
        )))
    }
}

fn spec(
    t: &JobTarget<'_>,
    args: &JobArgs,
    experiment: Option<&LoadedExperiment>,
) -> Result<job::JobSpec, Failure> {
    let Some(shards) = args.shards.map(Count::get) else {
        return Err(usage(
            "error: --target kubernetes-job needs --shards N (the number of pods' shards)",
        ));
    };
    let parallelism = args.parallelism.map_or(shards, Count::get);
    let given = match (&args.data, experiment) {
        (_, Some(e)) => Given::Experiment(e),
        (Some(data), None) => Given::Data(data),
        (None, None) => {
            return Err(usage(
                "error: --target kubernetes-job needs --data PATH (a batch run) or --experiment [FILE] (an experiment)",
            ));
        }
    };
    let storage = match (&args.upload, &args.runs_pvc) {
        (Some(url), _) => job::Storage::Upload(object_storage(url)?),
        (None, Some(claim)) => job::Storage::SharedVolume(claim.clone()),
        (None, None) => {
            return Err(usage(
                "error: --target kubernetes-job needs --upload URL (s3://, az://, gs://) or --runs-pvc NAME (a ReadWriteMany claim): pods share no disk, the shards and the merged result live there",
            ));
        }
    };
    let concurrency = args.per_shard_concurrency.map_or_else(
        || job::per_shard_concurrency(args.concurrency.get(), parallelism.min(shards)),
        Count::get,
    );
    let mut connections = experiment
        .map(|e| e.connections.clone())
        .unwrap_or_default();
    let (delivery, in_pod) = match (args.deliver, &given) {
        (Deliver::Image, Given::Data(data)) => {
            if !args.variant.is_empty() {
                return Err(usage(
                    "error: the image's flow has its variants applied by `flow build --variant`: build the image with the variant, or deliver the flow by --deliver configmap or volume",
                ));
            }
            (job::Delivery::Image, data_in_image(data, t.flow))
        }
        (Deliver::Image, Given::Experiment(e)) => (job::Delivery::Image, in_image_project(&e.file)),
        (Deliver::Configmap, Given::Data(data)) => {
            let Some(flow_path) = t.flow else {
                return Err(usage(
                    "error: --deliver configmap needs --flow FLOW (the flow to put in the ConfigMap)",
                ));
            };
            let selections = parse_variants(&args.variant)?;
            let flow = load_flow(flow_path, &selections)?;
            connections = flow.connection_names();
            let files = job::ConfigMapFiles::read(&flow, &env_vars(args)?, data)
                .map_err(|e| usage(format!("error: {e}")))?;
            let in_pod = files
                .data
                .as_ref()
                .map(|(name, _)| format!("{}/{name}", job::MOUNTED_DATA_DIR))
                .unwrap_or_default();
            // The variants are applied in the ConfigMap's copy of the flow.
            (job::Delivery::ConfigMap(files), in_pod)
        }
        (Deliver::Configmap, Given::Experiment(e)) => {
            let files = job::ConfigMapFiles::read_experiment(&e.experiment, &env_vars(args)?)
                .map_err(|e| usage(format!("error: {e}")))?;
            let name = e
                .experiment
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                job::Delivery::ConfigMap(files),
                format!("{}/{name}", job::MOUNTED_PROJECT_PATH),
            )
        }
        (Deliver::Volume, given) => {
            let Some(pvc) = args.pvc.clone() else {
                return Err(usage(
                    "error: --deliver volume needs --pvc NAME (the PersistentVolumeClaim holding the flow and the data)",
                ));
            };
            let (given, mount) = match given {
                Given::Data(data) => (*data, job::MOUNTED_FLOW_PATH),
                Given::Experiment(e) => (e.file.as_path(), job::MOUNTED_PROJECT_PATH),
            };
            let in_pod = if given.is_absolute() {
                given.to_string_lossy().into_owned()
            } else {
                format!("{mount}/{}", job::slash_path(given))
            };
            (
                job::Delivery::Volume {
                    pvc,
                    sub_path: args.volume_path.clone(),
                },
                in_pod,
            )
        }
    };
    let workload = match given {
        Given::Data(_) => job::Workload::Run {
            data: in_pod,
            // Image and ConfigMap deliveries have the variants applied already.
            variants: match args.deliver {
                Deliver::Volume => args.variant.clone(),
                _ => Vec::new(),
            },
        },
        Given::Experiment(_) => job::Workload::Experiment {
            file: in_pod,
            env: args.env.clone(),
            variants: args.variants.clone(),
            // The merge pod runs alone: the whole budget is its.
            merge_concurrency: args.concurrency.get(),
        },
    };
    let storage_secret = match &storage {
        job::Storage::SharedVolume(_) => None,
        job::Storage::Upload(_) => Some(match &args.storage_secret {
            Some(name) => job::StorageSecret {
                name: name.clone(),
                optional: false,
            },
            None => job::StorageSecret {
                name: format!("{}-storage", t.name),
                optional: true,
            },
        }),
    };
    Ok(job::JobSpec {
        name: t.name.clone(),
        image: t.image.clone(),
        namespace: t.namespace.clone(),
        shards,
        parallelism,
        workload,
        storage,
        concurrency,
        secret: t
            .secret
            .clone()
            .unwrap_or_else(|| format!("{}-env", t.name)),
        connections,
        storage_secret,
        delivery,
        retries_per_index: args.retries_per_index,
        max_failed_indexes: args.max_failed_indexes,
        allow_failures: args.allow_failures,
    })
}

/// The env file's and the environment's variables, whose secret values a ConfigMap leaves out.
fn env_vars(args: &JobArgs) -> Result<EnvVars, Failure> {
    let cwd =
        std::env::current_dir().map_err(|e| usage(format!("error: no working directory: {e}")))?;
    EnvVars::load(args.env_file.as_deref(), &cwd).map_err(|e| usage(format!("error: {e}")))
}

/// A project file inside the image: an absolute path as is, a relative one under /app.
fn in_image_project(path: &Path) -> String {
    if path.is_absolute() {
        path.to_string_lossy().into_owned()
    } else {
        format!("{}/{}", job::IMAGE_PROJECT_PATH, job::slash_path(path))
    }
}

/// The data file inside the image: a file under the local flow is at /app/flow/..., an absolute
/// path is taken as is, another relative path is under the image's working directory /app.
fn data_in_image(data: &Path, flow: Option<&Path>) -> String {
    if data.is_absolute() {
        return data.to_string_lossy().into_owned();
    }
    let under_flow = flow.and_then(|f| {
        // A build context holds the flow in flow/.
        let f = if f.join("flow").join("flow.dag.yaml").is_file() {
            f.join("flow")
        } else {
            f.to_path_buf()
        };
        let canonical = std::fs::canonicalize(&f)
            .ok()
            .zip(std::fs::canonicalize(data).ok());
        match canonical {
            Some((flow, file)) => file.strip_prefix(&flow).ok().map(job::slash_path),
            // Not here (yet): compare the paths as written.
            None => data.strip_prefix(&f).ok().map(job::slash_path),
        }
    });
    match under_flow {
        Some(rel) => format!("{}/{rel}", job::IMAGE_FLOW_PATH),
        None => in_image_project(data),
    }
}

fn show(ns: &[String], args: &[&str]) -> String {
    let mut all: Vec<&str> = ns.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    format!("kubectl {}", all.join(" "))
}

fn kubectl_command(ns: &[String], args: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.args(ns).args(args);
    cmd
}

fn cannot_run(e: std::io::Error) -> Failure {
    usage(format!(
        "error: cannot run kubectl ({e}): install it, or deploy with --dry-run and apply the manifests yourself"
    ))
}

fn kubectl(ns: &[String], args: &[&str]) -> Result<(), Failure> {
    eprintln!("$ {}", show(ns, args));
    let status = kubectl_command(ns, args).status().map_err(cannot_run)?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::endpoint(format!(
            "error: {} failed ({status})",
            show(ns, &args[..1])
        )))
    }
}

/// Kills a waiting kubectl when dropped.
struct Waiter(Child);

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait for `job/<name>` to complete or fail (two `kubectl wait`s at once: whichever condition
/// comes first). A failed Job is an error naming its failed shards when the status has them.
fn wait_for_job(
    ns: &[String],
    name: &str,
    timeout: Duration,
    shards: Option<u32>,
) -> Result<(), Failure> {
    let job = format!("job/{name}");
    let timeout_arg = format!("--timeout={}s", timeout.as_secs());
    let spawn = |condition: &str| -> Result<Waiter, Failure> {
        let args = ["wait", condition, job.as_str(), timeout_arg.as_str()];
        eprintln!("$ {}", show(ns, &args));
        kubectl_command(ns, &args)
            .stdout(Stdio::null())
            .spawn()
            .map(Waiter)
            .map_err(cannot_run)
    };
    let mut complete = Some(spawn("--for=condition=complete")?);
    let mut failed = Some(spawn("--for=condition=failed")?);
    let deadline = Instant::now() + timeout + Duration::from_secs(30);
    loop {
        for (which, slot) in [(true, &mut complete), (false, &mut failed)] {
            let Some(w) = slot.as_mut() else { continue };
            match w.0.try_wait() {
                Ok(Some(status)) if status.success() => {
                    return if which {
                        Ok(())
                    } else {
                        Err(job_failed(ns, name, shards))
                    };
                }
                // This wait ended without its condition (timed out, or the Job is gone).
                Ok(Some(_)) | Err(_) => *slot = None,
                Ok(None) => {}
            }
        }
        if complete.is_none() && failed.is_none() {
            return Err(Failure::endpoint(format!(
                "error: job/{name} neither completed nor failed within {} s (kubectl wait gave up)\n  help: see `kubectl{} describe job/{name}`; raise --wait-timeout",
                timeout.as_secs(),
                ns.iter().map(|s| format!(" {s}")).collect::<String>()
            )));
        }
        if Instant::now() > deadline {
            return Err(Failure::endpoint(format!(
                "error: job/{name} did not finish within {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The error for a failed Job: its reason and the shards that failed, read from its status.
fn job_failed(ns: &[String], name: &str, shards: Option<u32>) -> Failure {
    let args = ["get", &format!("job/{name}"), "-o", "json"];
    eprintln!("$ {}", show(ns, &args));
    let status: Option<Value> = kubectl_command(ns, &args)
        .stderr(Stdio::inherit())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok());
    let reason = status
        .as_ref()
        .and_then(job::failure_reason)
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let failed = status.as_ref().map(job::failed_shards).unwrap_or_default();
    let which = match (failed.is_empty(), shards) {
        (false, Some(n)) => format!(
            "\n  failed shards: {} of {n} (JOB_COMPLETION_INDEX {})",
            failed
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            failed
                .iter()
                .map(|k| (k - 1).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    };
    Failure::quality(format!(
        "error: job/{name} failed{reason}{which}\n  help: `kubectl{} logs job/{name}` shows a pod's error; exit 2 (a configuration error) is not retried. Fix it, `kubectl{} delete job/{name}`, and deploy again: shards already uploaded are resumed, not run again",
        ns.iter().map(|s| format!(" {s}")).collect::<String>(),
        ns.iter().map(|s| format!(" {s}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use flow::deploy::job::{Delivery, JobSpec, PodCommand, Storage, Workload};

    use super::super::super::runs::RunsAction;
    use super::super::super::settings::Count;
    use super::super::super::{Cli, Command};

    /// Parse a pod's command line with the real parser and read back what it asks for.
    fn parsed(argv: &[String]) -> PodCommand {
        let cli = match Cli::try_parse_from(argv) {
            Ok(cli) => cli,
            Err(e) => panic!("the pod command line {argv:?} does not parse:\n{e}"),
        };
        let text = |p: Option<std::path::PathBuf>| p.map(|p| p.display().to_string());
        match cli.command {
            Command::Run(r) => PodCommand::RunShard {
                flow: text(r.flow.clone()).unwrap_or_default(),
                data: text(r.batch.data.clone()).unwrap_or_default(),
                shards: r
                    .batch
                    .shards
                    .map(Count::get)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or_default(),
                name: r.batch.options.name.clone().unwrap_or_default(),
                upload: r.batch.upload.clone(),
                concurrency: r.batch.options.concurrency(),
                variants: r.variant.clone(),
                allow_failures: r.batch.allow_failures,
            },
            Command::Runs(runs) => match runs.action {
                RunsAction::Merge(m) => PodCommand::MergeRuns {
                    shards: m.shards,
                    name: m.name,
                    to: m.to,
                    allow_failures: m.allow_failures,
                },
                other => panic!("{argv:?} is not `flow runs merge`: {other:?}"),
            },
            Command::Experiment(e) => match e.merge_shards {
                Some(from) => {
                    assert!(from.len() <= 1, "{argv:?}: more than one shard folder");
                    PodCommand::MergeExperiment {
                        file: text(e.file).unwrap_or_default(),
                        env: e.env,
                        variants: e.variants,
                        from: from.into_iter().next(),
                        name: e.batch.name.clone().unwrap_or_default(),
                        to: e.to,
                        concurrency: e.batch.concurrency(),
                    }
                }
                None => PodCommand::ExperimentShard {
                    file: text(e.file).unwrap_or_default(),
                    env: e.env,
                    variants: e.variants,
                    shards: e
                        .shards
                        .map(Count::get)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or_default(),
                    upload: e.upload,
                    concurrency: e.batch.concurrency(),
                },
            },
            other => panic!("{argv:?} is not a pod's command: {other:?}"),
        }
    }

    fn spec(workload: Workload, storage: Storage, allow_failures: bool) -> JobSpec {
        JobSpec {
            name: "cls".into(),
            image: "cls:1".into(),
            namespace: None,
            shards: 4,
            parallelism: 2,
            workload,
            storage,
            concurrency: 16,
            secret: "cls-env".into(),
            connections: Vec::new(),
            storage_secret: None,
            delivery: Delivery::Image,
            retries_per_index: 3,
            max_failed_indexes: 0,
            allow_failures,
        }
    }

    #[test]
    fn every_pod_command_line_parses_back_to_what_the_job_asked_for() {
        let workloads = [
            Workload::Run {
                data: "/app/flow/data.jsonl".into(),
                variants: Vec::new(),
            },
            Workload::Run {
                data: "/mnt/flow/data.jsonl".into(),
                variants: vec!["${classify.variant_1}".into()],
            },
            Workload::Experiment {
                file: "/app/experiment.yaml".into(),
                env: None,
                variants: Vec::new(),
                merge_concurrency: 32,
            },
            Workload::Experiment {
                file: "/app/experiment.yaml".into(),
                env: Some("pr".into()),
                variants: vec!["classify.variant_1".into(), "default".into()],
                merge_concurrency: 8,
            },
        ];
        let storages = [
            Storage::Upload("s3://bucket/runs".into()),
            Storage::SharedVolume("runs-claim".into()),
        ];
        let mut checked = 0;
        for workload in &workloads {
            for storage in &storages {
                for allow_failures in [false, true] {
                    let spec = spec(workload.clone(), storage.clone(), allow_failures);
                    for command in [spec.shard_command(), spec.merge_command()] {
                        assert_eq!(parsed(&command.argv()), command);
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 32);
    }
}
