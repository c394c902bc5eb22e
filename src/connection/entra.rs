//! Keyless Azure OpenAI connections (`auth_mode: meid_token`, promptflow's Microsoft Entra ID
//! mode): the token comes from the standard Azure identity variables by the client-credentials
//! flow, `POST {AZURE_AUTHORITY_HOST}/{AZURE_TENANT_ID}/oauth2/v2.0/token` with scope
//! `https://cognitiveservices.azure.com/.default`, is cached until shortly before it expires, and
//! is sent as `Authorization: Bearer`.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use super::{EnvVars, Secret};

/// The `auth_mode` value that asks for an Entra ID token instead of a key.
pub const MEID_TOKEN: &str = "meid_token";
/// The scope of Azure OpenAI (Cognitive Services) tokens.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// Where tokens come from when `AZURE_AUTHORITY_HOST` is unset.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The variables a keyless connection needs, in the order they are named.
pub const REQUIRED_VARS: [&str; 3] = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];
/// A token is renewed this long before it expires.
const EARLY: Duration = Duration::from_secs(120);

/// A service principal's credentials, read from the Azure identity variables.
#[derive(Clone)]
pub struct Identity {
    /// `AZURE_AUTHORITY_HOST` without a trailing slash.
    pub authority: String,
    /// `AZURE_TENANT_ID`.
    pub tenant: String,
    /// `AZURE_CLIENT_ID`.
    pub client_id: String,
    /// `AZURE_CLIENT_SECRET`.
    pub secret: Secret,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("authority", &self.authority)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("secret", &"***")
            .finish()
    }
}

impl Identity {
    /// The identity the variables give, or the names of the missing ones.
    pub fn from_env(env: &EnvVars) -> Result<Identity, Vec<&'static str>> {
        let missing: Vec<&'static str> = REQUIRED_VARS
            .iter()
            .copied()
            .filter(|v| env.get(v).is_none())
            .collect();
        let (Some(tenant), Some(client_id), Some(secret)) = (
            env.get("AZURE_TENANT_ID"),
            env.get("AZURE_CLIENT_ID"),
            env.get("AZURE_CLIENT_SECRET"),
        ) else {
            return Err(missing);
        };
        let authority = env
            .get("AZURE_AUTHORITY_HOST")
            .unwrap_or(DEFAULT_AUTHORITY)
            .trim_end_matches('/')
            .to_string();
        Ok(Identity {
            authority,
            tenant: tenant.trim().to_string(),
            client_id: client_id.trim().to_string(),
            secret: Secret::new(secret.trim()),
        })
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant)
    }

    fn cache_key(&self) -> String {
        format!("{}\u{0}{}", self.token_url(), self.client_id)
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint could not be reached.
    #[error("cannot reach the Entra ID token endpoint {url}: {message}")]
    Network {
        /// The token endpoint.
        url: String,
        /// What failed.
        message: String,
    },
    /// The endpoint refused the credentials or answered without a token.
    #[error(
        "the Entra ID token endpoint {url} gave no token (HTTP {status}): {message}; check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET"
    )]
    Refused {
        /// The token endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The endpoint's `error_description`, else `error`, else an excerpt.
        message: String,
    },
}

static CACHE: LazyLock<tokio::sync::Mutex<HashMap<String, (Secret, Instant)>>> =
    LazyLock::new(|| tokio::sync::Mutex::new(HashMap::new()));

/// A bearer token for `id`: the cached one while it is valid, else a new one (one request at a
/// time, so concurrent lines share it).
pub async fn bearer(http: &reqwest::Client, id: &Identity) -> Result<Secret, TokenError> {
    let mut cache = CACHE.lock().await;
    let key = id.cache_key();
    if let Some((token, until)) = cache.get(&key) {
        if Instant::now() < *until {
            return Ok(token.clone());
        }
    }
    let url = id.token_url();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.client_id.as_str()),
        ("client_secret", id.secret.expose()),
        ("scope", SCOPE),
    ];
    let network = |e: reqwest::Error| TokenError::Network {
        url: url.clone(),
        message: e.without_url().to_string(),
    };
    let resp = http
        .post(&url)
        .form(&form)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(network)?;
    let status = resp.status().as_u16();
    let body: serde_json::Value = match resp.bytes().await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&b).chars().take(200).collect())
        }),
        Err(e) => return Err(network(e)),
    };
    let token = body.get("access_token").and_then(|v| v.as_str());
    match token {
        Some(token) if (200..300).contains(&status) => {
            let lifetime = body
                .get("expires_in")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .unwrap_or(3600);
            let until = Instant::now() + Duration::from_secs(lifetime).saturating_sub(EARLY);
            let token = Secret::new(token);
            cache.insert(key, (token.clone(), until));
            Ok(token)
        }
        _ => {
            let message = ["error_description", "error"]
                .iter()
                .find_map(|k| body.get(*k).and_then(|v| v.as_str()))
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string().chars().take(200).collect());
            Err(TokenError::Refused {
                url,
                status,
                message: message.replace(id.secret.expose(), "***"),
            })
        }
    }
}
