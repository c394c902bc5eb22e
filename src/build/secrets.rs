//! Recognising files that must not enter a build context: by name (`.env`, keys, certificates,
//! credential files) and by content (the value of any secret the build can see).

use std::path::Path;

use crate::connection::EnvVars;

/// File names never copied (exact, lower-cased).
const SECRET_NAMES: &[&str] = &[
    ".netrc",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    ".dockercfg",
    "credentials",
    "credentials.json",
    "secrets.json",
    "secrets.yaml",
    "secrets.yml",
    // System password databases.
    "shadow",
    "gshadow",
    "master.passwd",
    ".htpasswd",
    // Cloud and cluster credentials.
    "kubeconfig",
    "application_default_credentials.json",
    "credentials.db",
    "access_tokens.db",
    ".boto",
    ".s3cfg",
    ".pgpass",
    ".my.cnf",
    // State files that hold resources' secrets.
    "terraform.tfstate",
    "terraform.tfstate.backup",
];

/// Extensions of key and keystore files.
const SECRET_EXTENSIONS: &[&str] = &[
    "pem", "key", "p12", "pfx", "jks", "keystore", "asc", "gpg", "ppk", "kdbx", "tfstate",
];

/// Variable-name words that mark a secret value.
const SECRET_WORDS: &[&str] = &[
    "KEY",
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "CREDENTIAL",
    "HEADERS",
];

/// Decides which files stay out of a build context.
pub struct SecretGuard {
    /// Secret values the build can see (at least 8 characters, to avoid false alarms).
    values: Vec<(String, String)>,
}

impl SecretGuard {
    /// A guard that knows the secret-looking values of `env` (`.env` and the environment) and
    /// of every `.env` file under `flow_dir`.
    pub fn new(env: &EnvVars, flow_dir: &Path) -> Self {
        let mut pairs: Vec<(String, String)> = env
            .with_prefix("")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env_files(flow_dir, &mut pairs);
        let mut values: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(k, v)| {
                let up = k.to_ascii_uppercase();
                SECRET_WORDS.iter().any(|w| up.contains(w)) && v.trim().len() >= 8
            })
            .map(|(k, v)| (k, v.trim().to_string()))
            .collect();
        values.sort();
        values.dedup();
        SecretGuard { values }
    }

    /// Why `path` must stay out, or `None` when it may be copied.
    pub fn reason_to_skip(&self, path: &Path) -> Option<String> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name == ".env" || (name.starts_with(".env.") && !is_env_template(&name)) {
            return Some("a .env file (connections come from the container's environment)".into());
        }
        if name.ends_with(".env") && !path.is_dir() {
            return Some("an env file".into());
        }
        if path.is_dir() {
            return matches!(
                name.as_str(),
                ".git"
                    | ".flow"
                    | ".promptflow"
                    | "__pycache__"
                    | ".venv"
                    | "venv"
                    | "node_modules"
                    | ".ssh"
                    | ".aws"
                    | ".azure"
                    | ".kube"
                    | ".gnupg"
                    | ".docker"
                    | "gcloud"
                    | ".terraform"
            )
            .then(|| "not part of the flow".to_string());
        }
        if SECRET_NAMES.contains(&name.as_str())
            || name.starts_with("id_rsa")
            || name.starts_with("id_ed25519")
            || name.starts_with("id_ecdsa")
            || name.starts_with("id_dsa")
        {
            return Some("a credentials file".into());
        }
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            if SECRET_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
                return Some(format!("a key or certificate file (.{ext})"));
            }
        }
        if name.ends_with(".pyc") {
            return Some("compiled Python".into());
        }
        let bytes = std::fs::read(path).ok()?;
        if contains(&bytes, b"-----BEGIN ") && contains(&bytes, b"PRIVATE KEY-----") {
            return Some("it holds a private key".into());
        }
        for (var, value) in &self.values {
            if contains(&bytes, value.as_bytes()) {
                return Some(format!("it holds the value of {var}"));
            }
        }
        None
    }
}

/// The variables of `.env` files under `dir` (not templates), to recognise their values.
fn env_files(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                ".git" | "node_modules" | ".venv" | "__pycache__"
            ) {
                env_files(&path, out);
            }
        } else if (name == ".env" || name.starts_with(".env.") || name.ends_with(".env"))
            && !is_env_template(&name)
        {
            if let Ok(text) = std::fs::read_to_string(&path) {
                out.extend(dotenvy::from_read_iter(text.as_bytes()).flatten());
            }
        }
    }
}

fn is_env_template(name: &str) -> bool {
    matches!(
        name,
        ".env.example" | ".env.sample" | ".env.template" | ".env.dist"
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised_by_name_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let env =
            EnvVars::from_pairs([("MY_API_KEY", "sk-planted-1234567890"), ("MODEL", "gpt-4o")]);
        std::fs::write(
            dir.path().join(".env"),
            "OTHER_TOKEN=tok-from-the-flow-dir-42\n",
        )
        .unwrap();
        let guard = SecretGuard::new(&env, dir.path());
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        assert!(guard.reason_to_skip(&write(".env", "X=1")).is_some());
        assert!(guard.reason_to_skip(&write(".env.local", "X=1")).is_some());
        assert!(guard.reason_to_skip(&write(".env.example", "X=")).is_none());
        assert!(guard.reason_to_skip(&write("server.pem", "x")).is_some());
        assert!(guard.reason_to_skip(&write("id_rsa", "x")).is_some());
        for name in [
            "shadow",
            ".netrc",
            ".npmrc",
            ".pypirc",
            "kubeconfig",
            "application_default_credentials.json",
            ".pgpass",
            "terraform.tfstate",
            "putty.ppk",
        ] {
            assert!(guard.reason_to_skip(&write(name, "x")).is_some(), "{name}");
        }
        for folder in [".kube", ".gnupg", ".docker", "gcloud", ".ssh", ".aws"] {
            let p = dir.path().join(folder);
            std::fs::create_dir_all(&p).unwrap();
            assert!(guard.reason_to_skip(&p).is_some(), "{folder}");
        }
        let pk = write(
            "notes.txt",
            "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n",
        );
        assert_eq!(guard.reason_to_skip(&pk).unwrap(), "it holds a private key");
        let leaked = write("config.py", "KEY = 'sk-planted-1234567890'\n");
        assert_eq!(
            guard.reason_to_skip(&leaked).unwrap(),
            "it holds the value of MY_API_KEY"
        );
        assert!(
            guard
                .reason_to_skip(&write("tool.py", "MODEL = 'gpt-4o'\n"))
                .is_none()
        );
        let from_flow_env = write("x.py", "t = 'tok-from-the-flow-dir-42'\n");
        assert_eq!(
            guard.reason_to_skip(&from_flow_env).unwrap(),
            "it holds the value of OTHER_TOKEN"
        );
    }
}
