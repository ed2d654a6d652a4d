//! API keys as the broker stores them: `sha256:<hex>` digests, never the keys themselves.

use std::fmt;

/// The SHA-256 digest of an API key's bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

/// The text form's prefix.
const PREFIX: &str = "sha256:";

impl KeyDigest {
    /// The digest of `key` (the key's bytes exactly as the client sends them).
    pub fn of(key: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, key);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        KeyDigest(out)
    }

    /// Parses `sha256:` and 64 hex digits (either case). The error says what is wrong without
    /// echoing the value.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let hex = text
            .strip_prefix(PREFIX)
            .ok_or("expected sha256:<64 hex digits> (see `openhqm hash-key`)")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("expected sha256: followed by 64 hex digits");
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| "bad hex digit")?;
        }
        Ok(KeyDigest(out))
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares in time independent of where the digests differ.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not the key, but it is still nobody's business in a log line.
        f.write_str("KeyDigest(..)")
    }
}

/// What `openhqm hash-key` prints for a key read from stdin: one trailing newline (`\n` or
/// `\r\n`) is not part of the key.
pub fn hash_key_line(input: &[u8]) -> Result<String, &'static str> {
    let key = input
        .strip_suffix(b"\n")
        .map(|k| k.strip_suffix(b"\r").unwrap_or(k))
        .unwrap_or(input);
    if key.is_empty() {
        return Err(
            "empty key: pipe the key on stdin, e.g. `printf %s \"$KEY\" | openhqm hash-key`",
        );
    }
    if !key.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err("a key is printable ASCII without spaces (it travels in an HTTP header)");
    }
    Ok(KeyDigest::of(key).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FIPS 180-2 test vector for "abc".
    #[test]
    fn digest_of_abc() {
        assert_eq!(
            KeyDigest::of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_round_trips_and_refuses_bad_forms() {
        let d = KeyDigest::of(b"k1");
        assert_eq!(KeyDigest::parse(&d.to_string()), Ok(d));
        let upper = d
            .to_string()
            .to_ascii_uppercase()
            .replacen("SHA256", "sha256", 1);
        assert_eq!(KeyDigest::parse(&upper), Ok(d));
        assert!(KeyDigest::parse("k1").is_err());
        assert!(KeyDigest::parse("sha256:abcd").is_err());
        assert!(KeyDigest::parse(&format!("sha256:{}", "g".repeat(64))).is_err());
        assert!(KeyDigest::parse(&format!("md5:{}", "0".repeat(64))).is_err());
    }

    #[test]
    fn ct_eq_tells_equal_from_different() {
        let a = KeyDigest::of(b"a");
        assert!(a.ct_eq(&KeyDigest::of(b"a")));
        assert!(!a.ct_eq(&KeyDigest::of(b"b")));
    }

    #[test]
    fn hash_key_drops_one_trailing_newline_only() {
        let want = KeyDigest::of(b"secret").to_string();
        assert_eq!(hash_key_line(b"secret\n").as_deref(), Ok(want.as_str()));
        assert_eq!(hash_key_line(b"secret\r\n").as_deref(), Ok(want.as_str()));
        assert_eq!(hash_key_line(b"secret").as_deref(), Ok(want.as_str()));
        assert!(hash_key_line(b"secret\n\n").is_err());
        assert!(hash_key_line(b"\n").is_err());
        assert!(hash_key_line(b"two words").is_err());
    }
}
