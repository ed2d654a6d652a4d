//! What is sent and what an answer means, sans-IO: the scenarios (`get`, `submit`, `status`,
//! `e2e`, `wait`, `mixed`), the requests they are made of, their wire bytes (built once per thread from
//! templates), and the classification of each response against the OpenHQM contract
//! (docs/API.md): accepted with an id, final or not yet, unknown id, error status, or a 2xx whose
//! body is not what the contract says.

use crate::http;
use crate::ids;
use crate::rng::Rng;
use crate::target::Target;

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `GET` the URL as given: any HTTP server (the null server, a ceiling).
    Get,
    /// `POST /api/v1/submit`, checking each 202's correlation id.
    Submit,
    /// `GET /api/v1/status/{id}` for random ids of a pool submitted first.
    Status,
    /// Submit, then poll `/api/v1/response/{id}` until final: submit→complete latency.
    E2e,
    /// Submit with `Prefer: wait=N` (N = `--deadline`, capped by the server), answered when
    /// final; polled like `e2e` only if the wait ends first.
    Wait,
    /// `--submit-percent` submits, the rest status reads of pool ids.
    Mixed,
}

impl Scenario {
    /// Parses a `--scenario` value.
    pub fn parse(s: &str) -> Option<Scenario> {
        Some(match s {
            "get" => Scenario::Get,
            "submit" => Scenario::Submit,
            "status" => Scenario::Status,
            "e2e" => Scenario::E2e,
            "wait" => Scenario::Wait,
            "mixed" => Scenario::Mixed,
            _ => return None,
        })
    }

    /// Its `--scenario` name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Get => "get",
            Scenario::Submit => "submit",
            Scenario::Status => "status",
            Scenario::E2e => "e2e",
            Scenario::Wait => "wait",
            Scenario::Mixed => "mixed",
        }
    }

    /// Whether a submit's flow goes on until the request is final.
    pub fn follows_to_final(self) -> bool {
        matches!(self, Scenario::E2e | Scenario::Wait)
    }

    /// Whether it reads ids submitted before the measured phase.
    pub fn needs_pool(self) -> bool {
        matches!(self, Scenario::Status | Scenario::Mixed)
    }

    /// The first request of a new flow.
    pub fn first_request(self, rng: &mut Rng, pool: &[u128], submit_percent: u32) -> Request {
        match self {
            Scenario::Get => Request::Get,
            Scenario::Submit | Scenario::E2e => Request::Submit,
            Scenario::Wait => Request::SubmitWait,
            Scenario::Status => Request::Status(pool[rng.below(pool.len())]),
            Scenario::Mixed => {
                if rng.below(100) < submit_percent as usize {
                    Request::Submit
                } else {
                    Request::Status(pool[rng.below(pool.len())])
                }
            }
        }
    }
}

/// A measured thing: one histogram and one row of the report each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET` of the URL.
    Get = 0,
    /// `POST /api/v1/submit`.
    Submit = 1,
    /// `GET /api/v1/status/{id}`.
    Status = 2,
    /// `GET /api/v1/response/{id}` (one poll).
    Poll = 3,
    /// Submit sent (or due) → final response received.
    E2e = 4,
}

/// Number of [`Kind`]s.
pub const KINDS: usize = 5;

impl Kind {
    /// All kinds, in report order.
    pub const ALL: [Kind; KINDS] = [Kind::Get, Kind::Submit, Kind::Status, Kind::Poll, Kind::E2e];

    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Submit => "submit",
            Kind::Status => "status",
            Kind::Poll => "poll",
            Kind::E2e => "e2e",
        }
    }
}

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `GET` of the URL.
    Get,
    /// A submit.
    Submit,
    /// A submit with `Prefer: wait=N`.
    SubmitWait,
    /// Status of an id.
    Status(u128),
    /// Response of an id.
    Poll(u128),
}

impl Request {
    /// Which histogram its answer goes to.
    pub fn kind(self) -> Kind {
        match self {
            Request::Get => Kind::Get,
            Request::Submit | Request::SubmitWait => Kind::Submit,
            Request::Status(_) => Kind::Status,
            Request::Poll(_) => Kind::Poll,
        }
    }
}

/// Wire bytes of every request of a run, precomputed.
#[derive(Debug, Clone)]
pub struct Requests {
    get: Vec<u8>,
    submit: Vec<u8>,
    submit_wait: Vec<u8>,
    status_prefix: Vec<u8>,
    response_prefix: Vec<u8>,
    /// `" HTTP/1.1\r\nhost: ...\r\n\r\n"` after an id.
    id_suffix: Vec<u8>,
}

impl Requests {
    /// Templates for `target`, submitting `operation` (to processor `endpoint` when given) with
    /// a body of about `payload_bytes`; a waiting submit asks for `wait_secs`.
    pub fn new(
        target: &Target,
        operation: &str,
        endpoint: Option<&str>,
        payload_bytes: usize,
        wait_secs: u64,
    ) -> Requests {
        let mut get = Vec::new();
        http::encode_get(&mut get, target.path.as_bytes(), &target.host);
        let body = submit_body(operation, endpoint, payload_bytes);
        let path = target.api_path("/api/v1/submit");
        let mut submit = Vec::new();
        http::encode_post_json(&mut submit, path.as_bytes(), &target.host, &body, None);
        let mut submit_wait = Vec::new();
        let prefer = format!("wait={wait_secs}");
        http::encode_post_json(
            &mut submit_wait,
            path.as_bytes(),
            &target.host,
            &body,
            Some(("prefer", &prefer)),
        );
        let mut id_suffix = Vec::new();
        http::encode_get(&mut id_suffix, b"", &target.host);
        let id_suffix = id_suffix.split_off(4); // drop "GET ", keep " HTTP/1.1\r\nhost..."
        Requests {
            get,
            submit,
            submit_wait,
            status_prefix: format!("GET {}", target.api_path("/api/v1/status/")).into_bytes(),
            response_prefix: format!("GET {}", target.api_path("/api/v1/response/")).into_bytes(),
            id_suffix,
        }
    }

    /// Appends the bytes of `req`.
    pub fn encode(&self, req: Request, out: &mut Vec<u8>) {
        let (prefix, id) = match req {
            Request::Get => return out.extend_from_slice(&self.get),
            Request::Submit => return out.extend_from_slice(&self.submit),
            Request::SubmitWait => return out.extend_from_slice(&self.submit_wait),
            Request::Status(id) => (&self.status_prefix, id),
            Request::Poll(id) => (&self.response_prefix, id),
        };
        out.extend_from_slice(prefix);
        ids::write(id, out);
        out.extend_from_slice(&self.id_suffix);
    }
}

/// `{"payload":{"operation":OP,"data":"xxx…"}}` (then `"metadata":{"endpoint":E}` when an
/// endpoint is given), with as many filler bytes as make the body `payload_bytes` long (never
/// shorter than the body with empty data).
pub fn submit_body(operation: &str, endpoint: Option<&str>, payload_bytes: usize) -> Vec<u8> {
    let op = serde_json::to_string(operation).expect("a string serializes");
    let head = format!("{{\"payload\":{{\"operation\":{op},\"data\":\"");
    let tail = match endpoint {
        None => "\"}}".to_owned(),
        Some(e) => format!(
            "\"}},\"metadata\":{{\"endpoint\":{}}}}}",
            serde_json::to_string(e).expect("a string serializes")
        ),
    };
    let tail = tail.as_str();
    let filler = payload_bytes.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(head.len() + filler + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.resize(head.len() + filler, b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// A request's final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// `COMPLETED`.
    Completed,
    /// `FAILED`.
    Failed,
    /// `TIMEOUT`.
    Timeout,
}

/// What a response means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx that needs nothing more.
    Ok,
    /// A submit's 202 with this correlation id.
    Accepted(u128),
    /// A waiting submit's 200: this id, final.
    AcceptedFinal(u128, Final),
    /// A poll's 200: the request is final.
    Final(Final),
    /// A poll's 202: not final yet.
    NotFinal,
    /// A 404 for an id: the server does not know it.
    Unknown,
    /// Any other non-2xx.
    Error,
    /// A 2xx whose body breaks the contract (no id, another id, an unknown status).
    Bad,
}

/// The final state a status names, if it names one.
fn final_of(status: Option<&[u8]>) -> Option<Final> {
    match status? {
        b"COMPLETED" => Some(Final::Completed),
        b"FAILED" => Some(Final::Failed),
        b"TIMEOUT" => Some(Final::Timeout),
        _ => None,
    }
}

/// Classifies the answer to `req`.
pub fn classify(req: Request, status: u16, body: &[u8]) -> Outcome {
    let ok = (200..300).contains(&status);
    let same_id =
        |id: u128| http::json_str_field(body, "correlation_id").and_then(ids::parse) == Some(id);
    let state = || http::json_str_field(body, "status");
    match req {
        Request::Get if ok => Outcome::Ok,
        Request::Submit | Request::SubmitWait if status == 202 => {
            match http::json_str_field(body, "correlation_id") {
                Some(text) => ids::parse(text).map_or(Outcome::Bad, Outcome::Accepted),
                None => Outcome::Bad,
            }
        }
        Request::SubmitWait if status == 200 => {
            let id = http::json_str_field(body, "correlation_id").and_then(ids::parse);
            match (id, final_of(state())) {
                (Some(id), Some(f)) => Outcome::AcceptedFinal(id, f),
                _ => Outcome::Bad,
            }
        }
        Request::Status(id) if status == 200 => match state() {
            Some(b"PENDING" | b"PROCESSING" | b"COMPLETED" | b"FAILED" | b"TIMEOUT")
                if same_id(id) =>
            {
                Outcome::Ok
            }
            _ => Outcome::Bad,
        },
        Request::Poll(id) if status == 200 && same_id(id) => {
            final_of(state()).map_or(Outcome::Bad, Outcome::Final)
        }
        Request::Poll(id) if status == 202 && same_id(id) => match state() {
            Some(b"PENDING" | b"PROCESSING") => Outcome::NotFinal,
            _ => Outcome::Bad,
        },
        Request::Status(_) | Request::Poll(_) if status == 404 => Outcome::Unknown,
        _ if ok => Outcome::Bad,
        _ => Outcome::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: u128 = 0x550e8400_e29b_41d4_a716_446655440000;
    const ID_TEXT: &str = "550e8400-e29b-41d4-a716-446655440000";

    #[test]
    fn bodies_have_the_asked_size_and_are_json() {
        for size in [0, 10, 50, 1000] {
            for endpoint in [None, Some("null")] {
                let body = submit_body("echo", endpoint, size);
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["payload"]["operation"], "echo");
                assert_eq!(v["metadata"]["endpoint"].as_str(), endpoint);
                let min = submit_body("echo", endpoint, 0).len();
                assert_eq!(body.len(), size.max(min), "size {size}");
            }
        }
        let odd = submit_body("a\"b", Some("x\"y"), 0);
        let v: serde_json::Value = serde_json::from_slice(&odd).unwrap();
        assert_eq!(v["payload"]["operation"], "a\"b");
        assert_eq!(v["metadata"]["endpoint"], "x\"y");
    }

    #[test]
    fn encodes_each_request_on_the_base_path() {
        let t = Target::parse("http://127.0.0.1:9/base/").unwrap();
        let r = Requests::new(&t, "echo", None, 50, 30);
        let text = |req| {
            let mut out = Vec::new();
            r.encode(req, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            text(Request::Get),
            "GET /base/ HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\r\n"
        );
        assert_eq!(
            text(Request::Status(ID)),
            format!("GET /base/api/v1/status/{ID_TEXT} HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\r\n")
        );
        assert!(
            text(Request::Poll(ID)).starts_with(&format!("GET /base/api/v1/response/{ID_TEXT} "))
        );
        let submit = text(Request::Submit);
        assert!(
            submit.starts_with("POST /base/api/v1/submit HTTP/1.1\r\n"),
            "{submit}"
        );
        assert!(submit
            .ends_with("\r\n\r\n{\"payload\":{\"operation\":\"echo\",\"data\":\"xxxxxxxx\"}}"));
        let waiting = text(Request::SubmitWait);
        assert!(waiting.contains("\r\nprefer: wait=30\r\n"), "{waiting}");
        assert_eq!(
            waiting.replace("prefer: wait=30\r\n", ""),
            submit,
            "the same submit, plus the preference"
        );
    }

    #[test]
    fn classifies_by_the_contract() {
        let accepted = format!(r#"{{"correlation_id":"{ID_TEXT}","status":"PENDING"}}"#);
        let done =
            format!(r#"{{"correlation_id":"{ID_TEXT}","status":"COMPLETED","result":{{}}}}"#);
        let failed = format!(r#"{{"correlation_id":"{ID_TEXT}","status":"FAILED"}}"#);
        let other =
            r#"{"correlation_id":"00000000-0000-0000-0000-000000000000","status":"COMPLETED"}"#;
        let b = |s: &str| s.as_bytes().to_vec();

        assert_eq!(
            classify(Request::Submit, 202, &b(&accepted)),
            Outcome::Accepted(ID)
        );
        assert_eq!(classify(Request::Submit, 202, b"{}"), Outcome::Bad);
        assert_eq!(classify(Request::Submit, 200, &b(&done)), Outcome::Bad);
        let wait = Request::SubmitWait;
        assert_eq!(classify(wait, 202, &b(&accepted)), Outcome::Accepted(ID));
        assert_eq!(
            classify(wait, 200, &b(&done)),
            Outcome::AcceptedFinal(ID, Final::Completed)
        );
        assert_eq!(
            classify(wait, 200, &b(&accepted)),
            Outcome::Bad,
            "200 but not final"
        );
        assert_eq!(classify(wait, 503, b"{}"), Outcome::Error);
        assert_eq!(classify(Request::Submit, 503, b"{}"), Outcome::Error);
        assert_eq!(classify(Request::Get, 204, b""), Outcome::Ok);
        assert_eq!(classify(Request::Get, 500, b""), Outcome::Error);

        assert_eq!(
            classify(Request::Status(ID), 200, &b(&accepted)),
            Outcome::Ok
        );
        assert_eq!(classify(Request::Status(ID), 200, &b(other)), Outcome::Bad);
        assert_eq!(classify(Request::Status(ID), 404, b"{}"), Outcome::Unknown);

        let poll = Request::Poll(ID);
        assert_eq!(classify(poll, 202, &b(&accepted)), Outcome::NotFinal);
        assert_eq!(
            classify(poll, 200, &b(&done)),
            Outcome::Final(Final::Completed)
        );
        assert_eq!(
            classify(poll, 200, &b(&failed)),
            Outcome::Final(Final::Failed)
        );
        assert_eq!(
            classify(poll, 200, &b(&accepted)),
            Outcome::Bad,
            "200 must be final"
        );
        assert_eq!(classify(poll, 200, &b(other)), Outcome::Bad, "another id");
        assert_eq!(classify(poll, 404, b"{}"), Outcome::Unknown);
        assert_eq!(classify(poll, 503, b"{}"), Outcome::Error);
    }

    #[test]
    fn mixes_submits_and_reads_by_percent() {
        let mut rng = Rng::new(3);
        let pool = [1u128, 2, 3];
        let n = 10_000;
        let submits = (0..n)
            .filter(|_| Scenario::Mixed.first_request(&mut rng, &pool, 20) == Request::Submit)
            .count();
        assert!((1_700..2_300).contains(&submits), "{submits} of {n}");
        for _ in 0..100 {
            match Scenario::Status.first_request(&mut rng, &pool, 20) {
                Request::Status(id) => assert!(pool.contains(&id)),
                other => panic!("{other:?}"),
            }
        }
    }
}
