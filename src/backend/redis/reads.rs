//! Decoding stream reads: `XREADGROUP` and `XCLAIM` replies into deliveries.

use bytes::Bytes;

use crate::backend::Delivery;
use crate::resp::Frame;

use super::fields::job_from_fields;

/// What one stream entry turned out to be.
#[derive(Debug)]
pub enum Entry {
    /// A job to run.
    Job(Delivery),
    /// An entry whose body is gone or unreadable (deleted while pending, or malformed): it can only
    /// be acknowledged and reported.
    Unreadable(Bytes),
}

/// The entries of an `XREADGROUP` reply for one stream (`*1 [[stream, [[id, fields]...]]]`);
/// an empty list for the null reply of a timed-out `BLOCK`.
pub fn xreadgroup(reply: &Frame) -> Result<Vec<Entry>, &'static str> {
    let Some(streams) = reply.as_array() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for stream in streams {
        let pair = stream
            .as_array()
            .ok_or("XREADGROUP: stream is not an array")?;
        let entries = pair
            .get(1)
            .and_then(Frame::as_array)
            .ok_or("XREADGROUP: no entries")?;
        out.extend(entries.iter().map(entry).collect::<Result<Vec<_>, _>>()?);
    }
    Ok(out)
}

/// How many entries an `XREADGROUP` reply holds, without decoding them.
pub fn entry_count(reply: &Frame) -> usize {
    reply
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|stream| stream.as_array()?.get(1)?.as_array().map(<[Frame]>::len))
        .sum()
}

/// The entries of an `XCLAIM` reply (`[[id, fields]...]`).
pub fn xclaim(reply: &Frame) -> Result<Vec<Entry>, &'static str> {
    let entries = reply.as_array().ok_or("XCLAIM: not an array")?;
    entries.iter().map(entry).collect()
}

fn entry(e: &Frame) -> Result<Entry, &'static str> {
    let parts = e.as_array().ok_or("stream entry is not an array")?;
    let id = parts
        .first()
        .and_then(Frame::as_bytes)
        .ok_or("stream entry without id")?
        .clone();
    let job = parts
        .get(1)
        .and_then(Frame::as_array)
        .and_then(job_from_fields);
    Ok(match job {
        Some((job, attempt)) => Entry::Job(Delivery {
            job,
            attempt,
            entry_id: Some(id),
            redelivered: false,
        }),
        None => Entry::Unreadable(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Frame;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn decodes_entries_and_flags_deleted_ones() {
        let fields = Frame::Array(Some(vec![
            bulk("id"),
            bulk("550e8400-e29b-41d4-a716-446655440000"),
            bulk("payload"),
            bulk("{}"),
            bulk("meta"),
            bulk("0 1000 0 5"),
            bulk("attempt"),
            bulk("2"),
        ]));
        let reply = Frame::Array(Some(vec![Frame::Array(Some(vec![
            bulk("openhqm-requests:{0}"),
            Frame::Array(Some(vec![
                Frame::Array(Some(vec![bulk("1-0"), fields])),
                Frame::Array(Some(vec![bulk("2-0"), Frame::Array(None)])),
            ])),
        ]))]));
        let entries = xreadgroup(&reply).unwrap();
        assert_eq!(entries.len(), 2);
        match &entries[0] {
            Entry::Job(d) => {
                assert_eq!(d.attempt, 2);
                assert_eq!(d.entry_id.as_deref(), Some(&b"1-0"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&entries[1], Entry::Unreadable(id) if &id[..] == b"2-0"));
        assert_eq!(entry_count(&reply), 2);
        assert!(xreadgroup(&Frame::Array(None)).unwrap().is_empty());
        assert_eq!(entry_count(&Frame::Array(None)), 0);
        assert!(xreadgroup(&Frame::Array(Some(vec![bulk("x")]))).is_err());
    }
}
