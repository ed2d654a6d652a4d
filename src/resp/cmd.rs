//! A Redis command as a value: built argument by argument (`Cmd::new(b"XADD").arg(key)…`),
//! encoded as a RESP array of bulk strings when it is sent. Numbers are written as decimal text
//! at encoding, so a command holds no buffers of its own beyond its argument list.

use bytes::BytesMut;

use super::encode::{command_from, Part};

/// One command: its name and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd<'a> {
    parts: Vec<Part<'a>>,
}

impl<'a> Cmd<'a> {
    /// A command named `name` (`b"XADD"`), with no arguments yet.
    pub fn new(name: &'static [u8]) -> Self {
        let mut parts = Vec::with_capacity(8);
        parts.push(Part::Bytes(name));
        Cmd { parts }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: &'a [u8]) -> Self {
        self.parts.push(Part::Bytes(arg));
        self
    }

    /// Appends a number, sent as its decimal text.
    pub fn int(mut self, n: u64) -> Self {
        self.parts.push(Part::Int(n));
        self
    }

    /// Appends every argument of `args`.
    pub fn args(mut self, args: impl IntoIterator<Item = &'a [u8]>) -> Self {
        self.parts.extend(args.into_iter().map(Part::Bytes));
        self
    }

    /// Appends the encoded command to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        command_from(out, &self.parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode::command;

    #[test]
    fn encodes_as_the_plain_encoder_does() {
        let fields: Vec<&[u8]> = vec![b"id", b"x\r\ny", b"n", b""];
        let cmd = Cmd::new(b"XADD")
            .arg(b"s:{0}")
            .arg(b"*")
            .args(fields.iter().copied())
            .int(0)
            .int(1234567890123);
        let mut got = BytesMut::new();
        cmd.encode(&mut got);
        let mut want = BytesMut::new();
        let mut args: Vec<&[u8]> = vec![b"XADD", b"s:{0}", b"*"];
        args.extend(fields.iter().copied());
        args.extend([&b"0"[..], b"1234567890123"]);
        command(&mut want, &args);
        assert_eq!(got, want);
    }
}
