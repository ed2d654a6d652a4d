//! One upstream endpoint as the processor uses it, built from its configuration when the broker
//! starts: the host resolved (before any shard runs, so no shard waits on DNS at start; every
//! address kept, since `localhost` may name `::1` before `127.0.0.1`; each shard's pool looks
//! it up again off its thread every `proxy.dns_refresh_seconds`),
//! secrets read from their files, the auth header computed, the forwarding rules lower-cased.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use crate::config::proxy::{AuthType, EndpointConfig, ProxyConfig, Secret};
use crate::config::ConfigError;
use crate::upstream::{is_header_name, is_header_value};

/// Headers that belong to one connection (RFC 9110 §7.6.1) or to the framing: never forwarded,
/// never kept from a response.
pub(crate) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
];

/// An endpoint ready to send to.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Its name (the processor's).
    pub(crate) name: String,
    /// Where it listens: every address the host resolved to at start, tried in order.
    pub(crate) addrs: Vec<SocketAddr>,
    /// The host name and port looked up again every `dns_refresh`.
    pub(crate) lookup: (String, u16),
    /// How often the host name is looked up again.
    pub(crate) dns_refresh: Duration,
    /// `Host` header value.
    pub(crate) host: String,
    /// Path and query.
    pub(crate) target: String,
    /// Method unless the job names one.
    pub(crate) method: String,
    /// Deadline of one attempt.
    pub(crate) timeout: Duration,
    /// The endpoint's own headers.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// The auth header, added last (auth always wins).
    pub(crate) auth: Option<(String, Secret)>,
    /// Statuses retried.
    pub(crate) retry_on: Vec<u16>,
    /// Keep-alive connections per shard.
    pub(crate) max_connections: usize,
    /// Forward every request header (but the stripped and hop-by-hop ones).
    pub(crate) forward_all: bool,
    /// Request headers forwarded (lower case).
    pub(crate) forward: Vec<String>,
    /// Request headers never forwarded (lower case).
    pub(crate) strip: Vec<String>,
    /// Largest response body.
    pub(crate) max_response_bytes: usize,
    /// For `https://`: the TLS client configuration and the name the certificate must show.
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

impl Endpoint {
    /// Builds endpoint `name` of `proxy`. Errors name the key.
    pub(crate) fn build(
        name: &str,
        e: &EndpointConfig,
        proxy: &ProxyConfig,
    ) -> Result<Endpoint, ConfigError> {
        let key = |k: &str| format!("proxy.endpoints.{name}.{k}");
        let url = e
            .url
            .as_deref()
            .ok_or_else(|| ConfigError(format!("{}: required", key("url"))))?;
        let (https, host, port, target) =
            split_url(url).map_err(|m| ConfigError(format!("{}: {m}", key("url"))))?;
        let tls = if https {
            let config = crate::tls::client_config(e.ca_file.as_deref())
                .map_err(|m| ConfigError(format!("{}: {m}", key("ca_file"))))?;
            rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| ConfigError(format!("{}: bad host name {host:?}", key("url"))))?;
            Some((config, host.clone()))
        } else {
            None
        };
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        if addrs.is_empty() {
            return Err(ConfigError(format!(
                "{}: cannot resolve host {host:?}",
                key("url")
            )));
        }
        let read = |file: &Option<String>, value: &Option<Secret>, k: &str| match file {
            Some(path) => std::fs::read_to_string(path)
                .map(|s| Some(Secret(s.trim_end_matches(['\r', '\n']).to_owned())))
                .map_err(|err| ConfigError(format!("{}: cannot read {path}: {err}", key(k)))),
            None => Ok(value.clone()),
        };
        let token = read(&e.auth_token_file, &e.auth_token, "auth_token_file")?;
        let auth = match e.auth_type {
            None => None,
            Some(AuthType::Bearer) => Some((
                "authorization".to_owned(),
                Secret(format!("Bearer {}", token.unwrap_or_default().0)),
            )),
            Some(AuthType::Basic) => {
                let password = read(&e.auth_password_file, &e.auth_password, "auth_password_file")?;
                let pair = format!(
                    "{}:{}",
                    e.auth_username.clone().unwrap_or_default(),
                    password.unwrap_or_default().0
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Some(("authorization".to_owned(), Secret(format!("Basic {encoded}"))))
            }
            Some(AuthType::ApiKey | AuthType::Custom) => Some((
                e.auth_header_name
                    .clone()
                    .unwrap_or_else(|| "X-API-Key".to_owned()),
                token.unwrap_or_default(),
            )),
        };
        for (h, v) in &e.headers {
            check_header(h, v.as_bytes()).map_err(|m| ConfigError(format!("{}: {m}", key("headers"))))?;
        }
        if let Some((h, v)) = &auth {
            let k = if e.auth_header_name.is_some() {
                "auth_header_name"
            } else {
                "auth_type"
            };
            check_header(h, b"").map_err(|m| ConfigError(format!("{}: {m}", key(k))))?;
            if !is_header_value(v.0.as_bytes()) {
                // The message names the key, never the value.
                return Err(ConfigError(format!(
                    "{}: the secret holds a line break or NUL",
                    key("auth_token")
                )));
            }
        }
        Ok(Endpoint {
            name: name.to_owned(),
            addrs,
            lookup: (host.clone(), port),
            dns_refresh: proxy.dns_refresh,
            host: {
                // An IPv6 literal keeps its brackets in `Host`.
                let h = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                if port == if https { 443 } else { 80 } {
                    h
                } else {
                    format!("{h}:{port}")
                }
            },
            target,
            method: e.method.clone(),
            timeout: e.timeout,
            headers: e
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect(),
            auth,
            retry_on: e.retry_on.clone(),
            max_connections: e.max_connections,
            forward_all: proxy.forward_headers.iter().any(|h| h == "*"),
            forward: proxy.forward_headers.clone(),
            strip: proxy.strip_headers.clone(),
            max_response_bytes: proxy.max_response_bytes,
            tls,
        })
    }

    /// Whether the request header `name` (lower case) goes upstream.
    pub(crate) fn forwards(&self, name: &str) -> bool {
        (self.forward_all || self.forward.iter().any(|f| f == name))
            && !self.strip.iter().any(|s| s == name)
            && !HOP_BY_HOP.contains(&name)
            && name != "x-correlation-id"
            && self
                .auth
                .as_ref()
                .is_none_or(|(h, _)| !h.eq_ignore_ascii_case(name))
    }
}

/// A header an endpoint may set: a token name, a value without line breaks or NUL, and not one
/// the client sets itself (`Host` comes from the URL, the framing headers from the body,
/// `X-Correlation-ID` from the job).
fn check_header(name: &str, value: &[u8]) -> Result<(), String> {
    if !is_header_name(name) {
        return Err(format!("{name:?} is not a header name"));
    }
    let lower = name.to_ascii_lowercase();
    if HOP_BY_HOP.contains(&lower.as_str()) || lower == "x-correlation-id" {
        return Err(format!("{name} is set by the broker, not by the configuration"));
    }
    if !is_header_value(value) {
        return Err(format!("the value of {name} holds a line break or NUL"));
    }
    Ok(())
}

/// `http(s)://host[:port][/path[?query]]` → whether TLS, host, port, target.
fn split_url(url: &str) -> Result<(bool, String, u16, String), String> {
    crate::config::proxy::check_url(url)?;
    let https = url.starts_with("https://");
    let rest = if https {
        &url["https://".len()..]
    } else {
        &url["http://".len()..]
    };
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let default_port = if https { 443 } else { 80 };
    let (host, port_text) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| "unclosed [ in the host".to_owned())?;
        (h, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port_text {
        None => default_port,
        Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    Ok((https, host.to_owned(), port, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://127.0.0.1:9000/invoice?x=1").unwrap(),
            (false, "127.0.0.1".into(), 9000, "/invoice?x=1".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            (false, "localhost".into(), 80, "/".into())
        );
        assert_eq!(
            split_url("http://[::1]:8080/a").unwrap(),
            (false, "::1".into(), 8080, "/a".into())
        );
        assert_eq!(
            split_url("https://api.example/x").unwrap(),
            (true, "api.example".into(), 443, "/x".into())
        );
        assert_eq!(
            split_url("http://[::1]/a").unwrap(),
            (false, "::1".into(), 80, "/a".into())
        );
        assert!(split_url("http://h:x/").is_err());
        assert!(split_url("ftp://h/").is_err());
    }

    #[test]
    fn auth_headers_and_forwarding_rules() {
        let mut p = ProxyConfig {
            forward_headers: vec!["x-tenant".into(), "authorization".into()],
            strip_headers: vec!["x-secret".into()],
            ..ProxyConfig::default()
        };
        let mut e = EndpointConfig {
            url: Some("http://127.0.0.1:9/x".into()),
            auth_type: Some(AuthType::Basic),
            auth_username: Some("u".into()),
            auth_password: Some(Secret("p".into())),
            ..EndpointConfig::default()
        };
        let ep = Endpoint::build("b", &e, &p).unwrap();
        let (name, value) = ep.auth.clone().unwrap();
        assert_eq!((name.as_str(), value.0.as_str()), ("authorization", "Basic dTpw"));
        assert!(ep.forwards("x-tenant"));
        assert!(!ep.forwards("authorization"), "auth always wins");
        assert!(!ep.forwards("accept"), "not in the allow list");
        p.forward_headers = vec!["*".into()];
        e.auth_type = None;
        let ep = Endpoint::build("b", &e, &p).unwrap();
        assert!(ep.forwards("accept"));
        assert!(!ep.forwards("x-secret"));
        assert!(!ep.forwards("connection"));
        assert!(!ep.forwards("x-correlation-id"));
        assert!(!format!("{ep:?}").contains("dTpw"));
    }

    #[test]
    fn endpoint_headers_are_checked_at_start() {
        let p = ProxyConfig::default();
        for (h, v) in [
            ("Host", "api.internal"),
            ("X Bad", "1"),
            ("X-A", "1\r\nX-B: 2"),
            ("X-Correlation-ID", "x"),
        ] {
            let e = EndpointConfig {
                url: Some("http://127.0.0.1:9/x".into()),
                headers: vec![(h.into(), v.into())],
                ..EndpointConfig::default()
            };
            let err = Endpoint::build("b", &e, &p).unwrap_err();
            assert!(err.0.contains("proxy.endpoints.b.headers"), "{h}: {err}");
        }
        let e = EndpointConfig {
            url: Some("http://127.0.0.1:9/x".into()),
            auth_type: Some(AuthType::Bearer),
            auth_token: Some(Secret("to\nken".into())),
            ..EndpointConfig::default()
        };
        let err = Endpoint::build("b", &e, &p).unwrap_err();
        assert!(err.0.contains("auth_token") && !err.0.contains("to\nken"), "{err}");
    }
}
