//! A Docker engine for the image tests: the one `DOCKER_HOST` names when it answers (`.ci/run`
//! starts one with `scripts/docker-ci.sh start`), else one this test binary starts with that
//! script and stops when the last test using it is done. The stand-in base images are made with
//! `scripts/docker-ci.sh bases` (a no-op once they exist).
//!
//! Docker is required: no engine FAILS the test (as a missing Chromium does), it never skips.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::context::repo_root;

/// The engine, held while a test uses it.
pub struct Docker {
    engine: Arc<Engine>,
}

struct Engine {
    host: String,
    /// Whether this process started it (and so stops it).
    started: bool,
}

static ENGINE: Mutex<Weak<Engine>> = Mutex::new(Weak::new());

fn script(args: &[&str], host: Option<&str>) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/docker-ci.sh"))
        .args(args)
        .stdin(Stdio::null());
    if let Some(h) = host {
        cmd.env("DOCKER_HOST", h);
    }
    cmd.output().expect("run scripts/docker-ci.sh")
}

fn answers(host: &str) -> bool {
    Command::new("docker")
        .arg("version")
        .env("DOCKER_HOST", host)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn exported_host(out: &Output) -> Option<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("export DOCKER_HOST="))
        .map(str::to_string)
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The build stages left untagged, once no test builds any more.
        let _ = Command::new("docker")
            .args(["image", "prune", "-f"])
            .env("DOCKER_HOST", &self.host)
            .output();
        if self.started {
            let _ = script(&["stop"], Some(&self.host));
        }
    }
}

impl Docker {
    /// The engine, with the base images present (panics when there is none and none starts).
    pub fn get() -> Docker {
        let mut slot = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(engine) = slot.upgrade() {
            return Docker { engine };
        }
        let given = std::env::var("DOCKER_HOST").ok().filter(|h| answers(h));
        let engine = match given {
            Some(host) => Engine {
                host,
                started: false,
            },
            None => {
                let ours = exported_host(&script(&["env"], None)).expect("docker-ci.sh env");
                if answers(&ours) {
                    Engine {
                        host: ours,
                        started: false,
                    }
                } else {
                    let out = script(&["start"], None);
                    let host = exported_host(&out).filter(|h| answers(h));
                    let Some(host) = host else {
                        panic!(
                            "no Docker engine: scripts/docker-ci.sh start failed (the image tests need one; \
                             .ci/run starts it):\n{}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    };
                    Engine {
                        host,
                        started: true,
                    }
                }
            }
        };
        let bases = script(&["bases"], Some(&engine.host));
        assert!(
            bases.status.success(),
            "scripts/docker-ci.sh bases failed:\n{}",
            String::from_utf8_lossy(&bases.stderr)
        );
        let engine = Arc::new(engine);
        *slot = Arc::downgrade(&engine);
        Docker { engine }
    }

    /// `docker ARGS...` against this engine.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", &self.engine.host)
            .env("DOCKER_CLI_HINTS", "false")
            .stdin(Stdio::null());
        cmd
    }

    /// Run `docker ARGS...` and return its output, whatever its status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run docker")
    }

    /// Run `docker ARGS...`, require success, return stdout (trimmed).
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "docker {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker build` the context into `tag` and how long it took; `network` is `host` (the
    /// engine has no bridge) or `none`. The image is removed when the returned guard drops.
    pub fn build(&self, context: &Path, tag: &str, network: &str) -> (Image<'_>, Duration) {
        let started = Instant::now();
        let context = context.to_string_lossy();
        self.ok(&["build", "--network", network, "-q", "-t", tag, &context]);
        (
            Image {
                docker: self,
                tag: tag.to_string(),
            },
            started.elapsed(),
        )
    }

    /// `docker run -d --network host ARGS... IMAGE CMD...`: the container is removed when the
    /// guard drops.
    pub fn run(&self, args: &[&str], image: &str, cmd: &[&str]) -> Container<'_> {
        let mut all = vec!["run", "-d", "--network", "host"];
        all.extend_from_slice(args);
        all.push(image);
        all.extend_from_slice(cmd);
        let id = self.ok(&all);
        Container { docker: self, id }
    }
}

/// An image, removed on drop.
pub struct Image<'a> {
    docker: &'a Docker,
    pub tag: String,
}

impl Image<'_> {
    /// `docker image inspect -f FORMAT`.
    pub fn inspect(&self, format: &str) -> String {
        self.docker
            .ok(&["image", "inspect", "-f", format, &self.tag])
    }
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        let _ = self.docker.output(&["rmi", "-f", &self.tag]);
    }
}

/// A container, removed (with force) on drop.
pub struct Container<'a> {
    docker: &'a Docker,
    pub id: String,
}

impl Container<'_> {
    /// `docker inspect -f FORMAT`.
    pub fn inspect(&self, format: &str) -> String {
        self.docker.ok(&["inspect", "-f", format, &self.id])
    }

    /// Its logs (stdout and stderr).
    pub fn logs(&self) -> String {
        let out = self.docker.output(&["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Poll the health status until it is `want` (panics after `within`).
    pub fn wait_health(&self, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.inspect("{{.State.Health.Status}}");
            if last == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "health stayed {last:?}, not {want:?}:\n{}\n{}",
            self.inspect("{{json .State.Health}}"),
            self.logs()
        );
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.docker.output(&["rm", "-f", &self.id]);
    }
}
