//! Kubernetes manifests: a Deployment per version, one Service in front of both, an optional
//! HorizontalPodAutoscaler.
//!
//! Traffic split: both Deployments' pods carry `app.kubernetes.io/name: <name>`, the Service
//! selects on that label only, so kube-proxy spreads new connections evenly across all ready
//! pods of both versions; the canary's share is its share of the ready pods (see
//! [`split`](super::split)). Each Deployment also has its own `flow.track` label
//! (`stable`/`canary`) so it selects only its own pods.

use serde_json::{Value, json};

use super::{DeploySpec, PORT_ENV, split};

/// The label both versions share (the Service selects on it).
pub const APP_LABEL: &str = "app.kubernetes.io/name";
/// The label telling the versions apart.
pub const TRACK_LABEL: &str = "flow.track";

/// Every object to apply, in order: Deployment(s), Service, HPA.
pub fn manifests(spec: &DeploySpec) -> Vec<Value> {
    let mut objects = Vec::new();
    match &spec.canary {
        None => objects.push(deployment(
            spec,
            &spec.name,
            &spec.image,
            "stable",
            spec.replicas,
        )),
        Some(c) => {
            let s = split(spec.replicas, c.weight);
            objects.push(deployment(
                spec,
                &spec.name,
                &spec.image,
                "stable",
                s.stable,
            ));
            objects.push(deployment(
                spec,
                &format!("{}-canary", spec.name),
                &c.image,
                "canary",
                s.canary,
            ));
        }
    }
    objects.push(service(spec));
    if let Some(max) = spec.hpa_max {
        objects.push(hpa(spec, max));
    }
    objects
}

fn metadata(spec: &DeploySpec, name: &str, labels: Value) -> Value {
    let mut m = json!({"name": name, "labels": labels});
    if let Some(ns) = &spec.namespace {
        m["namespace"] = Value::String(ns.clone());
    }
    m
}

fn deployment(spec: &DeploySpec, name: &str, image: &str, track: &str, replicas: u32) -> Value {
    let labels = json!({
        APP_LABEL: spec.name,
        TRACK_LABEL: track,
        "app.kubernetes.io/managed-by": "flow",
    });
    let selector = json!({APP_LABEL: spec.name, TRACK_LABEL: track});
    let probe = |path: &str, period: u32, failures: u32| {
        json!({
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        })
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(spec, name, labels.clone()),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": false,
                    // Longer than flow serve's default --timeout would be too long to wait on a
                    // rollout; in-flight requests get a minute to finish.
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "flow",
                        "image": image,
                        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
                        "env": [{"name": PORT_ENV, "value": spec.port.to_string()}],
                        "envFrom": [{"secretRef": {"name": spec.secret}}],
                        "startupProbe": probe("/ready", 2, 30),
                        "readinessProbe": probe("/ready", 5, 2),
                        "livenessProbe": probe("/health", 10, 3),
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                            "limits": {"memory": "512Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    })
}

fn service(spec: &DeploySpec) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(spec, &spec.name, json!({APP_LABEL: spec.name, "app.kubernetes.io/managed-by": "flow"})),
        "spec": {
            "type": "ClusterIP",
            // Only the app label: the pods of both versions are endpoints.
            "selector": {APP_LABEL: spec.name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    })
}

fn hpa(spec: &DeploySpec, max: u32) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(spec, &spec.name, json!({APP_LABEL: spec.name, "app.kubernetes.io/managed-by": "flow"})),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.replicas.max(1),
            "maxReplicas": max.max(spec.replicas.max(1)),
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            }],
        },
    })
}

/// The Deployment serving the new version: the canary when there is one.
pub fn new_version_deployment(spec: &DeploySpec) -> String {
    match spec.canary {
        Some(_) => format!("{}-canary", spec.name),
        None => spec.name.clone(),
    }
}
