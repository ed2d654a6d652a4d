//! HTTP/1.1, server side, sans-IO. `parse` reads request heads (`fields` the header fields), `body` decodes bodies, `conn`
//! sequences requests on one connection (keep-alive, pipelining, `100-continue`) and `encode`
//! writes responses. It knows nothing of the API's routes (`api::route` does). None of it does I/O: the shard's connection
//! task (`shard::connection`) feeds bytes in and writes what comes out.

pub mod body;
pub mod conn;
pub mod encode;
mod fields;
pub mod parse;

pub use conn::{Conn, Event, Reading, Request};
pub use encode::{ContentType, Response};
pub use parse::{Limits, Method, RequestHead};

use crate::error::{Error, ErrorKind};

/// A request the parser refuses. All of these end the connection: after a framing error the
/// following bytes cannot be trusted. `Copy` and allocation-free, as hot-path errors are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400 with this detail.
    BadRequest(&'static str),
    /// 414.
    UriTooLong,
    /// 431.
    HeadersTooLarge,
    /// 413.
    BodyTooLarge,
    /// 501: unknown method.
    MethodNotImplemented,
    /// 501: a transfer coding other than chunked.
    UnknownTransferCoding,
    /// 505.
    VersionNotSupported,
    /// 417.
    ExpectationFailed,
}

impl From<HeadError> for Error {
    fn from(e: HeadError) -> Error {
        match e {
            HeadError::BadRequest(msg) => Error::new(ErrorKind::MalformedRequest, msg),
            HeadError::UriTooLong => Error::new(ErrorKind::UriTooLong, "request target too long"),
            HeadError::HeadersTooLarge => Error::new(
                ErrorKind::HeadersTooLarge,
                "request header fields too large",
            ),
            HeadError::BodyTooLarge => {
                Error::new(ErrorKind::BodyTooLarge, "request body too large")
            }
            HeadError::MethodNotImplemented => {
                Error::new(ErrorKind::MethodNotImplemented, "method not implemented")
            }
            HeadError::UnknownTransferCoding => Error::new(
                ErrorKind::UnknownTransferCoding,
                "transfer coding not implemented",
            ),
            HeadError::VersionNotSupported => {
                Error::new(ErrorKind::VersionNotSupported, "HTTP version not supported")
            }
            HeadError::ExpectationFailed => Error::new(
                ErrorKind::ExpectationFailed,
                "only Expect: 100-continue is supported",
            ),
        }
    }
}
