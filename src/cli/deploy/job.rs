//! `flow deploy --target kubernetes-job`: a sharded batch run as a Kubernetes Indexed Job and a
//! merge Job; `--dry-run` writes them, `--apply` applies the Indexed Job, waits for it, then
//! applies the merge Job and waits for that.

use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::super::batch::DEFAULT_CONCURRENCY;
use super::super::output::{Failure, color_stderr, dim};
use super::super::run::{load_flow, parse_variants};
use super::write_file;
use flow::connection::EnvVars;
use flow::deploy::{self, job};

/// How the pods get the flow and the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Deliver {
    /// In the image `flow build` made (the flow at /app/flow).
    Image,
    /// A ConfigMap generated from --flow and --data (at most 1 MiB).
    Configmap,
    /// A PersistentVolumeClaim (--pvc) holding the flow and the data.
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
    /// N: shards, one Kubernetes index each (the Job's completions).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// P: pods running at once [default: N].
    #[arg(long, value_name = "P")]
    pub parallelism: Option<u32>,
    /// How the flow and data reach the pods.
    #[arg(long, value_enum, default_value_t = Deliver::Image)]
    pub deliver: Deliver,
    /// The PersistentVolumeClaim of --deliver volume.
    #[arg(long, value_name = "NAME")]
    pub pvc: Option<String>,
    /// The flow's folder inside the volume [default: its root].
    #[arg(long, value_name = "DIR", requires = "pvc")]
    pub volume_path: Option<String>,
    /// Use a variant: '${node.variant_id}' (repeatable).
    #[arg(long, value_name = "VARIANT")]
    pub variant: Vec<String>,
    /// Object storage folder (s3://, az://, gs://): shards go to <URL>/<name>-shards/, the
    /// merged run to <URL>/<name>/.
    #[arg(long, value_name = "URL")]
    pub upload: Option<String>,
    /// Lines in flight across all pods; each pod gets ceil(C / P).
    #[arg(long, value_name = "C", default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Lines in flight in each pod, instead of dividing --concurrency.
    #[arg(long, value_name = "N")]
    pub per_shard_concurrency: Option<usize>,
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
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub wait_timeout: u64,
    /// Shards and merge exit 0 even when some lines failed.
    #[arg(long)]
    pub allow_failures: bool,
    /// The env file whose secret values are kept out of the ConfigMap [default: ./.env].
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
    pub dir: PathBuf,
    pub apply: bool,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::usage(message)
}

/// Build the spec from the options, write the manifests, and apply them with `--apply`.
pub fn rollout(t: JobTarget<'_>, args: &JobArgs) -> Result<(), Failure> {
    let spec = spec(&t, args)?;
    let shard_objects = spec
        .shard_manifests()
        .map_err(|e| usage(format!("error: {e}")))?;
    let job_yaml = deploy::to_yaml_documents(&shard_objects)
        .map_err(|e| usage(format!("error: cannot write the manifests: {e}")))?;
    let merge_yaml = deploy::to_yaml_documents(&[spec.merge_job()])
        .map_err(|e| usage(format!("error: cannot write the manifests: {e}")))?;
    std::fs::create_dir_all(&t.dir)
        .map_err(|e| usage(format!("error: cannot create {}: {e}", t.dir.display())))?;
    let job_file = t.dir.join("job.yaml");
    let merge_file = t.dir.join("merge-job.yaml");
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
    outln!(
        "shards: {} ({} at once, {} lines in flight each) → {}/",
        spec.shards,
        spec.parallelism.min(spec.shards),
        spec.concurrency,
        spec.shards_url()
    );
    outln!("merged run: {}/", spec.merged_url());
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
    let timeout = Duration::from_secs(args.wait_timeout.max(1));
    kubectl(&ns, &["apply", "-f", &job_file.to_string_lossy()])?;
    wait_for_job(&ns, &spec.name, timeout, Some(spec.shards))?;
    outln!("job/{}: all {} shards succeeded", spec.name, spec.shards);
    kubectl(&ns, &["apply", "-f", &merge_file.to_string_lossy()])?;
    wait_for_job(&ns, &spec.merge_job_name(), timeout, None)?;
    outln!(
        "job/{}: merged run {} written to {}/",
        spec.merge_job_name(),
        spec.name,
        spec.merged_url()
    );
    Ok(())
}

fn spec(t: &JobTarget<'_>, args: &JobArgs) -> Result<job::JobSpec, Failure> {
    let Some(shards) = args.shards else {
        return Err(usage(
            "error: --target kubernetes-job needs --shards N (the number of pods' shards)",
        ));
    };
    if shards == 0 {
        return Err(usage("error: --shards must be at least 1"));
    }
    let parallelism = args.parallelism.unwrap_or(shards);
    if parallelism == 0 {
        return Err(usage("error: --parallelism must be at least 1"));
    }
    let Some(data) = &args.data else {
        return Err(usage("error: --target kubernetes-job needs --data PATH"));
    };
    let Some(upload) = args.upload.clone() else {
        return Err(usage(
            "error: --target kubernetes-job needs --upload URL (s3://, az://, gs://): pods share no disk, the shards and the merged run live there",
        ));
    };
    if !["s3://", "az://", "gs://"]
        .iter()
        .any(|p| upload.starts_with(p))
    {
        return Err(usage(format!(
            "error: --upload {upload}: give an object storage URL (s3://, az://, gs://)"
        )));
    }
    if args.concurrency == 0 || args.per_shard_concurrency == Some(0) {
        return Err(usage("error: concurrency must be at least 1"));
    }
    let concurrency = args
        .per_shard_concurrency
        .unwrap_or_else(|| job::per_shard_concurrency(args.concurrency, parallelism.min(shards)));
    let (delivery, data_in_pod, variants) = match args.deliver {
        Deliver::Image => {
            if !args.variant.is_empty() {
                return Err(usage(
                    "error: the image's flow has its variants applied by `flow build --variant`: build the image with the variant, or deliver the flow by --deliver configmap or volume",
                ));
            }
            (
                job::Delivery::Image,
                data_in_image(data, t.flow),
                Vec::new(),
            )
        }
        Deliver::Configmap => {
            let Some(flow_path) = t.flow else {
                return Err(usage(
                    "error: --deliver configmap needs --flow FLOW (the flow to put in the ConfigMap)",
                ));
            };
            let selections = parse_variants(&args.variant)?;
            let flow = load_flow(flow_path, &selections)?;
            let cwd = std::env::current_dir()
                .map_err(|e| usage(format!("error: no working directory: {e}")))?;
            let env = EnvVars::load(args.env_file.as_deref(), &cwd)
                .map_err(|e| usage(format!("error: {e}")))?;
            let files = job::ConfigMapFiles::read(&flow, &env, data)
                .map_err(|e| usage(format!("error: {e}")))?;
            let in_pod = format!("{}/{}", job::MOUNTED_DATA_DIR, files.data.0);
            // The variants are applied in the ConfigMap's copy of the flow.
            (job::Delivery::ConfigMap(files), in_pod, Vec::new())
        }
        Deliver::Volume => {
            let Some(pvc) = args.pvc.clone() else {
                return Err(usage(
                    "error: --deliver volume needs --pvc NAME (the PersistentVolumeClaim holding the flow and the data)",
                ));
            };
            let in_pod = if data.is_absolute() {
                data.to_string_lossy().into_owned()
            } else {
                format!("{}/{}", job::MOUNTED_FLOW_PATH, slash_path(data))
            };
            (
                job::Delivery::Volume {
                    pvc,
                    sub_path: args.volume_path.clone(),
                },
                in_pod,
                args.variant.clone(),
            )
        }
    };
    let storage_secret = Some(match &args.storage_secret {
        Some(name) => job::StorageSecret {
            name: name.clone(),
            optional: false,
        },
        None => job::StorageSecret {
            name: format!("{}-storage", t.name),
            optional: true,
        },
    });
    Ok(job::JobSpec {
        name: t.name.clone(),
        image: t.image.clone(),
        namespace: t.namespace.clone(),
        shards,
        parallelism,
        data: data_in_pod,
        variants,
        upload,
        concurrency,
        secret: t
            .secret
            .clone()
            .unwrap_or_else(|| format!("{}-env", t.name)),
        storage_secret,
        delivery,
        retries_per_index: args.retries_per_index,
        max_failed_indexes: args.max_failed_indexes,
        allow_failures: args.allow_failures,
    })
}

/// A relative path with `/` separators.
fn slash_path(p: &Path) -> String {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
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
            Some((flow, file)) => file.strip_prefix(&flow).ok().map(slash_path),
            // Not here (yet): compare the paths as written.
            None => data.strip_prefix(&f).ok().map(slash_path),
        }
    });
    match under_flow {
        Some(rel) => format!("{}/{rel}", job::IMAGE_FLOW_PATH),
        None => format!("/app/{}", slash_path(data)),
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
