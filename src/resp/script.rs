//! Lua scripts sent by digest (`EVALSHA`), sans-IO. A script's SHA-1 is computed here once, so
//! the common call is one short `EVALSHA`; [`Client::eval`](super::Client::eval) falls back to
//! `EVAL` with the body when Redis answers `NOSCRIPT` (a restarted Redis has an empty script
//! cache), which also caches it again.

use bytes::BytesMut;

use super::encode::command;

/// A Lua script and its SHA-1 in lowercase hex, as Redis names it.
pub struct Script {
    body: &'static [u8],
    sha: [u8; 40],
}

impl Script {
    /// Digests `body`.
    pub fn new(body: &'static [u8]) -> Script {
        let digest = sha1(body);
        let mut sha = [0u8; 40];
        for (i, b) in digest.iter().enumerate() {
            sha[2 * i] = HEX[(b >> 4) as usize];
            sha[2 * i + 1] = HEX[(b & 15) as usize];
        }
        Script { body, sha }
    }

    /// The Lua source (for tests that run a script by hand).
    #[cfg(any(test, feature = "internals"))]
    pub fn body(&self) -> &'static [u8] {
        self.body
    }

    /// The digest, as `EVALSHA` takes it (for tests that check it against Redis's).
    #[cfg(any(test, feature = "internals"))]
    pub fn sha(&self) -> &[u8] {
        &self.sha
    }

    /// Appends `EVALSHA sha numkeys keys... args...`.
    pub fn encode_evalsha(&self, out: &mut BytesMut, keys: &[&[u8]], args: &[&[u8]]) {
        self.encode(out, b"EVALSHA", &self.sha, keys, args);
    }

    /// Appends `EVAL body numkeys keys... args...`.
    pub fn encode_eval(&self, out: &mut BytesMut, keys: &[&[u8]], args: &[&[u8]]) {
        self.encode(out, b"EVAL", self.body, keys, args);
    }

    fn encode(
        &self,
        out: &mut BytesMut,
        verb: &[u8],
        script: &[u8],
        keys: &[&[u8]],
        args: &[&[u8]],
    ) {
        let mut digits = itoa::Buffer::new();
        let n = digits.format(keys.len()).as_bytes();
        let mut all: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
        all.push(verb);
        all.push(script);
        all.push(n);
        all.extend_from_slice(keys);
        all.extend_from_slice(args);
        command(out, &all);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// SHA-1 (RFC 3174). Used only to name scripts the way Redis does, never for security.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(data: &'static [u8]) -> String {
        String::from_utf8(Script::new(data).sha().to_vec()).unwrap()
    }

    #[test]
    fn sha1_matches_the_rfc_3174_vectors() {
        assert_eq!(hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        // One block exactly filled by the length, and a message spanning blocks.
        let a55: &'static [u8] = &[b'a'; 55];
        assert_eq!(hex(a55), "c1c8bbdc22796e28c0e15163d20899b65621d65a");
        let a64: &'static [u8] = &[b'a'; 64];
        assert_eq!(hex(a64), "0098ba824b5c16427bd7a1122a5a442a25ec644d");
    }

    #[test]
    fn evalsha_names_the_keys_count() {
        let s = Script::new(b"return 1");
        let mut out = BytesMut::new();
        s.encode_evalsha(&mut out, &[b"k"], &[b"a", b"b"]);
        let expected = format!(
            "*6\r\n$7\r\nEVALSHA\r\n$40\r\n{}\r\n$1\r\n1\r\n$1\r\nk\r\n$1\r\na\r\n$1\r\nb\r\n",
            std::str::from_utf8(s.sha()).unwrap()
        );
        assert_eq!(&out[..], expected.as_bytes());
    }
}
