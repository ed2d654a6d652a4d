//! The endpoints of API.md. [`handle`] routes a complete request to its endpoint and turns every
//! error into the one JSON error shape; [`precheck`] is what the connection asks before reading a
//! body.

pub mod batch;
pub mod cancel;
pub mod dead_letters;
pub mod health;
pub mod json;
pub mod lookup;
pub mod metrics;
pub mod response;
pub mod route;
pub mod routing;
pub mod status;
pub mod submit;
pub mod submit_plain;
pub mod wait;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

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
}

impl<B> Api<B> {
    /// What a submit is checked against.
    fn rules(&self) -> submit::Rules<'_> {
        submit::Rules {
            default_timeout: self.default_timeout,
            processors: &self.processors,
            routes: &self.routes,
        }
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
        Ok(Route::Submit) => submit_and_wait(api, req).await,
        Ok(Route::SubmitBatch) => {
            let rules = api.rules();
            let now = Timestamp::now();
            batch::handle(&*api.backend, &api.metrics, &rules, api.max_batch, &req.body, now)
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
async fn submit_and_wait<B: Backend>(api: &Api<B>, req: &Request) -> Result<Response, Error> {
    let rules = api.rules();
    let now = Timestamp::now();
    // A malformed preference is ignored, never an error (RFC 7240 §2).
    let wait = wait::requested(&req.head, false, api.max_wait)
        .ok()
        .flatten();
    let backend = &*api.backend;
    let (accepted, watch) =
        submit::accept(backend, &api.metrics, &rules, &req.body, now, wait.is_some()).await?;
    let (Some(wait), Some(watch)) = (wait, watch) else {
        return Ok(submit::accepted_response(&accepted));
    };
    let until = std::time::Instant::now() + wait;
    match crate::backend::final_after_submit(backend, &accepted.id, watch, until).await {
        Some(state) => {
            let mut r = response::respond(&accepted.id, &state);
            r.location = Some(route::status_location(&accepted.id));
            r.preference_applied_wait = Some(wait.as_secs() as u32);
            Ok(r)
        }
        None => Ok(submit::accepted_response(&accepted)),
    }
}

/// The JSON error response for `e`: `{"detail": "..."}` or, for validation errors,
/// `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.
pub fn error_response(e: &Error) -> Response {
    let mut b = Vec::with_capacity(64);
    b.push(b'{');
    error_body(e, &mut b);
    b.push(b'}');
    let mut r = Response::json(e.kind().status(), b);
    r.retry_after = e.kind().retry_after_seconds();
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
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::backend::{EmbeddedBackend, Settlement};
    use crate::error::FieldError;
    use crate::id::IdMinter;
    use crate::mesh;
    use crate::store::{Outcome, Status};
    use crate::testing::{embedded, id, ready};
    use crate::worker::{Output, ProcessError, Processor};

    struct Nothing;

    impl Processor for Nothing {
        async fn process(&self, _job: &crate::backend::Job) -> Result<Output, ProcessError> {
            Ok(Output::json("null"))
        }
    }

    fn one_shard() -> Mesh {
        Mesh::new(0, mesh::inboxes(1).0)
    }

    fn submit(backend: &EmbeddedBackend, metrics: &RefCell<ShardMetrics>, body: &str) -> Response {
        let mut processors = Processors::default();
        processors.register("nothing", Nothing);
        let routes = routing::Routes::default();
        let rules = submit::Rules {
            default_timeout: Duration::from_secs(300),
            processors: &processors,
            routes: &routes,
        };
        let now = Timestamp::now();
        ready(submit::accept(
            backend,
            metrics,
            &rules,
            body.as_bytes(),
            now,
            false,
        ))
        .map(|(a, _)| submit::accepted_response(&a))
        .unwrap_or_else(|e| error_response(&e))
    }

    fn json(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn submit_queues_and_status_finds_it_pending() {
        let backend = embedded();
        let metrics = RefCell::default();
        let r = submit(
            &backend,
            &metrics,
            r#"{"payload":{"a":1},"metadata":{"endpoint":"nothing"}}"#,
        );
        assert_eq!(r.status, 202);
        let v = json(&r);
        assert_eq!(v["status"], "PENDING");
        let text = v["correlation_id"].as_str().unwrap().as_bytes().to_vec();
        let location = format!("/api/v1/status/{}", String::from_utf8_lossy(&text));
        assert_eq!(r.location.unwrap().as_bytes(), location.as_bytes());
        assert_eq!(id(&text).to_text(), &text[..]);
        assert_eq!(metrics.borrow().published, 1);

        let (found, state) =
            ready(lookup::find(&backend, &one_shard(), 0, &Bytes::from(text))).unwrap();
        let s = json(&status::respond(&found, &state));
        assert_eq!(s["status"], "PENDING");
        assert_eq!(s["correlation_id"], v["correlation_id"]);
        // The queued job carries the payload byte for byte and the processor's name.
        let jobs = ready(backend.next_jobs(10, 10));
        assert_eq!(jobs.len(), 1);
        assert_eq!(&jobs[0].job.payload[..], br#"{"a":1}"#);
        assert_eq!(jobs[0].job.metadata.endpoint.as_deref(), Some("nothing"));
    }

    #[test]
    fn submit_refuses_an_unknown_processor() {
        let backend = embedded();
        let metrics = RefCell::default();
        let r = submit(
            &backend,
            &metrics,
            r#"{"payload":{},"metadata":{"endpoint":"billing"}}"#,
        );
        assert_eq!(r.status, 422);
        let v = json(&r);
        assert_eq!(
            v["detail"][0]["loc"],
            serde_json::json!(["body", "metadata", "endpoint"])
        );
        let mut m = ShardMetrics::default();
        backend.gauges(&mut m);
        assert_eq!(
            (m.queue_ready, m.states),
            (0, 0),
            "nothing queued, no state"
        );
    }

    #[test]
    fn submit_to_a_full_queue_is_503_and_leaves_no_state() {
        let backend = EmbeddedBackend::new(IdMinter::new(0, 1), 1, Duration::from_secs(60), 100);
        let metrics = RefCell::default();
        assert_eq!(submit(&backend, &metrics, r#"{"payload":{}}"#).status, 202);
        let r = submit(&backend, &metrics, r#"{"payload":{}}"#);
        assert_eq!(r.status, 503);
        assert_eq!(r.retry_after, Some(1));
        assert_eq!(metrics.borrow().publish_failed, 1);
        let mut m = ShardMetrics::default();
        backend.gauges(&mut m);
        assert_eq!(m.states, 1, "the refused request left no state behind");
    }

    #[test]
    fn response_is_202_until_final_then_200_with_the_result() {
        let backend = embedded();
        let metrics = RefCell::default();
        let r = submit(&backend, &metrics, r#"{"payload":{}}"#);
        let text = Bytes::from(json(&r)["correlation_id"].as_str().unwrap().to_owned());
        let find = || ready(lookup::find(&backend, &one_shard(), 0, &text)).unwrap();
        let (i, s) = find();
        assert_eq!(response::respond(&i, &s).status, 202);

        let d = ready(backend.next_jobs(1, 1)).pop().unwrap();
        assert_eq!(
            backend.start(&d, Timestamp::now()),
            crate::backend::Start::Run
        );
        let outcome = Outcome {
            result: Some(Bytes::from_static(b"[1,2]")),
            headers: None,
            status_code: Some(200),
            error: None,
            processing_time_ms: 5,
            completed_at: Timestamp::now(),
        };
        ready(backend.settle(d, Settlement::Completed(outcome), Instant::now()));
        let (i, s) = find();
        assert_eq!(s.status, Status::Completed);
        let r = response::respond(&i, &s);
        assert_eq!(r.status, 200);
        let v = json(&r);
        assert_eq!(v["result"], serde_json::json!([1, 2]));
        assert_eq!(v["processing_time_ms"], 5);
    }

    #[test]
    fn a_waiting_submit_is_woken_by_the_final_write_and_only_then() {
        let backend = embedded();
        let metrics = RefCell::default();
        let processors = Processors::default();
        let routes = routing::Routes::default();
        let rules = submit::Rules {
            default_timeout: Duration::from_secs(300),
            processors: &processors,
            routes: &routes,
        };
        let body = br#"{"payload":{}}"#;
        let (accepted, watch) = ready(submit::accept(
            &backend,
            &metrics,
            &rules,
            body,
            Timestamp::now(),
            true,
        ))
        .unwrap();
        let mut watch = watch.expect("registered with the submit, before the job was queued");
        assert!(crate::testing::pending(watch.woken()), "nothing final yet");
        let d = ready(backend.next_jobs(1, 1)).pop().unwrap();
        assert_eq!(d.job.id, accepted.id);
        backend.start(&d, Timestamp::now());
        assert!(crate::testing::pending(watch.woken()), "PROCESSING is not final");
        let outcome = Outcome {
            result: Some(Bytes::from_static(b"1")),
            headers: None,
            status_code: None,
            error: None,
            processing_time_ms: 1,
            completed_at: Timestamp::now(),
        };
        ready(backend.settle(d, Settlement::Completed(outcome), Instant::now()));
        ready(watch.woken());
        assert_eq!(backend.held(&accepted.id).unwrap().status, Status::Completed);
        let mut m = ShardMetrics::default();
        backend.gauges(&mut m);
        assert_eq!(m.waiters, 1);
        drop(watch);
        backend.gauges(&mut m);
        assert_eq!(m.waiters, 0);
    }

    #[test]
    fn lookups_of_unknown_and_malformed_ids() {
        let backend = embedded();
        let unknown = Bytes::from_static(b"550e8400-e29b-41d4-a716-446655440000");
        let e = ready(lookup::find(&backend, &one_shard(), 0, &unknown)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = ready(lookup::find(
            &backend,
            &one_shard(),
            0,
            &Bytes::from_static(b"x"),
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MalformedId);
    }

    #[test]
    fn a_batch_is_queued_all_or_none() {
        let backend = EmbeddedBackend::new(IdMinter::new(0, 1), 2, Duration::from_secs(60), 100);
        let metrics = RefCell::default();
        let processors = Processors::default();
        let routes = routing::Routes::default();
        let rules = submit::Rules {
            default_timeout: Duration::from_secs(300),
            processors: &processors,
            routes: &routes,
        };
        let run = |body: &str| {
            ready(batch::handle(&backend, &metrics, &rules, 3, body.as_bytes(), Timestamp::now()))
                .unwrap_or_else(|e| error_response(&e))
        };
        // Three valid items do not fit a queue of two: nothing is queued.
        let three = r#"{"requests":[{"payload":{}},{"payload":{}},{"payload":{}}]}"#;
        let r = run(three);
        assert_eq!(r.status, 503);
        let mut m = ShardMetrics::default();
        backend.gauges(&mut m);
        assert_eq!((m.queue_ready, m.states), (0, 0), "all or none");
        // Two valid and one invalid: the two are queued, the third answered in place.
        let r = run(r#"{"requests":[{"payload":{}},{"payload":1},{"payload":{"a":1}}]}"#);
        assert_eq!(r.status, 200);
        let v = json(&r);
        assert_eq!(v["results"][0]["status"], "PENDING");
        assert_eq!(v["results"][1]["error"]["status"], 422);
        assert_eq!(v["results"][2]["status"], "PENDING");
        backend.gauges(&mut m);
        assert_eq!((m.queue_ready, m.states), (2, 2));
        assert_eq!(metrics.borrow().published, 2);
        // Over max_batch (3 here), and malformed.
        assert_eq!(run(r#"{"requests":[{},{},{},{}]}"#).status, 422);
        assert_eq!(run(r#"{"requests":["#).status, 400);
    }

    #[test]
    fn health_checks_the_backend() {
        let backend = EmbeddedBackend::new(IdMinter::new(0, 1), 1, Duration::from_secs(60), 100);
        let metrics = RefCell::default();
        assert_eq!(ready(health::handle(&backend, &one_shard())).status, 200);
        submit(&backend, &metrics, r#"{"payload":{}}"#);
        // Full: it cannot take work now.
        let r = ready(health::handle(&backend, &one_shard()));
        assert_eq!(r.status, 503);
        assert_eq!(json(&r)["components"]["queue"], "unhealthy");
    }

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
