//! `auth.*`: API keys (API.md, "Authentication"). Keys are configured as `sha256:<hex>` digests,
//! in the value itself or in files read when the broker starts; a key's own text is never
//! configured, stored or logged.

use super::ConfigError;
use crate::auth::KeyDigest;

/// The API-key settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthConfig {
    /// `auth.api_keys`: digests of the keys that may use the API.
    pub api_keys: Vec<KeyDigest>,
    /// `auth.api_keys_file`: a file of more digests, one per line.
    pub api_keys_file: Option<String>,
    /// `auth.admin_keys`: digests of the keys that may also use the dead-letter admin.
    pub admin_keys: Vec<KeyDigest>,
    /// `auth.admin_keys_file`: a file of more admin digests.
    pub admin_keys_file: Option<String>,
    /// `auth.protect_metrics`: `/metrics` needs a key too.
    pub protect_metrics: bool,
    /// `auth.rate_limit_per_second`: requests per second per key (all shards together).
    pub rate_limit_per_second: Option<f64>,
}

impl AuthConfig {
    /// Whether any key source is configured (auth is then on, even if a file turns out empty).
    pub fn enabled(&self) -> bool {
        !self.api_keys.is_empty()
            || !self.admin_keys.is_empty()
            || self.api_keys_file.is_some()
            || self.admin_keys_file.is_some()
    }
}

/// Sets one `auth.*` key.
pub(super) fn set(a: &mut AuthConfig, name: &str, v: &str) -> Result<(), ConfigError> {
    let file = || (!v.is_empty()).then(|| v.to_owned());
    match name {
        "auth.api_keys" => a.api_keys = digests(name, v)?,
        "auth.admin_keys" => a.admin_keys = digests(name, v)?,
        "auth.api_keys_file" => a.api_keys_file = file(),
        "auth.admin_keys_file" => a.admin_keys_file = file(),
        "auth.protect_metrics" => a.protect_metrics = super::keys::boolean(name, v)?,
        "auth.rate_limit_per_second" => {
            a.rate_limit_per_second = match v.parse::<f64>() {
                Ok(0.0) => None,
                Ok(r) if r.is_finite() && r > 0.0 => Some(r),
                _ => {
                    return Err(ConfigError(format!(
                    "{name}: invalid value {v:?}: expected requests per second, > 0 (0 = no limit)"
                )))
                }
            }
        }
        _ => return Err(ConfigError(format!("unknown configuration key {name:?}"))),
    }
    Ok(())
}

/// A list of digests, comma-separated or a TOML/JSON list. Errors name the key and the item's
/// position, not its text.
fn digests(name: &str, v: &str) -> Result<Vec<KeyDigest>, ConfigError> {
    super::proxy::list(name, v)
        .map_err(|_| ConfigError(format!("{name}: expected a list of sha256:<hex> digests")))?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            KeyDigest::parse(item).map_err(|e| ConfigError(format!("{name}[{i}]: {e}")))
        })
        .collect()
}

/// The digests in a keys file: one per line; blank lines and `#` comments are skipped.
pub fn parse_keys_file(name: &str, text: &str) -> Result<Vec<KeyDigest>, ConfigError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i, line.split('#').next().unwrap_or("").trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            KeyDigest::parse(line).map_err(|e| ConfigError(format!("{name}, line {}: {e}", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_digests_in_either_form() {
        let (a, b) = (KeyDigest::of(b"a"), KeyDigest::of(b"b"));
        let mut c = AuthConfig::default();
        set(&mut c, "auth.api_keys", &format!("{a}, {b}")).unwrap();
        assert_eq!(c.api_keys, vec![a, b]);
        set(&mut c, "auth.admin_keys", &format!("[\"{b}\"]")).unwrap();
        assert_eq!(c.admin_keys, vec![b]);
        assert!(c.enabled());
    }

    #[test]
    fn a_plain_key_is_refused_without_echoing_it() {
        let mut c = AuthConfig::default();
        let e = set(&mut c, "auth.api_keys", "s3cret-key").unwrap_err();
        assert!(e.0.contains("auth.api_keys[0]"), "{e}");
        assert!(!e.0.contains("s3cret"), "{e}");
    }

    #[test]
    fn keys_file_lines_comments_and_errors() {
        let a = KeyDigest::of(b"a");
        let text = format!("# team a\n{a}  # ci\n\n");
        assert_eq!(parse_keys_file("f", &text).unwrap(), vec![a]);
        let e = parse_keys_file("auth.api_keys_file", &format!("{a}\nnope\n")).unwrap_err();
        assert!(e.0.contains("line 2"), "{e}");
    }

    #[test]
    fn rate_limit_zero_is_off() {
        let mut c = AuthConfig::default();
        set(&mut c, "auth.rate_limit_per_second", "0").unwrap();
        assert_eq!(c.rate_limit_per_second, None);
        set(&mut c, "auth.rate_limit_per_second", "2.5").unwrap();
        assert_eq!(c.rate_limit_per_second, Some(2.5));
        assert!(set(&mut c, "auth.rate_limit_per_second", "-1").is_err());
    }
}
