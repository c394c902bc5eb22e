//! A compose file for one host (Compose v2, `docker compose`: v1's `docker-compose` rejects
//! its top-level `name`): the image with the connection variables from an env file (by
//! reference: the file is read by compose at `up`, never copied), the health check, a
//! read-only root filesystem and no new privileges.

use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

use super::{DeploySpec, PORT_ENV};

/// `path` lexically cleaned: `.` dropped, `..` applied.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// How the compose file in `compose_dir` must name `file` (both relative to `cwd` unless
/// absolute): compose resolves a relative `env_file` against the compose file's folder, not
/// the directory it is run from.
pub fn path_from(compose_dir: &Path, file: &Path, cwd: &Path) -> String {
    if file.is_absolute() {
        return file.to_string_lossy().into_owned();
    }
    let dir = normalize(&cwd.join(compose_dir));
    let target = normalize(&cwd.join(file));
    let d: Vec<Component> = dir.components().collect();
    let t: Vec<Component> = target.components().collect();
    let common = d.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..d.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c.as_os_str());
    }
    rel.to_string_lossy().replace('\\', "/")
}

/// The compose file's content. `host_port` is where the service is published on the host;
/// `env_file` is the env file as the compose file names it (see [`path_from`]).
pub fn compose_file(spec: &DeploySpec, host_port: u16, env_file: &str) -> Value {
    let port = spec.port;
    let mut service = json!({
        "image": spec.image,
        "restart": "unless-stopped",
        "ports": [format!("{host_port}:{port}")],
        "env_file": [env_file],
        "environment": {PORT_ENV: port.to_string()},
        "read_only": true,
        "tmpfs": ["/tmp"],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "stop_signal": "SIGTERM",
        "stop_grace_period": "60s",
        "healthcheck": {
            "test": ["CMD", "/usr/local/bin/flow", "probe", format!("http://127.0.0.1:{port}/ready")],
            "interval": "10s",
            "timeout": "3s",
            "retries": 3,
            "start_period": "20s",
        },
    });
    if spec.replicas > 1 {
        // Several replicas cannot share one published port: publish a range instead.
        service["ports"] = json!([format!(
            "{}-{}:{port}",
            host_port,
            u32::from(host_port) + spec.replicas - 1
        )]);
        service["deploy"] = json!({"replicas": spec.replicas});
    }
    let mut services = serde_json::Map::new();
    services.insert(spec.name.clone(), service);
    json!({"name": spec.name, "services": services})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_file_is_named_from_the_compose_files_folder() {
        let cwd = Path::new("/work/project");
        assert_eq!(
            path_from(Path::new("deploy/chat"), Path::new(".env"), cwd),
            "../../.env"
        );
        assert_eq!(
            path_from(Path::new("./out"), Path::new("config/prod.env"), cwd),
            "../config/prod.env"
        );
        assert_eq!(path_from(Path::new("."), Path::new(".env"), cwd), ".env");
        assert_eq!(
            path_from(Path::new("/elsewhere/deploy"), Path::new(".env"), cwd),
            "../../work/project/.env"
        );
        assert_eq!(
            path_from(Path::new("deploy"), Path::new("/etc/flow.env"), cwd),
            "/etc/flow.env"
        );
    }
}
