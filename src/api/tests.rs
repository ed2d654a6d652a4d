//! Unit tests of `mod.rs`.

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

/// Submits `body` through the handler's `accept` (with the processor `nothing` registered),
/// registering a waiter when `watch`.
fn accept<'b>(
    backend: &'b EmbeddedBackend,
    metrics: &RefCell<ShardMetrics>,
    body: &str,
    watch: bool,
) -> Result<(crate::backend::Accepted, Option<crate::backend::Watch<'b>>), Error> {
    let mut processors = Processors::default();
    processors.register("nothing", Nothing);
    let routes = routing::Routes::default();
    let rules = submit::Rules {
        owner: None,
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
        watch,
    ))
}

fn submit(backend: &EmbeddedBackend, metrics: &RefCell<ShardMetrics>, body: &str) -> Response {
    accept(backend, metrics, body, false)
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
    // Nothing has drained yet: the longest hint.
    assert_eq!(r.retry_after, Some(60));
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
    let (accepted, watch) = accept(&backend, &metrics, r#"{"payload":{}}"#, true).unwrap();
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
        owner: None,
        default_timeout: Duration::from_secs(300),
        processors: &processors,
        routes: &routes,
    };
    let run = |body: &str| {
        ready(batch::handle(
            &backend,
            &one_shard(),
            0,
            &metrics,
            &rules,
            3,
            body.as_bytes(),
            Timestamp::now(),
        ))
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
