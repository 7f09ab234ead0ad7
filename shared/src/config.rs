//! The orgs file (`orgs.toml`) for local runs against real orgs.
//!
//! ```toml
//! [[org]]
//! org_id = "6a8b…"                       # the Genesys organization id
//! region = "eu_west_2"                   # region key or domain (mypurecloud.com, …)
//! client_id = "…"                        # OAuth client-credentials client in that org
//! client_secret_env = "ACME_GC_SECRET"   # or: client_secret_file = "/run/secrets/acme"
//! # name = "Acme Corp"                   (optional: shown next to the id)
//! # api_base_url / login_base_url replace the region's hosts (private endpoints, tests)
//! # rate_limit = 300; rate_window_secs = 60   (assumed until the API's headers say otherwise)
//! ```
//! Secrets come from an environment variable or a file, never from the orgs file itself or
//! a command-line argument.

use std::collections::HashSet;
use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::{InvalidValue, OrgId};
use crate::genesys::OrgEndpoint;
use crate::genesys::region::{api_base_url, login_base_url, region_domain};
use crate::ports::LearnedLimit;

/// One `[[org]]` entry as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgEntry {
    /// Genesys organization id.
    pub org_id: String,
    /// A display name (shown by the CLI next to the id); optional.
    #[serde(default)]
    pub name: Option<String>,
    /// Region key (`us_east_1`) or domain (`mypurecloud.com`); optional when both base URLs
    /// are given.
    #[serde(default)]
    pub region: Option<String>,
    /// Replaces `https://api.<domain>`.
    #[serde(default)]
    pub api_base_url: Option<String>,
    /// Replaces `https://login.<domain>`.
    #[serde(default)]
    pub login_base_url: Option<String>,
    /// OAuth client id.
    pub client_id: String,
    /// Name of the environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Path of a file holding the client secret (trailing newline ignored).
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// Refused: secrets never live in the orgs file.
    #[serde(default)]
    pub client_secret: Option<toml::Value>,
    /// Requests per window assumed until responses carry `inin-ratelimit-allowed`. Default 300.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Window length in seconds, assumed until a response that opens a window shows its
    /// length (`inin-ratelimit-count` 1 with `inin-ratelimit-reset`); a longer reset raises
    /// it at once. Default 60.
    #[serde(default)]
    pub rate_window_secs: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgsFile {
    #[serde(default)]
    org: Vec<OrgEntry>,
}

/// A ready-to-use org: endpoint with its secret, the assumed limit, and its token cache
/// (clones share it, so clients built from one setup reuse one access token).
#[derive(Debug, Clone)]
pub struct OrgSetup {
    /// Hosts and credentials.
    pub endpoint: OrgEndpoint,
    /// The limit assumed until the API says otherwise.
    pub limit: LearnedLimit,
    /// The org's access token, shared by every client built from this setup.
    pub tokens: std::sync::Arc<crate::genesys::TokenCache>,
}

/// A problem with the orgs file: names the org (when known) and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// One org entry is wrong.
    #[error("org {org}: {error}")]
    Org {
        /// The org id as written (or `#N` for the N-th entry).
        org: String,
        /// The field and the fix.
        error: InvalidValue,
    },
}

/// Reads and validates an orgs file; resolves every secret. No network access.
pub fn load_orgs(path: &Path) -> Result<Vec<OrgSetup>, ConfigError> {
    let file_err = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let file: OrgsFile = toml::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    if file.org.is_empty() {
        return Err(file_err("no [[org]] entries".into()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, entry) in file.org.iter().enumerate() {
        let label = if entry.org_id.is_empty() {
            format!("#{}", i + 1)
        } else {
            entry.org_id.clone()
        };
        let setup = entry
            .resolve(|name| std::env::var(name).ok())
            .map_err(|error| ConfigError::Org {
                org: label.clone(),
                error,
            })?;
        if !seen.insert(setup.endpoint.org_id.clone()) {
            return Err(ConfigError::Org {
                org: label,
                error: InvalidValue::new("org_id", "appears twice; list each org once"),
            });
        }
        out.push(setup);
    }
    Ok(out)
}

impl OrgEntry {
    /// Validates the entry and reads its secret (`env` looks up environment variables).
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<OrgSetup, InvalidValue> {
        let org_id: OrgId = self.org_id.parse()?;
        if self.client_secret.is_some() {
            return Err(InvalidValue::new(
                "client_secret",
                "secrets are not read from the orgs file: use client_secret_env or client_secret_file",
            ));
        }
        let domain = match &self.region {
            Some(r) => Some(region_domain(r).ok_or_else(|| {
                InvalidValue::new(
                    "region",
                    format!("{r:?} is not a Genesys Cloud region: use a key like us_east_1 or a domain like mypurecloud.com"),
                )
            })?),
            None => None,
        };
        let (api, login) = match (&self.api_base_url, &self.login_base_url, domain) {
            (Some(a), Some(l), _) => (a.clone(), l.clone()),
            (a, l, Some(d)) => (
                a.clone().unwrap_or_else(|| api_base_url(d)),
                l.clone().unwrap_or_else(|| login_base_url(d)),
            ),
            _ => {
                return Err(InvalidValue::new(
                    "region",
                    "missing: set region, or both api_base_url and login_base_url",
                ));
            }
        };
        let secret = match (&self.client_secret_env, &self.client_secret_file) {
            (Some(var), None) => env(var).filter(|s| !s.is_empty()).ok_or_else(|| {
                InvalidValue::new(
                    "client_secret_env",
                    format!("environment variable {var} is not set (or empty): export it with the client secret"),
                )
            })?,
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| {
                    InvalidValue::new("client_secret_file", format!("cannot read {file}: {e}"))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (Some(_), Some(_)) => {
                return Err(InvalidValue::new(
                    "client_secret_env",
                    "set either client_secret_env or client_secret_file, not both",
                ));
            }
            (None, None) => {
                return Err(InvalidValue::new(
                    "client_secret_env",
                    "missing: set client_secret_env (an environment variable name) or client_secret_file",
                ));
            }
        };
        if secret.is_empty() {
            return Err(InvalidValue::new(
                "client_secret_file",
                "the secret file is empty",
            ));
        }
        let window_secs = self.rate_window_secs.unwrap_or(60.0);
        if !(window_secs.is_finite() && window_secs > 0.0) {
            return Err(InvalidValue::new(
                "rate_window_secs",
                "must be a positive number of seconds",
            ));
        }
        let allowed = self.rate_limit.unwrap_or(300);
        if allowed == 0 {
            return Err(InvalidValue::new("rate_limit", "must be at least 1"));
        }
        let region = domain.map(str::to_owned).unwrap_or_else(|| "custom".into());
        Ok(OrgSetup {
            endpoint: OrgEndpoint::new(
                org_id,
                region,
                &api,
                &login,
                self.client_id.clone(),
                SecretString::from(secret),
            )?,
            limit: LearnedLimit {
                allowed,
                window_ms: (window_secs * 1000.0).round() as u64,
            },
            tokens: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses one entry written on one line (`key = "v" key = "v"`).
    fn entry(toml_text: &str) -> OrgEntry {
        toml::from_str(&toml_text.replace("\" ", "\"\n")).unwrap()
    }

    #[test]
    fn resolves_region_and_env_secret() {
        let e = entry(
            r#"org_id = "org-1"
               region = "ap-southeast-1"
               client_id = "cid"
               client_secret_env = "SECRET_X""#,
        );
        let s = e
            .resolve(|n| (n == "SECRET_X").then(|| "s3cret".into()))
            .unwrap();
        assert_eq!(
            s.endpoint.api_base_url.as_str(),
            "https://api.apse1.pure.cloud/"
        );
        assert_eq!(
            s.endpoint.login_base_url.as_str(),
            "https://login.apse1.pure.cloud/"
        );
        assert_eq!(s.endpoint.region, "apse1.pure.cloud");
        assert_eq!(
            s.limit,
            LearnedLimit {
                allowed: 300,
                window_ms: 60_000
            }
        );
        // The secret never shows in Debug output.
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn names_the_field_of_each_mistake() {
        let cases = [
            (
                r#"org_id = "o" region = "mars" client_id = "c" client_secret_env = "S""#,
                "region",
            ),
            (
                r#"org_id = "o" client_id = "c" client_secret_env = "S""#,
                "region",
            ),
            (
                r#"org_id = "o" region = "us_east_1" client_id = "c""#,
                "client_secret_env",
            ),
            (
                r#"org_id = "o" region = "us_east_1" client_id = "c" client_secret_env = "UNSET""#,
                "client_secret_env",
            ),
            (
                r#"org_id = "o" region = "us_east_1" client_id = "c" client_secret = "x""#,
                "client_secret",
            ),
            (
                r#"org_id = "a/b" region = "us_east_1" client_id = "c" client_secret_env = "S""#,
                "org_id",
            ),
            (
                r#"org_id = "o" api_base_url = "http://example.com" login_base_url = "http://127.0.0.1:1" client_id = "c" client_secret_env = "S""#,
                "api_base_url",
            ),
            (
                r#"org_id = "o" region = "us_east_1" client_id = "" client_secret_env = "S""#,
                "client_id",
            ),
            (
                r#"org_id = "o" region = "us_east_1" client_id = "c" client_secret_env = "S" rate_window_secs = 0"#,
                "rate_window_secs",
            ),
        ];
        for (text, field) in cases {
            let err = entry(text)
                .resolve(|n| (n == "S").then(|| "x".into()))
                .unwrap_err();
            assert_eq!(err.field, field, "{text}: {err}");
        }
    }

    #[test]
    fn load_reports_duplicates_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orgs.toml");
        std::fs::write(&path, "[[org]]\norg_id = \"o\"\nregion = \"us_east_1\"\nclient_id = \"c\"\nclient_secret_file = \"/nonexistent/x\"\n").unwrap();
        let err = load_orgs(&path).unwrap_err().to_string();
        assert!(err.starts_with("org o: client_secret_file"), "{err}");
        std::fs::write(&path, "[[org]]\norg_id = \"o\"\nregoin = \"us_east_1\"\n").unwrap();
        let err = load_orgs(&path).unwrap_err().to_string();
        assert!(err.contains("regoin"), "{err}");
    }
}
