//! A docker-compose file for one host: the image with the connection variables from an env
//! file (by reference: the file is read by compose at `up`, never copied), the health check,
//! a read-only root filesystem and no new privileges.

use serde_json::{Value, json};

use super::{CONTAINER_PORT, DeploySpec};

/// The compose file's content. `host_port` is where the service is published on the host.
pub fn compose_file(spec: &DeploySpec, host_port: u16) -> Value {
    let mut service = json!({
        "image": spec.image,
        "restart": "unless-stopped",
        "ports": [format!("{host_port}:{CONTAINER_PORT}")],
        "env_file": [spec.secret],
        "read_only": true,
        "tmpfs": ["/tmp"],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "stop_signal": "SIGTERM",
        "stop_grace_period": "60s",
        "healthcheck": {
            "test": ["CMD", "/usr/local/bin/flow", "probe", format!("http://127.0.0.1:{CONTAINER_PORT}/ready")],
            "interval": "10s",
            "timeout": "3s",
            "retries": 3,
            "start_period": "20s",
        },
    });
    if spec.replicas > 1 {
        // Several replicas cannot share one published port: publish a range instead.
        service["ports"] = json!([format!(
            "{}-{}:{CONTAINER_PORT}",
            host_port,
            u32::from(host_port) + spec.replicas - 1
        )]);
        service["deploy"] = json!({"replicas": spec.replicas});
    }
    let mut services = serde_json::Map::new();
    services.insert(spec.name.clone(), service);
    json!({"name": spec.name, "services": services})
}
