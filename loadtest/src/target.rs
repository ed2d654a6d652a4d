//! The `--url` being loaded: `http://host[:port][/base]`, resolved once to a socket address, with
//! the `Host` header to send and the path the scenarios build on.

use std::net::{SocketAddr, ToSocketAddrs};

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address (the first the resolver returns).
    pub addr: SocketAddr,
    /// `Host` header value, as written in the URL (`host` or `host:port`).
    pub host: String,
    /// The URL's path, `/` when it has none. The `get` scenario requests it as is; the OpenHQM
    /// scenarios put `/api/v1/...` after it (without its trailing `/`).
    pub path: String,
}

impl Target {
    /// Parses and resolves `url`. Only `http://` (no TLS); no user info, no fragment.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url {url:?}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], &rest[i..]), // "?q" without a path
            None => (rest, "/"),
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.is_empty() || authority.contains('@') || path.contains('#') {
            return Err(format!("--url {url:?}: expected http://host[:port][/path]"));
        }
        let with_port = if has_port(authority) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("--url {url:?}: cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url {url:?}: {authority} resolves to nothing"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path,
        })
    }

    /// `base + suffix`, where base is the URL's path without its trailing `/` and without a query.
    pub fn api_path(&self, suffix: &str) -> String {
        let base = self.path.split('?').next().unwrap_or("");
        format!("{}{suffix}", base.trim_end_matches('/'))
    }
}

fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        // "[::1]" has colons but no port; "[::1]:80" and "h:80" have one.
        Some(i) => !authority.starts_with('[') || authority[..i].ends_with(']'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_path() {
        let t = Target::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!((t.host.as_str(), t.path.as_str()), ("127.0.0.1:8000", "/"));
        assert_eq!(t.api_path("/api/v1/submit"), "/api/v1/submit");

        let t = Target::parse("http://127.0.0.1/prefix/?x=1").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path, "/prefix/?x=1");
        assert_eq!(t.api_path("/api/v1/submit"), "/prefix/api/v1/submit");

        let t = Target::parse("http://[::1]:9000/x").unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(t.host, "[::1]:9000");
        assert_eq!(Target::parse("http://[::1]").unwrap().addr.port(), 80);
    }

    #[test]
    fn refuses_what_it_cannot_load() {
        for bad in [
            "https://a:1",
            "a:1",
            "http://",
            "http://u@h:1/",
            "http://h:1/#f",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
