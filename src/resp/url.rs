//! `redis://[user:pass@]host:port[/db]`, `rediss://…` (TLS) and `unix://[user:pass@]/path[?db=N]`.
//! The password is held apart and never printed: `Debug` and `Display` show `***` in its place.

use std::fmt;

/// How the connection is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP; the certificate must name `host`.
    Tls,
    /// A Unix socket at this path.
    Unix(String),
}

/// Where and how to connect to Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// TCP, TLS or a Unix socket.
    pub transport: Transport,
    /// Host name or address (empty for a Unix socket).
    pub host: String,
    /// Port.
    pub port: u16,
    /// ACL user (Redis 6+), if any.
    pub user: Option<String>,
    /// Password, if any. Never printed.
    pub password: Option<String>,
    /// Database number for `SELECT`.
    pub db: u32,
    /// CA certificates (PEM) trusted besides the system's, for `rediss://` (not from the URL:
    /// `queue.redis_ca_file`).
    pub ca_file: Option<String>,
}

impl RedisTarget {
    /// Parses a URL. Errors never repeat the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let shape = || {
            "expected redis://[user:pass@]host:port[/db], rediss://… (TLS) or \
             unix://[user:pass@]/path[?db=N]"
                .to_owned()
        };
        let (transport, rest) = if let Some(r) = url.strip_prefix("redis://") {
            (Transport::Tcp, r)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (Transport::Tls, r)
        } else if let Some(r) = url.strip_prefix("unix://") {
            (Transport::Unix(String::new()), r)
        } else {
            return Err(shape());
        };
        let (userinfo, hostpart) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = userinfo_of(userinfo)?;
        if matches!(transport, Transport::Unix(_)) {
            let (path, query) = hostpart.split_once('?').unwrap_or((hostpart, ""));
            if !path.starts_with('/') || path.len() < 2 {
                return Err(shape());
            }
            let db = match query {
                "" => 0,
                q => q
                    .strip_prefix("db=")
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(shape)?,
            };
            return Ok(RedisTarget {
                transport: Transport::Unix(path.to_owned()),
                host: String::new(),
                port: 0,
                user,
                password,
                db,
                ca_file: None,
            });
        }
        let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, ""));
        let db = if db.is_empty() {
            0
        } else {
            db.parse().map_err(|_| shape())?
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, rest) = v6.split_once(']').ok_or_else(shape)?;
            let port = rest
                .strip_prefix(':')
                .map(str::parse)
                .transpose()
                .map_err(|_| shape())?;
            (h.to_owned(), port.unwrap_or(6379))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| shape())?),
                None => (hostport.to_owned(), 6379),
            }
        };
        if host.is_empty() {
            return Err(shape());
        }
        Ok(RedisTarget {
            transport,
            host,
            port,
            user,
            password,
            db,
            ca_file: None,
        })
    }
}

/// User and password of a URL's userinfo, percent-decoded.
type Credentials = (Option<String>, Option<String>);

fn userinfo_of(userinfo: Option<&str>) -> Result<Credentials, String> {
    let decode = |part: &str, what: &str| {
        percent_decode(part).ok_or_else(|| format!("the {what} has a malformed %-escape"))
    };
    Ok(match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (
                (!user.is_empty())
                    .then(|| decode(user, "user"))
                    .transpose()?,
                Some(decode(pass, "password")?),
            ),
            None => (None, Some(decode(u, "password")?)),
        },
    })
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.transport {
            Transport::Tcp => "redis://",
            Transport::Tls => "rediss://",
            Transport::Unix(_) => "unix://",
        })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
        }
        if self.password.is_some() {
            f.write_str(":***@")?;
        } else if self.user.is_some() {
            f.write_str("@")?;
        }
        match &self.transport {
            Transport::Unix(path) => write!(f, "{path}?db={}", self.db),
            _ => write!(f, "{}:{}/{}", self.host, self.port, self.db),
        }
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `%XX` escapes of a URL's userinfo decoded (RFC 3986 §2.1), so a password may hold `@`, `:`
/// or `/`; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = RedisTarget::parse("redis://broker:s3cret@10.0.0.1:6380/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("10.0.0.1", 6380, 2));
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("broker"), Some("s3cret"))
        );
        let t = RedisTarget::parse("redis://:pw@h").unwrap();
        assert_eq!(
            (t.user, t.password.as_deref(), t.port),
            (None, Some("pw"), 6379)
        );
        let t = RedisTarget::parse("redis://[::1]:7000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        for bad in [
            "http://h",
            "redis://",
            "redis://h:x",
            "redis://h/x",
            "unix://relative/path",
            "unix:///p?db=x",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_and_unix_sockets() {
        let t = RedisTarget::parse("rediss://u:pw@redis.example:6390/1").unwrap();
        assert_eq!(t.transport, Transport::Tls);
        assert_eq!((t.host.as_str(), t.port, t.db), ("redis.example", 6390, 1));
        assert_eq!(t.to_string(), "rediss://u:***@redis.example:6390/1");
        let t = RedisTarget::parse("unix:///run/redis/redis.sock?db=3").unwrap();
        assert_eq!(t.transport, Transport::Unix("/run/redis/redis.sock".into()));
        assert_eq!((t.db, t.password), (3, None));
        let t = RedisTarget::parse("unix://:s3cret@/tmp/r.sock").unwrap();
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.to_string(), "unix://:***@/tmp/r.sock?db=0");
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let t = RedisTarget::parse("redis://us%65r:p%40ss%3Aw%2Fd@h:1").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("user"), Some("p@ss:w/d"))
        );
        for bad in ["redis://u:p%4@h", "redis://u:p%zz@h", "redis://u:%ff@h"] {
            let e = RedisTarget::parse(bad).unwrap_err();
            let secret = bad.split_once(':').unwrap().1.split_once('@').unwrap().0;
            assert!(!e.contains(secret), "the error echoes the secret: {e}");
            assert!(e.contains("%-escape"), "{e}");
        }
    }

    #[test]
    fn the_password_is_never_printed() {
        let t = RedisTarget::parse("redis://u:hunter2@h:1/0").unwrap();
        let shown = format!("{t} {t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://u:***@h:1/0"));
        let e = RedisTarget::parse("redis://u:hunter2@h:notaport").unwrap_err();
        assert!(!e.contains("hunter2"));
    }
}
