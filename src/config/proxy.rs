//! The `proxy.*` keys: proxy mode's switches and its upstream endpoints by name
//! (`proxy.endpoints.<name>.<key>`, names in lower case). Secrets are kept in [`Secret`], whose
//! `Debug` never shows them; `*_file` keys name files read when the broker starts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::ConfigError;

/// A value that must never reach a log, an error or a metric.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How requests to an endpoint authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic base64(user:password)`.
    Basic,
    /// `<auth_header_name>: <token>` (default header `X-API-Key`).
    ApiKey,
    /// `<auth_header_name>: <token>`, the header name required.
    Custom,
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// `http://host[:port][/path]`.
    pub url: Option<String>,
    /// Request method unless the job or its route names one.
    pub method: String,
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Headers every request to it carries.
    pub headers: Vec<(String, String)>,
    /// Authentication, if any.
    pub auth_type: Option<AuthType>,
    /// Token for bearer, api_key and custom.
    pub auth_token: Option<Secret>,
    /// File holding the token (trailing newline dropped).
    pub auth_token_file: Option<String>,
    /// User name for basic.
    pub auth_username: Option<String>,
    /// Password for basic.
    pub auth_password: Option<Secret>,
    /// File holding the password.
    pub auth_password_file: Option<String>,
    /// Header carrying the token for api_key and custom.
    pub auth_header_name: Option<String>,
    /// Keep-alive connections per shard.
    pub max_connections: usize,
    /// Statuses retried with the worker backoff (connect errors and attempt timeouts always are).
    pub retry_on: Vec<u16>,
    /// PEM file of certificates trusted for `https://` besides the system's roots.
    pub ca_file: Option<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            url: None,
            method: "POST".to_owned(),
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
            auth_type: None,
            auth_token: None,
            auth_token_file: None,
            auth_username: None,
            auth_password: None,
            auth_password_file: None,
            auth_header_name: None,
            max_connections: 64,
            retry_on: vec![429, 502, 503, 504],
            ca_file: None,
        }
    }
}

/// `proxy.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Whether proxy mode is on: the endpoints are registered as processors.
    pub enabled: bool,
    /// The endpoint (a name, or a URL) of jobs that name none.
    pub default_endpoint: Option<String>,
    /// Request headers forwarded (lower case; `*` = all).
    pub forward_headers: Vec<String>,
    /// Request headers never forwarded (lower case).
    pub strip_headers: Vec<String>,
    /// Largest upstream response body.
    pub max_response_bytes: usize,
    /// How often each shard looks an endpoint's host name up again.
    pub dns_refresh: Duration,
    /// The endpoints by name.
    pub endpoints: BTreeMap<String, EndpointConfig>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            enabled: false,
            default_endpoint: None,
            forward_headers: vec!["content-type".into(), "accept".into(), "user-agent".into()],
            strip_headers: Vec::new(),
            max_response_bytes: 10 << 20,
            dns_refresh: Duration::from_secs(30),
            endpoints: BTreeMap::new(),
        }
    }
}

/// Sets one `proxy.*` key.
pub(super) fn set(p: &mut ProxyConfig, name: &str, v: &str) -> Result<(), ConfigError> {
    match name {
        "proxy.enabled" => p.enabled = super::keys::boolean(name, v)?,
        "proxy.default_endpoint" => {
            p.default_endpoint = (!v.is_empty()).then(|| v.to_owned());
        }
        "proxy.forward_headers" => p.forward_headers = lower(list(name, v)?),
        "proxy.strip_headers" => p.strip_headers = lower(list(name, v)?),
        "proxy.max_response_bytes" => {
            p.max_response_bytes = super::keys::int(name, v, 1, 1 << 32)? as usize
        }
        "proxy.dns_refresh_seconds" => p.dns_refresh = super::keys::secs(name, v)?,
        _ => {
            let rest = name
                .strip_prefix("proxy.endpoints.")
                .ok_or_else(|| unknown(name))?;
            let (endpoint, key) = rest.split_once('.').ok_or_else(|| unknown(name))?;
            let endpoint = endpoint.to_ascii_lowercase();
            let valid = !endpoint.is_empty()
                && endpoint.len() <= 64
                && endpoint
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(ConfigError(format!(
                    "{name}: endpoint names are 1-64 characters of [a-z0-9_-]"
                )));
            }
            let e = p.endpoints.entry(endpoint).or_default();
            set_endpoint(e, name, key, v)?;
        }
    }
    Ok(())
}

fn set_endpoint(e: &mut EndpointConfig, name: &str, key: &str, v: &str) -> Result<(), ConfigError> {
    let text = || Some(v.to_owned()).filter(|s| !s.is_empty());
    match key {
        "url" => e.url = text(),
        "method" => {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(invalid(name, v, "an HTTP method such as POST"));
            }
            e.method = v.to_ascii_uppercase();
        }
        "timeout_seconds" => e.timeout = super::keys::secs(name, v)?,
        "headers" => e.headers = map(name, v)?,
        "auth_type" => {
            e.auth_type = Some(match v.to_ascii_lowercase().as_str() {
                "bearer" => AuthType::Bearer,
                "basic" => AuthType::Basic,
                "api_key" => AuthType::ApiKey,
                "custom" => AuthType::Custom,
                _ => return Err(invalid(name, v, "bearer, basic, api_key or custom")),
            })
        }
        "auth_token" => e.auth_token = text().map(Secret),
        "auth_token_file" => e.auth_token_file = text(),
        "auth_username" => e.auth_username = text(),
        "auth_password" => e.auth_password = text().map(Secret),
        "auth_password_file" => e.auth_password_file = text(),
        "auth_header_name" => e.auth_header_name = text(),
        "ca_file" => e.ca_file = text(),
        "max_connections" => e.max_connections = super::keys::int(name, v, 1, 100_000)? as usize,
        "retry_on" => {
            e.retry_on = list(name, v)?
                .iter()
                .map(|s| match s.parse::<u16>() {
                    Ok(code) if (100..=599).contains(&code) => Ok(code),
                    _ => Err(invalid(name, v, "HTTP status codes")),
                })
                .collect::<Result<_, _>>()?
        }
        _ => return Err(unknown(name)),
    }
    Ok(())
}

/// Checks what spans keys; `enabled` only.
pub(super) fn validate(p: &ProxyConfig) -> Result<(), ConfigError> {
    if !p.enabled {
        return Ok(());
    }
    for (name, e) in &p.endpoints {
        let key = |k: &str| format!("proxy.endpoints.{name}.{k}");
        let Some(url) = &e.url else {
            return Err(ConfigError(format!("{}: required", key("url"))));
        };
        crate::config::proxy::check_url(url)
            .map_err(|m| ConfigError(format!("{}: {m}", key("url"))))?;
        let has_token = e.auth_token.is_some() || e.auth_token_file.is_some();
        match e.auth_type {
            None => {}
            Some(AuthType::Bearer | AuthType::ApiKey) if !has_token => {
                return Err(ConfigError(format!(
                    "{}: required by auth_type",
                    key("auth_token")
                )))
            }
            Some(AuthType::Custom) if !has_token || e.auth_header_name.is_none() => {
                return Err(ConfigError(format!(
                    "{} and {}: required by auth_type custom",
                    key("auth_token"),
                    key("auth_header_name")
                )))
            }
            Some(AuthType::Basic)
                if e.auth_username.is_none()
                    || (e.auth_password.is_none() && e.auth_password_file.is_none()) =>
            {
                return Err(ConfigError(format!(
                    "{} and {}: required by auth_type basic",
                    key("auth_username"),
                    key("auth_password")
                )))
            }
            Some(_) => {}
        }
    }
    match &p.default_endpoint {
        Some(d) if !p.endpoints.contains_key(d) && check_url(d).is_err() => {
            Err(ConfigError(format!(
                "proxy.default_endpoint: {:?} is neither an endpoint name nor an http(s):// URL",
                super::redact_url(d)
            )))
        }
        _ => Ok(()),
    }
}

/// An upstream URL the client can reach: `http(s)://host[:port][/path]`.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| "expected http(s)://host[:port][/path]".to_owned())?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') || url.bytes().any(|b| b <= b' ') {
        return Err("expected http(s)://host[:port][/path]".to_owned());
    }
    Ok(())
}

pub(super) fn list(name: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    if v.starts_with('[') {
        let items: Vec<serde_json::Value> =
            serde_json::from_str(v).map_err(|_| invalid(name, v, "a JSON list"))?;
        return items
            .into_iter()
            .map(|i| match i {
                serde_json::Value::String(s) => Ok(s),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                _ => Err(invalid(name, v, "a list of strings or numbers")),
            })
            .collect();
    }
    Ok(v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

fn map(name: &str, v: &str) -> Result<Vec<(String, String)>, ConfigError> {
    // The value is not repeated in the error: headers may carry credentials.
    let m: BTreeMap<String, String> = serde_json::from_str(v)
        .map_err(|_| ConfigError(format!("{name}: expected a JSON object of strings")))?;
    Ok(m.into_iter().collect())
}

fn lower(v: Vec<String>) -> Vec<String> {
    v.into_iter().map(|s| s.to_ascii_lowercase()).collect()
}

fn invalid(name: &str, v: &str, want: &str) -> ConfigError {
    ConfigError(format!("{name}: invalid value {v:?}: expected {want}"))
}

fn unknown(name: &str) -> ConfigError {
    ConfigError(format!("unknown configuration key {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_all(pairs: &[(&str, &str)]) -> Result<ProxyConfig, ConfigError> {
        let mut p = ProxyConfig::default();
        for (k, v) in pairs {
            set(&mut p, k, v)?;
        }
        validate(&p)?;
        Ok(p)
    }

    #[test]
    fn endpoints_by_name() {
        let p = set_all(&[
            ("proxy.enabled", "true"),
            ("proxy.default_endpoint", "billing"),
            ("proxy.forward_headers", "X-Tenant, Accept"),
            (
                "proxy.endpoints.Billing.url",
                "http://127.0.0.1:9000/invoice",
            ),
            ("proxy.endpoints.billing.method", "put"),
            (
                "proxy.endpoints.billing.headers",
                r#"{"X-Source":"openhqm"}"#,
            ),
            ("proxy.endpoints.billing.auth_type", "bearer"),
            ("proxy.endpoints.billing.auth_token", "s3cret"),
            ("proxy.endpoints.billing.retry_on", "[500, 503]"),
        ])
        .unwrap();
        assert_eq!(p.forward_headers, ["x-tenant", "accept"]);
        let e = &p.endpoints["billing"];
        assert_eq!(e.method, "PUT");
        assert_eq!(e.retry_on, [500, 503]);
        assert_eq!(e.headers, [("X-Source".to_owned(), "openhqm".to_owned())]);
        assert!(
            !format!("{p:?}").contains("s3cret"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn invalid_settings_name_the_key() {
        let cases: &[&[(&str, &str)]] = &[
            &[
                ("proxy.enabled", "true"),
                ("proxy.endpoints.a.method", "POST"),
            ],
            &[
                ("proxy.enabled", "true"),
                ("proxy.endpoints.a.url", "ftp://x"),
            ],
            &[
                ("proxy.enabled", "true"),
                ("proxy.endpoints.a.url", "https://user@x"),
            ],
            &[
                ("proxy.enabled", "true"),
                ("proxy.endpoints.a.url", "http://x"),
                ("proxy.endpoints.a.auth_type", "bearer"),
            ],
            &[("proxy.endpoints.a.auth_type", "magic")],
            &[("proxy.endpoints.a.retry_on", "[700]")],
            &[("proxy.endpoints.a.nope", "1")],
            &[("proxy.endpoints.a b.url", "http://x")],
            &[
                ("proxy.enabled", "true"),
                ("proxy.default_endpoint", "missing"),
            ],
        ];
        for pairs in cases {
            let e = set_all(pairs).unwrap_err();
            assert!(e.0.contains("proxy."), "{pairs:?}: {e}");
        }
    }
}
