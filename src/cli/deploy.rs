//! `flow deploy --target kubernetes|compose|kubernetes-job --image IMAGE`: write manifests (`--dry-run`, the
//! default) or apply them and smoke-test the new version (`--apply`); `flow deploy smoke --url`
//! runs only the smoke test against a running `flow serve`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::common::load_flow;
use super::output::{Failure, color_stderr, dim};
use super::runtime;
use super::settings::{Count, Seconds};
use flow::deploy::{self, Canary, DeploySpec, kubernetes, smoke};

mod job;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub action: Option<DeployAction>,
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

#[derive(Debug, Subcommand)]
pub enum DeployAction {
    /// Smoke-test a running server: wait for /ready, POST the sample request to /score, and
    /// require a 200 with every output of the flow.
    Smoke(SmokeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Deployment(s), Service and optional HPA for kubectl.
    Kubernetes,
    /// A docker-compose file for one host.
    Compose,
    /// A sharded batch run (--data) or experiment (--experiment): an Indexed Job (one shard per
    /// index) and a merge Job.
    KubernetesJob,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Where to deploy.
    #[arg(long, value_enum)]
    pub target: Option<Target>,
    /// The image to deploy (built from `flow build`).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The application's name (Deployment, Service, Job) [default: the experiment's name, else
    /// from --flow, else the image].
    #[arg(long)]
    pub name: Option<String>,
    /// Replicas of the (stable) version [default: 2 for kubernetes, 1 for compose].
    #[arg(long, value_name = "N")]
    pub replicas: Option<Count<u32>>,
    /// Only write the manifests (the default).
    #[arg(long, conflicts_with = "apply")]
    pub dry_run: bool,
    /// Apply them (kubectl apply / docker compose up), wait for the rollout, then smoke-test.
    #[arg(long)]
    pub apply: bool,
    /// A second image (the new version) taking --weight percent of the traffic.
    #[arg(long, value_name = "IMAGE")]
    pub canary: Option<String>,
    /// The canary's share of the traffic, in percent.
    #[arg(long, default_value_t = 10, requires = "canary", value_parser = clap::value_parser!(u32).range(1..=99))]
    pub weight: u32,
    /// Directory for the manifests [default: deploy/<name>].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Deprecated spelling of --out-dir (--output is the printed-results format elsewhere).
    #[arg(
        id = "output_dir",
        long = "output",
        value_name = "DIR",
        hide = true,
        conflicts_with = "out_dir"
    )]
    pub output_dir: Option<PathBuf>,
    /// Kubernetes namespace [default: kubectl's current one].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Add a HorizontalPodAutoscaler (CPU 70%) scaling the stable version up to N replicas.
    #[arg(long, value_name = "N")]
    pub hpa_max: Option<Count<u32>>,
    /// The Kubernetes Secret holding the connection variables [default: <name>-env], or the env
    /// file compose reads [default: .env].
    #[arg(long, value_name = "NAME|FILE")]
    pub secret: Option<String>,
    /// Host port of the compose service.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The port the container serves on (the image's `flow build --port`; set in the container
    /// as FLOW_SERVE_PORT).
    #[arg(long, value_name = "PORT", default_value_t = deploy::CONTAINER_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub container_port: u16,
    #[command(flatten)]
    pub smoke: SmokeInputs,
    #[command(flatten)]
    pub job: job::JobArgs,
}

#[derive(Debug, Args, Clone)]
pub struct SmokeInputs {
    /// The flow, or its `flow build` context: its outputs are what the smoke test expects, its
    /// sample-request.json what it sends.
    #[arg(long, value_name = "PATH")]
    pub flow: Option<PathBuf>,
    /// The request body to send [default: the context's sample-request.json, else one built from
    /// the flow's input defaults].
    #[arg(long, value_name = "FILE")]
    pub sample: Option<PathBuf>,
    /// Seconds to wait for /ready and the answer.
    #[arg(long = "smoke-timeout", value_name = "SECONDS", default_value = "300")]
    pub timeout: Seconds,
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub inputs: SmokeInputs,
}

pub fn run(args: DeployArgs) -> Result<(), Failure> {
    match args.action {
        Some(DeployAction::Smoke(s)) => smoke_only(&s),
        None => rollout(args.rollout),
    }
}

/// The request to send and the outputs to expect.
struct SmokePlan {
    sample: Value,
    outputs: Vec<String>,
    timeout: Duration,
}

fn smoke_plan(inputs: &SmokeInputs) -> Result<SmokePlan, Failure> {
    let Some(path) = &inputs.flow else {
        return Err(Failure::usage(
            "error: the smoke test needs the flow: pass --flow FLOW (the flow, or its `flow build` context)",
        ));
    };
    // A build context holds flow/ and sample-request.json.
    let (flow_path, context_sample) = if path.join("flow").join("flow.dag.yaml").is_file() {
        (path.join("flow"), Some(path.join("sample-request.json")))
    } else {
        (path.clone(), None)
    };
    let flow = load_flow(&flow_path, &[])?;
    let sample_file = inputs
        .sample
        .clone()
        .or(context_sample.filter(|p| p.is_file()));
    let sample = match sample_file {
        Some(file) => read_json(&file)?,
        None => flow::build::sample_request(&flow),
    };
    Ok(SmokePlan {
        sample,
        outputs: flow.outputs.keys().cloned().collect(),
        timeout: inputs.timeout.duration(),
    })
}

fn read_json(path: &Path) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "error: {}:{}:{}: invalid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

fn smoke_only(args: &SmokeArgs) -> Result<(), Failure> {
    let plan = smoke_plan(&args.inputs)?;
    run_smoke(&args.url, &plan)
}

/// Run the smoke test and print its result; a failure is exit 1 (wrong answer) or 3 (never
/// ready / unreachable).
fn run_smoke(url: &str, plan: &SmokePlan) -> Result<(), Failure> {
    let token = std::env::var(super::serve::TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let rt = runtime()?;
    let result = rt.block_on(smoke::smoke_test(
        url,
        &plan.sample,
        &plan.outputs,
        token.as_deref(),
        plan.timeout,
    ));
    match result {
        Ok(report) => {
            outln!(
                "smoke test passed: {url} ready after {:.1} s, /score answered 200 in {:.0} ms with {}",
                report.ready_after.as_secs_f64(),
                report.latency.as_secs_f64() * 1000.0,
                report
                    .outputs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Err(e) if e.unreachable() => Err(Failure::endpoint(format!("smoke test failed: {e}"))),
        Err(e) => Err(Failure::quality(format!("smoke test failed: {e}"))),
    }
}

fn rollout(args: RolloutArgs) -> Result<(), Failure> {
    let Some(target) = args.target else {
        return Err(Failure::usage(
            "error: give --target kubernetes|kubernetes-job|compose (or `flow deploy smoke --url URL`)",
        ));
    };
    let Some(image) = args.image.clone() else {
        return Err(Failure::usage(
            "error: give --image IMAGE (built with `flow build`)",
        ));
    };
    let plan = if args.apply && target != Target::KubernetesJob {
        Some(smoke_plan(&args.smoke)?)
    } else {
        None
    };
    let name = match &args.name {
        Some(n) if deploy::valid_name(n) => n.clone(),
        Some(n) => {
            return Err(Failure::usage(format!(
                "error: --name `{n}` is not a valid name: lower-case letters, digits and `-`, at most 53 characters (e.g. `{}`)",
                deploy::name_from(n)
            )));
        }
        None => {
            let from_flow = args.smoke.flow.as_ref().and_then(|p| {
                std::fs::canonicalize(p)
                    .ok()
                    .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
            });
            let from_image = image
                .rsplit('/')
                .next()
                .and_then(|s| s.split([':', '@']).next())
                .unwrap_or("flow")
                .to_string();
            deploy::name_from(&from_flow.unwrap_or(from_image))
        }
    };
    let out_dir = args.out_dir.clone().or(args.output_dir.clone());
    let dir = out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("deploy").join(&name));
    if target == Target::KubernetesJob {
        return job::rollout(
            job::JobTarget {
                name,
                image,
                namespace: args.namespace.clone(),
                secret: args.secret.clone(),
                flow: args.smoke.flow.as_deref(),
                out_dir,
                apply: args.apply,
                named: args.name.is_some(),
            },
            &args.job,
        );
    }
    let replicas = args.replicas.map_or(
        match target {
            Target::Kubernetes | Target::KubernetesJob => 2,
            Target::Compose => 1,
        },
        Count::get,
    );
    let spec = DeploySpec {
        name: name.clone(),
        image,
        replicas,
        canary: args.canary.clone().map(|image| Canary {
            image,
            weight: args.weight,
        }),
        namespace: args.namespace.clone(),
        hpa_max: args.hpa_max.map(Count::get),
        secret: args.secret.clone().unwrap_or_else(|| match target {
            Target::Kubernetes | Target::KubernetesJob => format!("{name}-env"),
            Target::Compose => ".env".to_string(),
        }),
        port: args.container_port,
    };
    std::fs::create_dir_all(&dir).map_err(|e| Failure::own_file("cannot create", &dir, &e))?;
    match target {
        Target::Kubernetes | Target::KubernetesJob => {
            kubernetes_rollout(&spec, &dir, args.apply, plan.as_ref())
        }
        Target::Compose => compose_rollout(&spec, &dir, args.port, args.apply, plan.as_ref()),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| Failure::own_file("cannot write", path, &e))
}

fn kubernetes_rollout(
    spec: &DeploySpec,
    dir: &Path,
    apply: bool,
    plan: Option<&SmokePlan>,
) -> Result<(), Failure> {
    let objects = kubernetes::manifests(spec);
    let yaml = deploy::to_yaml_documents(&objects)
        .map_err(|e| Failure::usage(format!("error: cannot write the manifests: {e}")))?;
    let file = dir.join("kubernetes.yaml");
    write_file(&file, &yaml)?;
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    outln!("wrote {} ({})", file.display(), kinds.join(", "));
    if let Some(c) = &spec.canary {
        let s = deploy::split(spec.replicas, c.weight);
        outln!(
            "traffic: {} stable + {} canary pods behind Service/{} → the canary gets {:.1}% of new connections (asked: {}%)",
            s.stable,
            s.canary,
            spec.name,
            s.canary_percent(),
            c.weight
        );
        if (s.canary_percent() - f64::from(c.weight)).abs() >= 1.0 {
            outln!(
                "  for exactly {}%: --replicas {}",
                c.weight,
                deploy::replicas_for(c.weight, spec.replicas)
            );
        }
    }
    let ns: Vec<String> = spec
        .namespace
        .iter()
        .flat_map(|n| ["--namespace".to_string(), n.clone()])
        .collect();
    if !apply {
        let color = color_stderr();
        eprintln!(
            "{}",
            dim(
                &format!(
                    "dry run: nothing applied. The pods read the Secret `{}`: kubectl create secret generic {} --from-env-file=.env{}\nthen: kubectl apply -f {}   (or flow deploy ... --apply)",
                    spec.secret,
                    spec.secret,
                    ns.iter().map(|s| format!(" {s}")).collect::<String>(),
                    file.display()
                ),
                color
            )
        );
        return Ok(());
    }
    let Some(plan) = plan else {
        return Err(Failure::usage(
            "error: --apply needs --flow for the smoke test",
        ));
    };
    let kubectl = |args: &[&str]| -> Result<(), Failure> {
        let mut cmd = Command::new("kubectl");
        cmd.args(&ns).args(args);
        eprintln!(
            "$ kubectl {}{}",
            ns.iter().map(|s| format!("{s} ")).collect::<String>(),
            args.join(" ")
        );
        let status = cmd.status().map_err(|e| {
            Failure::usage(format!(
                "error: cannot run kubectl ({e}): install it, or deploy with --dry-run and apply the manifests yourself"
            ))
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(Failure::endpoint(format!(
                "error: kubectl {} failed ({status})",
                args.first().copied().unwrap_or_default()
            )))
        }
    };
    let file_arg = file.to_string_lossy().into_owned();
    kubectl(&["apply", "-f", &file_arg])?;
    let timeout = format!("--timeout={}s", plan.timeout.as_secs().max(1));
    for o in objects.iter().filter(|o| o["kind"] == "Deployment") {
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        kubectl(&["rollout", "status", &format!("deployment/{name}"), &timeout])?;
    }
    // Reach the new version's pods directly (not through the Service, which mixes versions).
    let target = format!("deployment/{}", kubernetes::new_version_deployment(spec));
    let mut forward = Command::new("kubectl");
    forward
        .args(&ns)
        .args(["port-forward", &target, &format!(":{}", spec.port)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = forward
        .spawn()
        .map_err(|e| Failure::usage(format!("error: cannot run kubectl port-forward: {e}")))?;
    // Read the chosen local port, then keep draining kubectl's output in a thread: it prints a
    // line per connection and would die of SIGPIPE on a closed pipe.
    let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // "Forwarding from 127.0.0.1:43567 -> 8080"
                let port = line
                    .strip_prefix("Forwarding from 127.0.0.1:")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|p| p.parse::<u16>().ok());
                if let (Some(p), Some(tx)) = (port, port_tx.take()) {
                    let _ = tx.send(p);
                }
            }
        });
    }
    let port = port_rx.recv_timeout(Duration::from_secs(30)).ok();
    let result = match port {
        Some(port) => run_smoke(&format!("http://127.0.0.1:{port}"), plan),
        None => Err(Failure::endpoint(format!(
            "error: kubectl port-forward {target} did not start"
        ))),
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn compose_rollout(
    spec: &DeploySpec,
    dir: &Path,
    port: u16,
    apply: bool,
    plan: Option<&SmokePlan>,
) -> Result<(), Failure> {
    if spec.canary.is_some() {
        return Err(Failure::usage(
            "error: --canary needs a traffic split, which compose does not do: use --target kubernetes (or put a weighted proxy in front of two compose services)",
        ));
    }
    // Compose resolves env_file against the compose file's folder: name it from there.
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::usage(format!("error: no working directory: {e}")))?;
    let env_file = deploy::compose::path_from(dir, Path::new(&spec.secret), &cwd);
    let doc = deploy::compose::compose_file(spec, port, &env_file);
    let yaml = serde_yaml::to_string(&doc)
        .map_err(|e| Failure::usage(format!("error: cannot write the compose file: {e}")))?;
    let file = dir.join("compose.yaml");
    write_file(&file, &yaml)?;
    outln!("wrote {} (service {})", file.display(), spec.name);
    if !apply {
        eprintln!(
            "{}",
            dim(
                &format!(
                    "dry run: nothing started. The container reads {} (not copied). Then: docker compose -f {} up -d",
                    spec.secret,
                    file.display()
                ),
                color_stderr()
            )
        );
        return Ok(());
    }
    let Some(plan) = plan else {
        return Err(Failure::usage(
            "error: --apply needs --flow for the smoke test",
        ));
    };
    if !Path::new(&spec.secret).is_file() {
        return Err(Failure::usage(format!(
            "error: the env file {} does not exist: compose would refuse to start. Create it with the connection variables, or pass --secret FILE",
            spec.secret
        )));
    }
    compose_v2()?;
    let file_arg = file.to_string_lossy().into_owned();
    eprintln!("$ docker compose -f {file_arg} up -d");
    let status = Command::new("docker")
        .args(["compose", "-f", &file_arg, "up", "-d"])
        .status()
        .map_err(|e| Failure::usage(format!("error: cannot run docker ({e})")))?;
    if !status.success() {
        return Err(Failure::endpoint(format!(
            "error: docker compose up failed ({status})"
        )));
    }
    run_smoke(&format!("http://127.0.0.1:{port}"), plan)
}

/// Require Compose v2 (`docker compose`): the compose file uses what v1 (`docker-compose`)
/// rejects. Says which one was found.
fn compose_v2() -> Result<(), Failure> {
    let v2 = Command::new("docker")
        .args(["compose", "version", "--short"])
        .stdin(Stdio::null())
        .output();
    match v2 {
        Ok(out) if out.status.success() => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::usage(
                "error: cannot run docker: install Docker with the Compose v2 plugin (`docker compose`), or deploy with --dry-run and start the compose file yourself",
            ));
        }
        _ => {}
    }
    let v1 = Command::new("docker-compose")
        .arg("version")
        .arg("--short")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Err(Failure::usage(match v1 {
        Some(version) => format!(
            "error: only Compose v1 was found (docker-compose {version}); the compose file needs Compose v2: install the Docker Compose plugin so that `docker compose version` answers (v1 rejects the file's top-level `name`)"
        ),
        None => "error: `docker compose version` failed: the compose file needs Compose v2 (the Docker Compose plugin); install it, or deploy with --dry-run".to_string(),
    }))
}
