//! The endpoints of API.md. [`handle`] routes a complete request to its endpoint and turns every
//! error into the one JSON error shape; [`precheck`] is what the connection asks before reading a
//! body.

pub mod health;
pub mod json;
pub mod lookup;
pub mod metrics;
pub mod response;
pub mod status;
pub mod submit;
pub mod submit_plain;

use crate::error::{Detail, Error, ErrorKind};
use crate::http::route::{route, NoRoute};
use crate::http::{Endpoint, Method, Request, RequestHead, Response, Route};
use crate::shard::context::ShardCtx;
use json::{put_key, put_str};

/// Refuses, from the head alone, requests whose body should not be read.
pub fn precheck(head: &RequestHead) -> Result<(), Error> {
    if head.method == Method::Post && Endpoint::of_path(&head.path) == Endpoint::Submit {
        return submit::precheck(head);
    }
    Ok(())
}

/// Answers one request. Returns the endpoint (the metric label) with the response.
pub async fn handle(ctx: &ShardCtx, req: &Request) -> (Endpoint, Response) {
    let endpoint = Endpoint::of_path(&req.head.path);
    let result = match route(req.head.method, &req.head.path) {
        Err(NoRoute::NotFound) => Err(Error::new(ErrorKind::NotFound, "Not Found")),
        Err(NoRoute::MethodNotAllowed(allow)) => {
            let mut r = error_response(&Error::new(
                ErrorKind::MethodNotAllowed,
                "Method Not Allowed",
            ));
            r.allow = Some(allow);
            Ok(r)
        }
        Ok(Route::Options(e)) => {
            let mut r = Response::json(204, Vec::new());
            r.content_type = None;
            r.allow = Some(e.allow());
            Ok(r)
        }
        Ok(Route::Submit) => submit::handle(ctx, req).await,
        Ok(Route::Status(id)) => status::handle(ctx, &id).await,
        Ok(Route::Response(id)) => response::handle(ctx, &id).await,
        Ok(Route::Health) => health::handle(ctx).await,
        Ok(Route::Metrics) => metrics::handle(ctx).await,
    };
    (endpoint, result.unwrap_or_else(|e| error_response(&e)))
}

/// The JSON error response for `e`: `{"detail": "..."}` or, for validation errors,
/// `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.
pub fn error_response(e: &Error) -> Response {
    let mut b = Vec::with_capacity(64);
    b.push(b'{');
    put_key(&mut b, "detail");
    match e.detail() {
        Detail::Static(m) => put_str(&mut b, m),
        Detail::Owned(m) => put_str(&mut b, m),
        Detail::Fields(fields) => {
            b.push(b'[');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                b.push(b'{');
                put_key(&mut b, "loc");
                b.push(b'[');
                for (j, part) in f.loc.iter().enumerate() {
                    if j > 0 {
                        b.push(b',');
                    }
                    put_str(&mut b, part);
                }
                b.extend_from_slice(b"],");
                put_key(&mut b, "msg");
                put_str(&mut b, &f.msg);
                b.push(b',');
                put_key(&mut b, "type");
                put_str(&mut b, f.kind);
                b.push(b'}');
            }
            b.push(b']');
        }
    }
    b.push(b'}');
    let mut r = Response::json(e.kind().status(), b);
    r.retry_after = e.kind().retry_after_seconds();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldError;

    #[test]
    fn error_bodies_are_json_with_detail() {
        let r = error_response(&Error::new(ErrorKind::QueueUnavailable, "queue \"x\" down"));
        assert_eq!(r.status, 503);
        assert_eq!(r.retry_after, Some(1));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["detail"], "queue \"x\" down");

        let r = error_response(&Error::fields(vec![FieldError {
            loc: vec!["body".into(), "payload".into()],
            msg: "field required".into(),
            kind: "value_error.missing",
        }]));
        assert_eq!(r.status, 422);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v["detail"][0]["loc"],
            serde_json::json!(["body", "payload"])
        );
        assert_eq!(v["detail"][0]["type"], "value_error.missing");
    }
}
