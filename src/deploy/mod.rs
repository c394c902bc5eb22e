//! `flow deploy`: roll a built flow image out — Kubernetes manifests (a Deployment with probes on
//! `/health` and `/ready`, resources, a non-root security context and the connection secrets by
//! reference; a Service; an optional HPA; an optional canary Deployment sharing the Service) or a
//! docker-compose file — and the smoke test that checks the new version answers.

pub mod compose;
pub mod job;
pub mod kubernetes;
pub mod smoke;

use serde_json::Value;

/// The port `flow serve` listens on in the image unless `--container-port` says otherwise.
pub const CONTAINER_PORT: u16 = crate::build::PORT;
/// The variable that sets it in the container (`flow build` images read it).
pub const PORT_ENV: &str = "FLOW_SERVE_PORT";

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    /// The application's name (Deployment, Service, labels), a DNS-1123 label.
    pub name: String,
    /// The image of the (stable) version.
    pub image: String,
    /// Replicas of the stable version.
    pub replicas: u32,
    /// A second version that takes a share of the traffic.
    pub canary: Option<Canary>,
    /// The Kubernetes namespace (none: the current context's).
    pub namespace: Option<String>,
    /// Add a HorizontalPodAutoscaler scaling the stable version up to this many replicas.
    pub hpa_max: Option<u32>,
    /// The Secret (Kubernetes) or env file (compose) holding the connection variables.
    pub secret: String,
    /// The port the container serves on (set through `FLOW_SERVE_PORT`).
    pub port: u16,
}

/// The canary version and the share of requests it should get.
#[derive(Debug, Clone)]
pub struct Canary {
    pub image: String,
    /// Percent of the traffic, 1–99.
    pub weight: u32,
}

/// How replicas split between the stable and canary versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub stable: u32,
    pub canary: u32,
}

impl Split {
    /// The canary's actual share of the pods (what a Service's even spreading gives it), percent.
    pub fn canary_percent(&self) -> f64 {
        100.0 * f64::from(self.canary) / f64::from(self.stable + self.canary).max(1.0)
    }
}

/// Replicas for a canary at `weight` percent next to `stable` stable replicas: the stable
/// version keeps its replicas and the canary gets the count nearest to the weight (at least 1).
/// A Service spreads connections evenly over ready pods, so the canary's share is
/// `canary / (stable + canary)`: weight 10 needs 9 stable replicas to be exact.
pub fn split(stable: u32, weight: u32) -> Split {
    let stable = stable.max(1);
    let w = f64::from(weight.clamp(1, 99));
    let canary = (f64::from(stable) * w / (100.0 - w)).round().max(1.0) as u32;
    Split { stable, canary }
}

/// The stable replica count that makes `weight` exact or nearest, at least `min` (for advice).
pub fn replicas_for(weight: u32, min: u32) -> u32 {
    let w = weight.clamp(1, 99);
    let g = gcd(w, 100);
    let unit = 100 / g; // total pods for an exact split
    let stable_unit = unit - w / g;
    let mut stable = stable_unit;
    while stable < min {
        stable += stable_unit;
    }
    stable
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Whether `name` is a DNS-1123 label (what Kubernetes names must be).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 53
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A name from a flow's directory name: lower-cased, other characters as `-`.
pub fn name_from(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-').to_string();
    let s: String = s.chars().take(53).collect();
    if s.is_empty() { "flow".into() } else { s }
}

/// Several objects as one multi-document YAML file.
pub fn to_yaml_documents(objects: &[Value]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_replicas_follow_the_weight() {
        assert_eq!(
            split(9, 10),
            Split {
                stable: 9,
                canary: 1
            }
        );
        assert_eq!(split(9, 10).canary_percent(), 10.0);
        assert_eq!(
            split(2, 10),
            Split {
                stable: 2,
                canary: 1
            }
        );
        assert_eq!(
            split(3, 50),
            Split {
                stable: 3,
                canary: 3
            }
        );
        assert_eq!(
            split(4, 20),
            Split {
                stable: 4,
                canary: 1
            }
        );
        assert_eq!(
            split(1, 90),
            Split {
                stable: 1,
                canary: 9
            }
        );
        assert_eq!(replicas_for(10, 2), 9);
        assert_eq!(replicas_for(25, 2), 3);
        assert_eq!(replicas_for(50, 2), 2);
        assert_eq!(replicas_for(20, 5), 8);
    }

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(name_from("My_Flow v2"), "my-flow-v2");
        assert!(valid_name("chat-bot-2"));
        assert!(!valid_name("Chat"));
        assert!(!valid_name("-x"));
        assert_eq!(name_from("__"), "flow");
    }
}
