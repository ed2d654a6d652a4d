//! The endpoints of API.md. [`handle`] routes a complete request to its endpoint and turns every
//! error into the one JSON error shape; [`precheck`] is what the connection asks before reading a
//! body.

pub mod batch;
pub mod cancel;
pub mod dead_letters;
pub mod health;
pub mod idempotency;
pub mod json;
pub mod lookup;
pub mod metrics;
pub mod probes;
pub mod response;
pub mod route;
pub mod routing;
pub mod status;
pub mod submit;
pub mod submit_plain;
pub mod wait;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::rate::RateLimits;
use crate::auth::{ApiKeys, Caller};
use crate::id::CorrelationId;
use crate::metrics::RejectReason;
use crate::sync::shutdown::Shutdown;

use crate::backend::Backend;
use crate::clock::Timestamp;
use crate::error::{Detail, Error, ErrorKind};
use crate::http::{Method, Request, RequestHead, Response};
use crate::id::ShardId;
use crate::mesh::Mesh;
use crate::metrics::ShardMetrics;
use crate::worker::Processors;
use json::{put_key, put_str};
use route::{endpoint_of, route, Endpoint, NoRoute, Route};

/// What the endpoints of one shard answer from: its backend, its metrics, the mesh to the
/// other shards, the processors a submit may name, and the settings they read.
pub(crate) struct Api<B> {
    /// The shard's backend.
    pub(crate) backend: Rc<B>,
    /// The shard's metrics.
    pub(crate) metrics: Rc<RefCell<ShardMetrics>>,
    /// The way to the other shards.
    pub(crate) mesh: Mesh,
    /// This shard.
    pub(crate) shard: ShardId,
    /// The processors a submit may name.
    pub(crate) processors: Processors,
    /// `worker.timeout`: the deadline of a request that gives none.
    pub(crate) default_timeout: Duration,
    /// `monitoring.metrics_enabled`.
    pub(crate) metrics_enabled: bool,
    /// `queue.request_queue_name`, the `queue_name` label.
    pub(crate) queue_name: String,
    /// Whether this node serves the request API (`server.role` is not `worker`).
    pub(crate) serves_requests: bool,
    /// The routing rules.
    pub(crate) routes: routing::Routes,
    /// `server.max_batch`: most requests in one batch.
    pub(crate) max_batch: usize,
    /// `server.max_wait_seconds`: the longest wait a client may ask for.
    pub(crate) max_wait: Duration,
    /// The API keys, `None` when they are off.
    pub(crate) keys: Option<Arc<ApiKeys>>,
    /// Set once the shard drains: new work is refused.
    pub(crate) draining: Shutdown,
    /// This shard's per-key rate-limit buckets, when a limit is set.
    pub(crate) rate_limits: Option<RefCell<RateLimits>>,
}

impl<B> Api<B> {
    /// What a submit by `caller` is checked against.
    fn rules(&self, caller: &Caller) -> submit::Rules<'_> {
        submit::Rules {
            default_timeout: self.default_timeout,
            processors: &self.processors,
            routes: &self.routes,
            owner: caller.owner(),
        }
    }

    /// Who sends `head`, and whether they may use `route`: the 401, 403 or 429 if not.
    fn authorize(&self, head: &RequestHead, route: &Route) -> Result<Caller, Box<Response>> {
        let Some(keys) = &self.keys else {
            return Ok(Caller::Open);
        };
        let admin_only = match route {
            Route::Health | Route::Livez | Route::Readyz | Route::OpenApi | Route::Options(_) => {
                return Ok(Caller::Open)
            }
            Route::Metrics if !keys.protect_metrics => return Ok(Caller::Open),
            Route::DlqList | Route::DlqRedrive(_) | Route::DlqDrop(_) => true,
            _ => false,
        };
        let refuse = |reason: RejectReason, e: Error| {
            self.metrics.borrow_mut().rejected(reason);
            Box::new(error_response(&e))
        };
        let Some(caller) = head.credential.as_deref().and_then(|c| keys.identify(c)) else {
            return Err(refuse(
                RejectReason::Unauthenticated,
                Error::new(ErrorKind::Unauthenticated, "Not authenticated"),
            ));
        };
        if let (Some(limits), Caller::Key { index, .. }) = (&self.rate_limits, caller) {
            if let Err(secs) = limits.borrow_mut().take(index, std::time::Instant::now()) {
                let mut r = refuse(
                    RejectReason::RateLimited,
                    Error::new(ErrorKind::RateLimited, "Rate limit exceeded"),
                );
                r.retry_after = Some(secs);
                return Err(r);
            }
        }
        if admin_only && !caller.is_admin() {
            return Err(refuse(
                RejectReason::Forbidden,
                Error::new(ErrorKind::Forbidden, "An admin key is required"),
            ));
        }
        Ok(caller)
    }
}

/// The 404 of an unknown id for a well-formed id `caller` does not own: another key's requests
/// are not there for it. A malformed id is left to the endpoint (also a 404).
fn check_owner(caller: &Caller, raw: &bytes::Bytes) -> Result<(), Error> {
    if *caller == Caller::Open {
        // Everyone owns everything: no second parse of the id on the lookup path.
        return Ok(());
    }
    match CorrelationId::parse(raw) {
        Some(id) if !caller.owns(&id) => Err(Error::new(ErrorKind::NotFound, "Request not found")),
        _ => Ok(()),
    }
}

/// Refuses, from the head alone, requests whose body should not be read.
pub fn precheck(head: &RequestHead) -> Result<(), Error> {
    if head.method == Method::Post
        && matches!(
            endpoint_of(&head.path),
            Endpoint::Submit | Endpoint::SubmitBatch
        )
    {
        return submit::precheck(head);
    }
    Ok(())
}

/// Answers one request. Returns the endpoint (the metric label) with the response.
pub(crate) async fn handle<B: Backend>(api: &Api<B>, req: &Request) -> (Endpoint, Response) {
    let endpoint = endpoint_of(&req.head.path);
    let routed = route(req.head.method, &req.head.path);
    if !api.serves_requests
        && matches!(
            routed,
            Ok(Route::Submit
                | Route::SubmitBatch
                | Route::Status(_)
                | Route::Response(_)
                | Route::Cancel(_))
        )
    {
        let e = Error::new(
            ErrorKind::NotFound,
            "this is a worker node (server.role = worker): send API requests to an API node",
        );
        return (endpoint, error_response(&e));
    }
    let caller = match &routed {
        Ok(r) => match api.authorize(&req.head, r) {
            Ok(c) => c,
            Err(refused) => return (endpoint, *refused),
        },
        Err(_) => Caller::Open,
    };
    if api.draining.is_set() && matches!(routed, Ok(Route::Submit | Route::SubmitBatch | Route::DlqRedrive(_))) {
        // The client retries against another instance (or this one, restarted).
        api.metrics.borrow_mut().rejected(RejectReason::ShuttingDown);
        let mut r = error_response(&Error::new(ErrorKind::QueueUnavailable, "shutting down"));
        r.close = true;
        return (endpoint, r);
    }
    if let Ok(Route::Status(raw) | Route::Response(raw) | Route::Cancel(raw)) = &routed {
        if let Err(e) = check_owner(&caller, raw) {
            return (endpoint, error_response(&e));
        }
    }
    let result = match routed {
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
            r.allow = Some(route::allow(e));
            Ok(r)
        }
        Ok(Route::Submit) => submit_and_wait(api, req, &caller).await,
        Ok(Route::SubmitBatch) => {
            let rules = api.rules(&caller);
            let now = Timestamp::now();
            batch::handle(
                &*api.backend,
                &api.mesh,
                api.shard,
                &api.metrics,
                &rules,
                api.max_batch,
                &req.body,
                now,
            )
            .await
        }
        Ok(Route::Status(id)) => lookup::find(&*api.backend, &api.mesh, api.shard, &id)
            .await
            .map(|(id, state)| status::respond(&id, &state)),
        Ok(Route::Response(raw)) => match wait::requested(&req.head, true, api.max_wait) {
            Err(e) => Err(e),
            Ok(None) => lookup::find(&*api.backend, &api.mesh, api.shard, &raw)
                .await
                .map(|(id, state)| response::respond(&id, &state)),
            Ok(Some(w)) => match lookup::parse_id(&raw) {
                Err(e) => Err(e),
                Ok(id) => wait::find_final(&*api.backend, &api.mesh, api.shard, id, w)
                    .await
                    .map(|state| response::respond(&id, &state)),
            },
        },
        Ok(Route::Health) => Ok(health::handle(&*api.backend, &api.mesh).await),
        Ok(Route::OpenApi) => Ok(openapi()),
        Ok(Route::Livez) => Ok(probes::livez(&api.mesh).await),
        Ok(Route::Readyz) => Ok(probes::readyz(&*api.backend, &api.mesh, api.draining.is_set()).await),
        Ok(Route::DlqList) => dead_letters::list(&api.mesh, req.head.query.as_ref()).await,
        Ok(Route::DlqRedrive(raw)) => dead_letters::act(&api.mesh, &raw, false).await,
        Ok(Route::DlqDrop(raw)) => dead_letters::act(&api.mesh, &raw, true).await,
        Ok(Route::Cancel(raw)) => cancel::handle(&api.mesh, &raw).await,
        Ok(Route::Metrics) => {
            metrics::handle(&api.mesh, api.metrics_enabled, &api.queue_name).await
        }
    };
    (endpoint, result.unwrap_or_else(|e| error_response(&e)))
}

/// A submit, and with `Prefer: wait=N` the wait for its final state: 200 with the response body
/// when it is final in time, else the usual 202. The request is queued either way; nothing
/// after that turns its answer into an error.
async fn submit_and_wait<B: Backend>(
    api: &Api<B>,
    req: &Request,
    caller: &Caller,
) -> Result<Response, Error> {
    let rules = api.rules(caller);
    let now = Timestamp::now();
    // A malformed preference is ignored, never an error (RFC 7240 §2).
    let wait = wait::requested(&req.head, false, api.max_wait)
        .ok()
        .flatten();
    let backend = &*api.backend;
    if let Some(key) = &req.head.idempotency_key {
        let (accepted, replay) = idempotency::submit(
            backend,
            &api.mesh,
            api.shard,
            &api.metrics,
            &rules,
            key,
            &req.body,
            now,
        )
        .await?;
        // The key's shard queued it; its id may belong to another shard, so a wait goes
        // through the owner of the id.
        let mut r = submit::accepted_response(&accepted);
        if let Some(wait) = wait {
            let found = wait::find_final(backend, &api.mesh, api.shard, accepted.id, wait).await;
            if let Some(state) = found.ok().filter(|s| s.status.is_final()) {
                r = final_response(&accepted, &state, wait);
            }
        }
        r.replayed = replay;
        return Ok(r);
    }
    let (accepted, watch) =
        submit::accept(backend, &api.metrics, &rules, &req.body, now, wait.is_some()).await?;
    let (Some(wait), Some(watch)) = (wait, watch) else {
        return Ok(submit::accepted_response(&accepted));
    };
    let until = std::time::Instant::now() + wait;
    match crate::backend::final_after_submit(backend, &accepted.id, watch, until).await {
        Some(state) => Ok(final_response(&accepted, &state, wait)),
        None => Ok(submit::accepted_response(&accepted)),
    }
}

/// The 200 of a submit whose request was final within its `wait`: the `/response` body, with
/// `Location` and `Preference-Applied`.
fn final_response(
    accepted: &crate::backend::Accepted,
    state: &crate::store::RequestState,
    wait: Duration,
) -> Response {
    let mut r = response::respond(&accepted.id, state);
    r.location = Some(route::status_location(&accepted.id));
    r.preference_applied_wait = Some(wait.as_secs() as u32);
    r
}

/// `GET /openapi.json`: every endpoint, its parameters and its statuses (`openapi.json`; a test
/// checks it against the routes the server really answers).
fn openapi() -> Response {
    let doc = include_str!("openapi.json").replacen(
        "\"version\": \"VERSION\"",
        &format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION")),
        1,
    );
    Response::json(200, doc.into_bytes())
}

/// The JSON error response for `e`: `{"detail": "..."}` or, for validation errors,
/// `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.
pub fn error_response(e: &Error) -> Response {
    let mut b = Vec::with_capacity(64);
    b.push(b'{');
    error_body(e, &mut b);
    b.push(b'}');
    let mut r = Response::json(e.kind().status(), b);
    r.retry_after = e.retry_after();
    r.www_authenticate = e.kind() == ErrorKind::Unauthenticated;
    r
}

/// `"detail": ...` of an error (the members of its JSON object).
pub(crate) fn error_body(e: &Error, b: &mut Vec<u8>) {
    put_key(b, "detail");
    match e.detail() {
        Detail::Static(m) => put_str(b, m),
        Detail::Owned(m) => put_str(b, m),
        Detail::Fields(fields) => {
            b.push(b'[');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                b.push(b'{');
                put_key(b, "loc");
                b.push(b'[');
                for (j, part) in f.loc.iter().enumerate() {
                    if j > 0 {
                        b.push(b',');
                    }
                    put_str(b, part);
                }
                b.extend_from_slice(b"],");
                put_key(b, "msg");
                put_str(b, &f.msg);
                b.push(b',');
                put_key(b, "type");
                put_str(b, f.kind);
                b.push(b'}');
            }
            b.push(b']');
        }
    }
}

#[cfg(test)]
mod tests;
