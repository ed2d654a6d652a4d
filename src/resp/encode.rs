//! RESP command encoding, sans-IO: every argument goes out as a length-prefixed bulk string, so no
//! argument (an id, a payload) can ever be read by Redis as more than one argument. Inline
//! commands are never built.

use bytes::{BufMut, BytesMut};

/// Appends one command (`args[0]` is the command name) to `out`.
pub fn command(out: &mut BytesMut, args: &[&[u8]]) {
    let size: usize = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    out.reserve(size);
    put_header(out, b'*', args.len());
    for a in args {
        put_header(out, b'$', a.len());
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

/// One argument of a command: bytes, or a number sent as its decimal text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    /// Sent as they are.
    Bytes(&'a [u8]),
    /// Sent as decimal text.
    Int(u64),
}

/// Appends one command made of `parts` (`parts[0]` is the name) to `out`.
pub(crate) fn command_from(out: &mut BytesMut, parts: &[Part<'_>]) {
    let size: usize = parts
        .iter()
        .map(|p| match p {
            Part::Bytes(b) => b.len() + 16,
            Part::Int(_) => 40,
        })
        .sum::<usize>()
        + 16;
    out.reserve(size);
    put_header(out, b'*', parts.len());
    for p in parts {
        match p {
            Part::Bytes(b) => {
                put_header(out, b'$', b.len());
                out.put_slice(b);
            }
            Part::Int(n) => {
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(*n).as_bytes();
                put_header(out, b'$', digits.len());
                out.put_slice(digits);
            }
        }
        out.put_slice(b"\r\n");
    }
}

/// `<kind><n>\r\n`.
#[inline]
fn put_header(out: &mut BytesMut, kind: u8, n: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    let mut head = [0u8; 23];
    head[0] = kind;
    head[1..1 + digits.len()].copy_from_slice(digits);
    head[1 + digits.len()..3 + digits.len()].copy_from_slice(b"\r\n");
    out.put_slice(&head[..3 + digits.len()]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::frame::Frame;

    #[test]
    fn encodes_bulk_arrays() {
        let mut out = BytesMut::new();
        command(&mut out, &[b"SET", b"k", b"a\r\nb"]);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
    }

    #[test]
    fn lengths_of_every_width() {
        // One, two, three and more digits, in argument counts and argument lengths.
        for n in [0usize, 9, 10, 99, 100, 12_345] {
            let arg = vec![b'x'; n];
            let args: Vec<&[u8]> = std::iter::repeat_n(&arg[..], n.min(150)).collect();
            let mut out = BytesMut::new();
            command(&mut out, &args);
            let mut want = format!("*{}\r\n", args.len()).into_bytes();
            for a in &args {
                want.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                want.extend_from_slice(a);
                want.extend_from_slice(b"\r\n");
            }
            assert_eq!(out[..], want[..], "n = {n}");
        }
    }

    #[test]
    fn encoded_commands_decode_back_as_the_same_arguments() {
        // A command is an array of bulk strings: the reply decoder reads it back exactly, however
        // the argument bytes look (CRLF, '$', '*', empty).
        let args: Vec<&[u8]> = vec![
            b"XADD",
            b"s:{0}",
            b"*",
            b"",
            b"\r\n$3\r\n*1\r\n",
            b"\x00\xff",
        ];
        let mut out = BytesMut::new();
        command(&mut out, &args);
        let (frame, used) = Frame::decode(&out.clone().freeze()).unwrap().unwrap();
        assert_eq!(used, out.len());
        let items = frame.into_array().unwrap();
        let got: Vec<&[u8]> = items.iter().map(|f| &f.as_bytes().unwrap()[..]).collect();
        assert_eq!(got, args);
    }
}
