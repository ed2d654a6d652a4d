//! The RESP reply decoder on arbitrary bytes: never panics, never claims more bytes than given,
//! and decoding the prefix it used gives the same frame.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use openhqm::resp::Frame;

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(Some((frame, used))) = Frame::decode(&buf) {
        assert!(used <= buf.len());
        let again = Frame::decode(&buf.slice(..used));
        assert_eq!(again, Ok(Some((frame, used))));
    }
});
