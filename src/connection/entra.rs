//! Keyless Azure OpenAI connections (`auth_mode: meid_token`, promptflow's Microsoft Entra ID
//! mode): a token for scope `https://cognitiveservices.azure.com/.default` from the standard
//! Azure identity variables, tried in the order `DefaultAzureCredential` tries them:
//!
//! 1. a service principal's secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_CLIENT_SECRET`): the client-credentials flow at
//!    `{AZURE_AUTHORITY_HOST}/{tenant}/oauth2/v2.0/token`;
//! 2. workload identity (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`):
//!    the same endpoint, the file's token (read anew each time: it rotates) as the client
//!    assertion;
//! 3. managed identity as App Service, Functions and Container Apps give it (`IDENTITY_ENDPOINT`,
//!    `IDENTITY_HEADER`; `AZURE_CLIENT_ID` picks a user-assigned identity).
//!
//! The token is cached until shortly before it expires and sent as `Authorization: Bearer`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{EnvVars, Secret};

/// The `auth_mode` value that asks for an Entra ID token instead of a key.
pub const MEID_TOKEN: &str = "meid_token";
/// The scope of Azure OpenAI (Cognitive Services) tokens.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// The resource managed identity endpoints take instead of a scope.
const RESOURCE: &str = "https://cognitiveservices.azure.com";
/// Where tokens come from when `AZURE_AUTHORITY_HOST` is unset.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The service principal's variables, named when none of the ways is configured.
pub const REQUIRED_VARS: [&str; 3] = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];
/// A token is renewed this long before it expires.
const EARLY: Duration = Duration::from_secs(120);

/// Where the token comes from.
#[derive(Clone)]
pub enum Credential {
    /// `AZURE_CLIENT_SECRET`: the client-credentials flow.
    Secret(Secret),
    /// `AZURE_FEDERATED_TOKEN_FILE`: workload identity, the file's token as client assertion.
    FederatedTokenFile(PathBuf),
    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`: the platform's managed identity endpoint.
    ManagedIdentity { endpoint: String, header: Secret },
}

/// The identity the Azure identity variables give.
#[derive(Clone)]
pub struct Identity {
    /// `AZURE_AUTHORITY_HOST` without a trailing slash.
    pub authority: String,
    /// `AZURE_TENANT_ID` (empty for a managed identity).
    pub tenant: String,
    /// `AZURE_CLIENT_ID` (empty for a system-assigned managed identity).
    pub client_id: String,
    /// How the token is asked for.
    pub credential: Credential,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("authority", &self.authority)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("credential", &self.kind())
            .finish()
    }
}

impl Identity {
    /// The identity the variables give (the first way configured, in `DefaultAzureCredential`'s
    /// order), or the names of the service principal's variables that are missing.
    pub fn from_env(env: &EnvVars) -> Result<Identity, Vec<&'static str>> {
        let get = |name: &str| env.get(name).map(str::trim).filter(|v| !v.is_empty());
        let authority = get("AZURE_AUTHORITY_HOST")
            .unwrap_or(DEFAULT_AUTHORITY)
            .trim_end_matches('/')
            .to_string();
        let (tenant, client_id) = (get("AZURE_TENANT_ID"), get("AZURE_CLIENT_ID"));
        let credential = match (tenant, client_id) {
            (Some(_), Some(_)) => match (
                get("AZURE_CLIENT_SECRET"),
                get("AZURE_FEDERATED_TOKEN_FILE"),
            ) {
                (Some(secret), _) => Some(Credential::Secret(Secret::new(secret))),
                (None, Some(file)) => Some(Credential::FederatedTokenFile(PathBuf::from(file))),
                (None, None) => None,
            },
            _ => None,
        };
        let credential = credential.or_else(|| {
            let (endpoint, header) = (get("IDENTITY_ENDPOINT")?, get("IDENTITY_HEADER")?);
            Some(Credential::ManagedIdentity {
                endpoint: endpoint.to_string(),
                header: Secret::new(header),
            })
        });
        let Some(credential) = credential else {
            return Err(REQUIRED_VARS
                .iter()
                .copied()
                .filter(|v| get(v).is_none())
                .collect());
        };
        Ok(Identity {
            authority,
            tenant: tenant.unwrap_or_default().to_string(),
            client_id: client_id.unwrap_or_default().to_string(),
            credential,
        })
    }

    /// Which way the token comes, as messages name it.
    pub fn kind(&self) -> &'static str {
        match self.credential {
            Credential::Secret(_) => "service principal (AZURE_CLIENT_SECRET)",
            Credential::FederatedTokenFile(_) => "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
            Credential::ManagedIdentity { .. } => "managed identity (IDENTITY_ENDPOINT)",
        }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        match &self.credential {
            Credential::ManagedIdentity { endpoint, .. } => endpoint.clone(),
            _ => format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant),
        }
    }

    /// The variables to check when the endpoint refuses.
    fn variables(&self) -> &'static str {
        match self.credential {
            Credential::Secret(_) => "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
            Credential::FederatedTokenFile(_) => {
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and the token in AZURE_FEDERATED_TOKEN_FILE"
            }
            Credential::ManagedIdentity { .. } => {
                "IDENTITY_ENDPOINT, IDENTITY_HEADER and (for a user-assigned identity) AZURE_CLIENT_ID"
            }
        }
    }

    fn cache_key(&self) -> String {
        format!("{}\u{0}{}", self.token_url(), self.client_id)
    }

    /// Secret text the endpoint's reply must never echo into a message.
    fn secret_text(&self) -> Option<&str> {
        match &self.credential {
            Credential::Secret(s) => Some(s.expose()),
            Credential::ManagedIdentity { header, .. } => Some(header.expose()),
            Credential::FederatedTokenFile(_) => None,
        }
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
        "the Entra ID token endpoint {url} gave no token (HTTP {status}): {message}; check {check}"
    )]
    Refused {
        /// The token endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The endpoint's `error_description`, else `error`, else an excerpt.
        message: String,
        /// The variables to check.
        check: &'static str,
    },
    /// The workload identity's token file could not be read.
    #[error("cannot read AZURE_FEDERATED_TOKEN_FILE {}: {message}", .path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What failed.
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
    let network = |e: reqwest::Error| TokenError::Network {
        url: url.clone(),
        message: e.without_url().to_string(),
    };
    // the workload identity's token, a credential too: never echoed into a message
    let mut assertion = String::new();
    let request = match &id.credential {
        Credential::Secret(secret) => http.post(&url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id.client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", SCOPE),
        ]),
        Credential::FederatedTokenFile(path) => {
            assertion = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| TokenError::TokenFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?
                .trim()
                .to_string();
            http.post(&url).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id.client_id.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
                ("scope", SCOPE),
            ])
        }
        Credential::ManagedIdentity { header, .. } => {
            let mut query = vec![("api-version", "2019-08-01"), ("resource", RESOURCE)];
            if !id.client_id.is_empty() {
                query.push(("client_id", id.client_id.as_str()));
            }
            http.get(&url)
                .query(&query)
                .header("X-IDENTITY-HEADER", header.expose())
        }
    };
    let resp = request
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
            let number = |k: &str| {
                body.get(k)
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
            };
            // `expires_in` (seconds from now), or a managed identity's `expires_on` (a Unix time)
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let lifetime = number("expires_in")
                .or_else(|| number("expires_on").map(|at| at.saturating_sub(now)))
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
            let message = [id.secret_text().unwrap_or_default(), assertion.as_str()]
                .into_iter()
                .filter(|secret| !secret.is_empty())
                .fold(message, |m, secret| m.replace(secret, "***"));
            Err(TokenError::Refused {
                url,
                status,
                message,
                check: id.variables(),
            })
        }
    }
}
