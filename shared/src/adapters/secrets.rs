//! A Secrets Manager [`CredentialSource`]: one secret per org named `<prefix><org id>`
//! (e.g. `scorecards/orgs/<org id>`), its `SecretString` JSON:
//! `{"region": "eu_west_2", "client_id": "…", "client_secret": "…"}`, optionally
//! `api_base_url`, `login_base_url`, `rate_limit`, `rate_window_secs` (as in `orgs.toml`).
//! Cached for 5 minutes (a rotated secret is read within that time, or at once after the
//! org's credentials are refused); the secret is never logged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{OrgEntry, OrgSetup};
use crate::domain::OrgId;
use crate::ports::{CredentialError, CredentialSource, StoreError};

/// How long a secret read is reused.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

/// Org secrets under one name prefix.
#[derive(Debug)]
pub struct SecretsManagerCredentials {
    client: Client,
    prefix: String,
    ttl: Duration,
    cache: Mutex<HashMap<OrgId, (OrgSetup, Instant)>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgSecret {
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    api_base_url: Option<String>,
    #[serde(default)]
    login_base_url: Option<String>,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    rate_limit: Option<u32>,
    #[serde(default)]
    rate_window_secs: Option<f64>,
}

impl SecretsManagerCredentials {
    /// Secrets named `<prefix><org id>`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            ttl: SECRET_TTL,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Reuses a read secret for `ttl` instead of [`SECRET_TTL`].
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// Validates an org secret's JSON (same rules as an `orgs.toml` entry).
pub fn parse_org_secret(org_id: &OrgId, json: &str) -> Result<OrgSetup, CredentialError> {
    let invalid = |problem: String| CredentialError::Invalid {
        org: org_id.clone(),
        problem,
    };
    // Report only where and what kind of problem: serde's messages may quote a value.
    let secret: OrgSecret = serde_json::from_str(json).map_err(|e| {
        invalid(format!(
            "not the expected JSON ({:?} error at line {} column {}); expected region, client_id, client_secret and optionally api_base_url, login_base_url, rate_limit, rate_window_secs",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let entry = OrgEntry {
        org_id: org_id.to_string(),
        name: None,
        region: secret.region,
        api_base_url: secret.api_base_url,
        login_base_url: secret.login_base_url,
        client_id: secret.client_id,
        client_secret_env: Some("client_secret".into()),
        client_secret_file: None,
        client_secret: None,
        rate_limit: secret.rate_limit,
        rate_window_secs: secret.rate_window_secs,
    };
    let client_secret = secret.client_secret;
    entry
        .resolve(|_| Some(client_secret.clone()))
        .map_err(|e| invalid(e.to_string()))
}

#[async_trait]
impl CredentialSource for SecretsManagerCredentials {
    async fn org(&self, org_id: &OrgId) -> Result<OrgSetup, CredentialError> {
        let cached = self.cache.lock().await.get(org_id).cloned();
        if let Some((setup, read_at)) = &cached
            && read_at.elapsed() < self.ttl
        {
            return Ok(setup.clone());
        }
        let name = format!("{}{org_id}", self.prefix);
        let out = match self.client.get_secret_value().secret_id(&name).send().await {
            Ok(out) => out,
            Err(e) => {
                let service = e.into_service_error();
                // A secret scheduled for deletion (`orgs remove --delete-secret`) is as
                // gone as a missing one: the org's days fail for good, not retried.
                let deleted = service.is_invalid_request_exception()
                    && service.meta().message().is_some_and(|m| {
                        m.contains("marked for deletion") || m.contains("marked deleted")
                    });
                return Err(if service.is_resource_not_found_exception() || deleted {
                    CredentialError::Unknown(org_id.clone())
                } else {
                    StoreError::new(
                        "secretsmanager",
                        format!("{name}: {}", crate::adapters::aws_service_message(&service)),
                    )
                    .into()
                });
            }
        };
        let json = out
            .secret_string()
            .ok_or_else(|| CredentialError::Invalid {
                org: org_id.clone(),
                problem: "the secret has no SecretString".into(),
            })?;
        let mut setup = parse_org_secret(org_id, json)?;
        // The same client credentials keep their access token.
        if let Some((old, _)) = cached
            && old.endpoint.client_id == setup.endpoint.client_id
            && old.endpoint.client_secret.expose_secret()
                == setup.endpoint.client_secret.expose_secret()
        {
            setup.tokens = old.tokens;
        }
        self.cache
            .lock()
            .await
            .insert(org_id.clone(), (setup.clone(), Instant::now()));
        Ok(setup)
    }

    async fn forget(&self, org_id: &OrgId) {
        self.cache.lock().await.remove(org_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_without_echoing_the_secret() {
        let org: OrgId = "org-1".parse().unwrap();
        let ok = parse_org_secret(
            &org,
            r#"{"region":"eu_west_2","client_id":"c","client_secret":"s3cr3t"}"#,
        )
        .unwrap();
        assert_eq!(ok.endpoint.region, "euw2.pure.cloud");
        for bad in [
            r#"{"region":"mars","client_id":"c","client_secret":"s3cr3t"}"#,
            r#"{"region":"eu_west_2","client_id":"c","client_secret":12345678}"#,
            r#"{"region":"eu_west_2","client_id":"c","client_secret":"s3cr3t","extra":"s3cr3t"}"#,
            r#"{"region":"eu_west_2","client_id":"c""#,
        ] {
            let err = parse_org_secret(&org, bad).unwrap_err().to_string();
            assert!(
                err.starts_with("org org-1: credentials are invalid"),
                "{err}"
            );
            assert!(
                !err.contains("s3cr3t") && !err.contains("12345678"),
                "{err}"
            );
        }
    }
}
