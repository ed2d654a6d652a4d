//! The one error type. Every failure the broker reports has a [`ErrorKind`]; [`ErrorKind::status`]
//! is the only place an HTTP status is chosen, and [`ErrorKind::retry_after_seconds`] says whether
//! a client should try again. Callers branch on the kind,
//! never on the message text.

use std::fmt;

/// What went wrong, as callers branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request line, header or framing (smuggling cases included).
    MalformedRequest,
    /// Request target over the limit.
    UriTooLong,
    /// Header section over the limit, or too many fields.
    HeadersTooLarge,
    /// Body over `server.max_body_bytes`.
    BodyTooLarge,
    /// A method this server does not implement.
    MethodNotImplemented,
    /// A transfer coding other than chunked.
    UnknownTransferCoding,
    /// HTTP/2 or later on an HTTP/1 connection.
    VersionNotSupported,
    /// An `Expect` other than `100-continue`.
    ExpectationFailed,
    /// The client was too slow to send its request.
    RequestTimeout,
    /// The body is not `application/json` (or is content-encoded).
    UnsupportedMediaType,
    /// The body is not valid JSON (syntax, UTF-8, nesting).
    MalformedJson,
    /// Valid JSON of the wrong shape.
    InvalidShape,
    /// A correlation id that is not a UUID: answered as an unknown one (404, as Python clients
    /// expect), and never used to build a key.
    MalformedId,
    /// No route for the path, or an id that is unknown or expired.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The request is not in a state that allows the operation (cancel after it started).
    Conflict,
    /// The queue cannot take the request now (down, slow, or full).
    QueueUnavailable,
    /// API keys are configured and the request has none, or a wrong one.
    Unauthenticated,
    /// The key may not use this endpoint (admin endpoints).
    Forbidden,
    /// The key is over its rate limit.
    RateLimited,
}

impl ErrorKind {
    /// The HTTP status for this kind (API.md's error table).
    pub const fn status(self) -> u16 {
        match self {
            ErrorKind::MalformedRequest | ErrorKind::MalformedJson => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound | ErrorKind::MalformedId => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::Conflict => 409,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::ExpectationFailed => 417,
            ErrorKind::InvalidShape => 422,
            ErrorKind::RateLimited => 429,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::MethodNotImplemented | ErrorKind::UnknownTransferCoding => 501,
            ErrorKind::QueueUnavailable => 503,
            ErrorKind::VersionNotSupported => 505,
        }
    }

    /// Seconds a client should wait before retrying, for kinds where retrying can succeed.
    pub const fn retry_after_seconds(self) -> Option<u32> {
        match self {
            ErrorKind::QueueUnavailable => Some(1),
            _ => None,
        }
    }
}

/// One field-level validation failure, as FastAPI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path to the offending value, e.g. `["body", "metadata", "priority"]`.
    pub loc: Vec<String>,
    /// Human-readable message.
    pub msg: String,
    /// Machine-readable type, e.g. `value_error.missing`.
    pub kind: &'static str,
}

/// The `detail` of an error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A fixed message.
    Static(&'static str),
    /// A message built at run time (cold paths only).
    Owned(String),
    /// Validation failures (`detail` becomes a list).
    Fields(Vec<FieldError>),
}

/// An error with its kind and the detail shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    detail: Detail,
    retry_after: Option<u32>,
}

impl Error {
    /// An error with a fixed message.
    pub const fn new(kind: ErrorKind, msg: &'static str) -> Self {
        Error {
            kind,
            detail: Detail::Static(msg),
            retry_after: None,
        }
    }

    /// An error with a message built at run time.
    pub fn owned(kind: ErrorKind, msg: String) -> Self {
        Error {
            kind,
            detail: Detail::Owned(msg),
            retry_after: None,
        }
    }

    /// A 422 with field-level failures.
    pub fn fields(fields: Vec<FieldError>) -> Self {
        Error {
            kind: ErrorKind::InvalidShape,
            detail: Detail::Fields(fields),
            retry_after: None,
        }
    }

    /// The kind.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The detail.
    pub const fn detail(&self) -> &Detail {
        &self.detail
    }

    /// This error with `Retry-After: secs` instead of its kind's default.
    pub const fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Seconds a client should wait before retrying, if retrying can succeed.
    pub const fn retry_after(&self) -> Option<u32> {
        match self.retry_after {
            Some(s) => Some(s),
            None => self.kind.retry_after_seconds(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Detail::Static(m) => f.write_str(m),
            Detail::Owned(m) => f.write_str(m),
            Detail::Fields(fs) => {
                for (i, fe) in fs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{}: {}", fe.loc.join("."), fe.msg)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_api_table() {
        use ErrorKind::*;
        let table = [
            (MalformedJson, 400),
            (InvalidShape, 422),
            (UnsupportedMediaType, 415),
            (BodyTooLarge, 413),
            (HeadersTooLarge, 431),
            (UriTooLong, 414),
            (MalformedRequest, 400),
            (UnknownTransferCoding, 501),
            (NotFound, 404),
            (MethodNotAllowed, 405),
            (MalformedId, 404),
            (QueueUnavailable, 503),
            (VersionNotSupported, 505),
            (MethodNotImplemented, 501),
            (ExpectationFailed, 417),
            (RequestTimeout, 408),
            (Conflict, 409),
        ];
        for (kind, status) in table {
            assert_eq!(kind.status(), status, "{kind:?}");
            assert_eq!(
                kind.retry_after_seconds().is_some(),
                status == 503,
                "{kind:?}"
            );
        }
    }
}
