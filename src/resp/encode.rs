//! RESP command encoding, sans-IO: every argument goes out as a length-prefixed bulk string, so no
//! argument (an id, a payload) can ever be read by Redis as more than one argument. Inline
//! commands are never built.

use bytes::{BufMut, BytesMut};

/// Appends one command (`args[0]` is the command name) to `out`.
pub fn command(out: &mut BytesMut, args: &[&[u8]]) {
    let size: usize = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    out.reserve(size);
    out.put_u8(b'*');
    put_decimal(out, args.len() as u64);
    out.put_slice(b"\r\n");
    for a in args {
        out.put_u8(b'$');
        put_decimal(out, a.len() as u64);
        out.put_slice(b"\r\n");
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

pub use crate::decimal::decimal;

fn put_decimal(out: &mut BytesMut, v: u64) {
    let (buf, len) = decimal(v);
    out.put_slice(&buf[..len]);
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
