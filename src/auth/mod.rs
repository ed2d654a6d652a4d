//! API keys (API.md, "Authentication"): who sends a request, and what it may see and do.
//!
//! `digest` is how keys are stored (SHA-256, compared in constant time), `owner` how a request
//! is tied to the key that submitted it (a tag in its id), `rate` the per-key limits.

pub mod digest;
pub mod owner;
pub mod rate;

pub use digest::KeyDigest;
pub use owner::Owner;

use crate::config::auth::{parse_keys_file, AuthConfig};
use crate::config::ConfigError;

/// The keys one broker accepts, loaded once at start and shared read-only by the shards.
#[derive(Debug)]
pub struct ApiKeys {
    keys: Vec<Known>,
    /// `/metrics` needs a key.
    pub protect_metrics: bool,
    /// Requests per second per key, all shards together.
    pub rate_limit_per_second: Option<f64>,
}

#[derive(Debug)]
struct Known {
    digest: KeyDigest,
    admin: bool,
}

/// Who a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// API keys are off: everyone may do everything.
    Open,
    /// A configured key.
    Key {
        /// Its place among the configured keys (its rate-limit bucket).
        index: usize,
        /// The requests it owns.
        owner: Owner,
        /// It may use the dead-letter admin.
        admin: bool,
    },
}

impl Caller {
    /// Whether this caller may see and act on request `id`.
    pub fn owns(&self, id: &crate::id::CorrelationId) -> bool {
        match self {
            Caller::Open => true,
            Caller::Key { owner, .. } => owner.owns(id),
        }
    }

    /// The owner stamped into the ids this caller's submits get.
    pub fn owner(&self) -> Option<Owner> {
        match self {
            Caller::Open => None,
            Caller::Key { owner, .. } => Some(*owner),
        }
    }

    /// Whether this caller may use the dead-letter admin.
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Key { admin, .. } => *admin,
        }
    }
}

impl ApiKeys {
    /// The keys `c` configures, reading its files with `read`; `None` when auth is off.
    pub fn load(
        c: &AuthConfig,
        read: impl Fn(&str) -> std::io::Result<String>,
    ) -> Result<Option<ApiKeys>, ConfigError> {
        if !c.enabled() {
            return Ok(None);
        }
        let from_file =
            |name: &str, path: &Option<String>| -> Result<Vec<KeyDigest>, ConfigError> {
                match path {
                    None => Ok(Vec::new()),
                    Some(p) => {
                        let text = read(p)
                            .map_err(|e| ConfigError(format!("{name}: cannot read {p}: {e}")))?;
                        parse_keys_file(name, &text)
                    }
                }
            };
        let mut keys: Vec<Known> = Vec::new();
        let admins = c
            .admin_keys
            .iter()
            .copied()
            .chain(from_file("auth.admin_keys_file", &c.admin_keys_file)?);
        let users = c
            .api_keys
            .iter()
            .copied()
            .chain(from_file("auth.api_keys_file", &c.api_keys_file)?);
        for (digest, admin) in admins.map(|d| (d, true)).chain(users.map(|d| (d, false))) {
            // A key listed as both is an admin key; listed twice, it is one key (one bucket).
            if !keys.iter().any(|k| k.digest == digest) {
                keys.push(Known { digest, admin });
            }
        }
        if keys.is_empty() {
            return Err(ConfigError(
                "auth: key files are configured but hold no key (the API would refuse everyone)"
                    .to_owned(),
            ));
        }
        Ok(Some(ApiKeys {
            keys,
            protect_metrics: c.protect_metrics,
            rate_limit_per_second: c.rate_limit_per_second,
        }))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The caller presenting `credential`, or `None` when it is no configured key. Every
    /// configured digest is compared, each in constant time, whichever matches.
    pub fn identify(&self, credential: &[u8]) -> Option<Caller> {
        let presented = KeyDigest::of(credential);
        let mut found = None;
        for (index, k) in self.keys.iter().enumerate() {
            if k.digest.ct_eq(&presented) && found.is_none() {
                found = Some(Caller::Key {
                    index,
                    owner: Owner::of(&k.digest),
                    admin: k.admin,
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(api: &[&str], admin: &[&str]) -> AuthConfig {
        AuthConfig {
            api_keys: api.iter().map(|k| KeyDigest::of(k.as_bytes())).collect(),
            admin_keys: admin.iter().map(|k| KeyDigest::of(k.as_bytes())).collect(),
            ..AuthConfig::default()
        }
    }

    fn no_files(_: &str) -> std::io::Result<String> {
        Err(std::io::ErrorKind::NotFound.into())
    }

    #[test]
    fn off_without_keys() {
        assert!(ApiKeys::load(&AuthConfig::default(), no_files)
            .unwrap()
            .is_none());
    }

    #[test]
    fn identifies_keys_and_admins() {
        let keys = ApiKeys::load(&config(&["user", "both"], &["root", "both"]), no_files)
            .unwrap()
            .unwrap();
        assert_eq!(keys.len(), 3);
        let user = keys.identify(b"user").unwrap();
        assert!(!user.is_admin());
        assert!(keys.identify(b"root").unwrap().is_admin());
        assert!(keys.identify(b"both").unwrap().is_admin());
        assert_eq!(keys.identify(b"nobody"), None);
        assert_eq!(keys.identify(b""), None);
        assert!(Caller::Open.is_admin());
    }

    #[test]
    fn files_add_keys_and_name_themselves_in_errors() {
        let mut c = config(&[], &[]);
        c.api_keys_file = Some("/keys".into());
        let d = KeyDigest::of(b"from-file");
        let keys = ApiKeys::load(&c, |_| Ok(format!("{d}\n")))
            .unwrap()
            .unwrap();
        assert!(keys.identify(b"from-file").is_some());
        let e = ApiKeys::load(&c, no_files).unwrap_err();
        assert!(e.0.contains("auth.api_keys_file"), "{e}");
        let e = ApiKeys::load(&c, |_| Ok("# nothing yet\n".into())).unwrap_err();
        assert!(e.0.contains("hold no key"), "{e}");
    }
}
