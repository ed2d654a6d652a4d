//! Raw-byte HTTP/1.1 tests over real sockets: pipelining, chunked bodies, `100-continue`, size
//! limits, request smuggling and the rest of RELIABILITY.md's bad-input catalogue. After each bad
//! input the broker must still answer `GET /health` on a new connection, and every error body must
//! be JSON with `detail`.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{
    assert_error, assert_healthy, send_raw, send_raw_expect_close, send_raw_keep, wait_final,
    Broker, Client, ReadError,
};

const SUBMIT_HEAD: &str =
    "POST /api/v1/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";

/// A complete submit request with a Content-Length body.
fn submit_req(body: &str) -> String {
    format!("{SUBMIT_HEAD}Content-Length: {}\r\n\r\n{body}", body.len())
}

fn echo_body(data: &str) -> String {
    format!("{{\"payload\":{{\"operation\":\"echo\",\"data\":\"{data}\"}}}}")
}

/// Sends `wire` on a fresh connection, expects one error response with `status` and a close,
/// then checks that the broker is still healthy. Returns the response.
fn rejects_and_closes(b: &Broker, wire: &[u8], status: u16) -> common::Resp {
    let r = send_raw_expect_close(b.addr, wire);
    assert_error(&r, status);
    assert!(
        r.closes(),
        "a closing error response should say `connection: close`: {:?}",
        r.headers
    );
    assert_healthy(b.addr);
    r
}

#[test]
fn pipelined_64_requests_in_one_write_are_answered_in_order() {
    let b = Broker::start_with(&["--shards", "2"]);
    // 0 mod 4: submit echo "p{i}"; 1: GET /health; 2: submit; 3: HEAD /health.
    let mut wire = Vec::new();
    for i in 0..64 {
        let req = match i % 4 {
            0 | 2 => submit_req(&echo_body(&format!("p{i}"))),
            1 => "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
            _ => "HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
        };
        wire.extend_from_slice(req.as_bytes());
    }
    let mut c = Client::connect(b.addr);
    c.send(&wire).unwrap();
    let mut ids = Vec::new();
    for i in 0..64 {
        let r = c
            .read_final(i % 4 == 3)
            .unwrap_or_else(|e| panic!("response {i}: {e:?}"));
        match i % 4 {
            0 | 2 => {
                assert_eq!(r.status, 202, "response {i}: {}", r.text());
                let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
                assert_eq!(
                    r.header("location"),
                    Some(format!("/api/v1/status/{id}").as_str())
                );
                ids.push((i, id));
            }
            1 => {
                assert_eq!(r.status, 200, "response {i}");
                assert_eq!(r.json()["status"], "healthy", "response {i}");
            }
            _ => {
                assert_eq!(r.status, 200, "response {i}");
                assert!(r.body.is_empty());
                let len: usize = r.header("content-length").unwrap().parse().unwrap();
                assert!(len > 0, "HEAD keeps the GET's content-length");
            }
        }
    }
    // Nothing beyond the 64 responses.
    c.set_read_timeout(Duration::from_millis(200));
    assert!(
        matches!(c.read_one(false), Err(ReadError::Timeout)),
        "extra bytes after 64 responses"
    );
    // The connection is still usable.
    assert_eq!(c.get("/health").status, 200);

    let distinct: std::collections::HashSet<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(distinct.len(), 32);
    // Each id's result is the data of the request at its position: responses were not reordered.
    let deadline = Instant::now() + Duration::from_secs(15);
    for (i, id) in &ids {
        let r = wait_final(&mut c, id, deadline);
        let v = r.json();
        assert_eq!(v["status"], "COMPLETED");
        assert_eq!(
            v["result"]["output"],
            format!("p{i}"),
            "id {id} of request {i}"
        );
    }
}

#[test]
fn chunked_submit_body_in_one_write() {
    let b = Broker::start();
    let body = echo_body("chunked hello");
    let (first, rest) = body.split_at(10);
    let wire = format!(
        "{SUBMIT_HEAD}Transfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{first}\r\n{:X}\r\n{rest}\r\n0\r\nX-Trailer: t\r\n\r\n\
         GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        first.len(),
        rest.len()
    );
    let (mut c, rs) = send_raw_keep(b.addr, wire.as_bytes(), 2);
    assert_eq!(rs[0].status, 202, "{}", rs[0].text());
    assert_eq!(
        rs[1].status, 200,
        "the request after the chunked body is parsed on its own"
    );
    let id = rs[0].json()["correlation_id"].as_str().unwrap().to_owned();
    let r = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(r.json()["result"]["output"], "chunked hello");
}

/// The chunked body of `body` as three chunks (sizes in hex, one with an extension).
fn chunks_of(body: &str) -> Vec<String> {
    let (a, rest) = body.split_at(5);
    let (b, c) = rest.split_at(rest.len() / 2);
    vec![
        format!("{:x}\r\n{a}\r\n", a.len()),
        format!("{:x};x=y\r\n{b}\r\n", b.len()),
        format!("{:X}\r\n{c}\r\n", c.len()),
    ]
}

#[test]
fn chunked_submit_body_one_chunk_per_write() {
    let b = Broker::start();
    let body = echo_body("chunk per write");
    let mut c = Client::connect(b.addr);
    c.send(format!("{SUBMIT_HEAD}Transfer-Encoding: chunked\r\n\r\n").as_bytes())
        .unwrap();
    // Not synchronisation: the pauses are the subject, so each chunk reaches the server in a read
    // of its own (nothing on the wire says when the server has read the one before).
    for chunk in chunks_of(&body) {
        std::thread::sleep(Duration::from_millis(40));
        c.send(chunk.as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(40));
    c.send(b"0\r\n\r\n").unwrap();
    let r = c.response();
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    // Same connection, next request: framing ended exactly at the last chunk.
    let r = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(r.json()["result"]["output"], "chunk per write");
}

/// Sends `wire` in pieces of `step` bytes with a pause after each, so every piece is its own read.
fn send_in_pieces(c: &mut Client, wire: &[u8], step: usize) {
    for piece in wire.chunks(step) {
        c.send(piece)
            .unwrap_or_else(|e| panic!("writing {:?}: {e}", String::from_utf8_lossy(piece)));
        // Not synchronisation: a slow client is what is tested.
        std::thread::sleep(Duration::from_millis(15));
    }
}

#[test]

fn request_head_split_across_writes() {
    let b = Broker::start();
    let mut c = Client::connect(b.addr);
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /health HTTP/1.1\r\nHo").unwrap();
    // Not synchronisation: the pause splits the head across two reads, which is the subject.
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"st: 127.0.0.1\r\n\r\n").unwrap();
    let r = c
        .read_final(false)
        .expect("a response to a head sent in two writes");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "healthy");
}

#[test]

fn chunked_submit_body_split_across_writes() {
    let b = Broker::start();
    let body = echo_body("slow chunks");
    let mut wire = format!("{SUBMIT_HEAD}Transfer-Encoding: chunked\r\n\r\n");
    for chunk in chunks_of(&body) {
        wire.push_str(&chunk);
    }
    wire.push_str("0\r\n\r\n");
    let mut c = Client::connect(b.addr);
    c.set_read_timeout(Duration::from_secs(5));
    // 7-byte pieces: the head, the chunk-size lines and the CRLFs all arrive split.
    send_in_pieces(&mut c, wire.as_bytes(), 7);
    let r = c
        .read_final(false)
        .expect("a response to a chunked submit sent in pieces");
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let r = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(r.json()["result"]["output"], "slow chunks");
}

#[test]

fn pipelined_requests_spanning_several_reads() {
    // 300 requests of 100 bytes = 30,000 bytes, more than one 16 KiB read; a read boundary falls
    // inside a request head.
    let b = Broker::start();
    let one = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ";
    let pad = 100 - one.len() - 4;
    let req = format!("{one}{}\r\n\r\n", "p".repeat(pad));
    assert_eq!(req.len(), 100);
    let mut c = Client::connect(b.addr);
    c.set_read_timeout(Duration::from_secs(5));
    c.send(req.repeat(300).as_bytes()).unwrap();
    for i in 0..300 {
        let r = c
            .read_final(false)
            .unwrap_or_else(|e| panic!("response {i} of 300: {e:?}"));
        assert_eq!(r.status, 200, "response {i}: {}", r.text());
    }
}

#[test]
fn expect_100_continue_then_202() {
    let b = Broker::start();
    let body = echo_body("continued");
    let mut c = Client::connect(b.addr);
    c.send(
        format!(
            "{SUBMIT_HEAD}Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    c.set_read_timeout(Duration::from_secs(5));
    let interim = c.read_one(false).expect("interim response");
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue before sending the body"
    );
    assert!(interim.body.is_empty());
    c.send(body.as_bytes()).unwrap();
    let r = c.response();
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.interim.is_empty(), "only one 100 Continue");
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let r = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(r.json()["result"]["output"], "continued");
}

#[test]
fn expect_100_continue_with_huge_length_gets_413_at_once() {
    let b = Broker::start();
    let mut c = Client::connect(b.addr);
    let started = Instant::now();
    c.send(
        format!(
            "{SUBMIT_HEAD}Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            64 << 20
        )
        .as_bytes(),
    )
    .unwrap();
    c.set_read_timeout(Duration::from_secs(5));
    // The first thing on the wire must be the final 413, not a 100.
    let r = c
        .read_one(false)
        .expect("a response without sending the body");
    assert_eq!(
        r.status, 413,
        "no 100 Continue for a body that will be refused"
    );
    assert_error(&r, 413);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "connection closed after the 413"
    );
    assert_healthy(b.addr);

    // The same for a media type that will be refused: 415 at once, no 100.
    let mut c = Client::connect(b.addr);
    c.send(
        b"POST /api/v1/submit HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\n\
          Content-Length: 20\r\n\r\n",
    )
    .unwrap();
    c.set_read_timeout(Duration::from_secs(5));
    let r = c
        .read_one(false)
        .expect("a response without sending the body");
    assert_error(&r, 415);
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "connection closed after the 415"
    );
    assert_healthy(b.addr);
}

#[test]
fn streamed_64mib_body_is_refused_without_reading_it() {
    let b = Broker::start();
    let total: usize = 64 << 20;
    let mut c = Client::connect(b.addr);
    let mut writer = c.stream.try_clone().unwrap();
    let head = format!("{SUBMIT_HEAD}Content-Length: {total}\r\n\r\n");
    let wrote = std::thread::spawn(move || {
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0usize;
        if writer.write_all(head.as_bytes()).is_err() {
            return (0, true);
        }
        while sent < total {
            match writer.write(&chunk) {
                Ok(0) | Err(_) => return (sent, true),
                Ok(n) => sent += n,
            }
        }
        (sent, false)
    });
    let r = c
        .read_final(false)
        .expect("413 while the body is still being sent");
    assert_error(&r, 413);
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "connection closed after the 413"
    );
    let (sent, failed) = wrote.join().unwrap();
    assert!(
        failed && sent < total,
        "the server read the whole body ({sent} bytes) instead of closing"
    );
    assert_healthy(b.addr);
}

#[test]
fn endless_chunked_body_is_413_after_the_limit() {
    let b = Broker::start_with(&["--server.max_body_bytes", "65536"]);
    let mut c = Client::connect(b.addr);
    let mut writer = c.stream.try_clone().unwrap();
    let wrote = std::thread::spawn(move || {
        let data = "a".repeat(8192);
        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
        if writer
            .write_all(format!("{SUBMIT_HEAD}Transfer-Encoding: chunked\r\n\r\n").as_bytes())
            .is_err()
        {
            return 0usize;
        }
        let mut sent = 0;
        // 16 MiB at most; the server must stop us long before.
        while sent < (16 << 20) {
            if writer.write_all(chunk.as_bytes()).is_err() {
                return sent;
            }
            sent += data.len();
        }
        sent
    });
    let r = c
        .read_final(false)
        .expect("413 for an over-limit chunked body");
    assert_error(&r, 413);
    assert!(c.closed_within(Duration::from_secs(5)));
    assert!(
        wrote.join().unwrap() < (16 << 20),
        "the server kept reading an over-limit chunked body"
    );
    assert_healthy(b.addr);
}

#[test]
fn content_length_and_transfer_encoding_together_is_400_and_close() {
    let b = Broker::start();
    // A classic CL.TE smuggle: the "body" hides a second request. It must never be answered.
    let wire = format!(
        "{SUBMIT_HEAD}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
         GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    );
    rejects_and_closes(&b, wire.as_bytes(), 400);
    let wire = format!(
        "{SUBMIT_HEAD}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n5\r\n{{}}xx\r\n0\r\n\r\n\
         GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    );
    rejects_and_closes(&b, wire.as_bytes(), 400);
}

#[test]
fn duplicate_or_invalid_content_length_is_400_and_close() {
    let b = Broker::start();
    let body = echo_body("x");
    for cl in [
        format!(
            "Content-Length: {}\r\nContent-Length: {}\r\n",
            body.len(),
            body.len() + 1
        ),
        format!("Content-Length: {}, {}\r\n", body.len(), body.len() + 1),
        "Content-Length: abc\r\n".into(),
        "Content-Length: -1\r\n".into(),
        format!("Content-Length: +{}\r\n", body.len()),
        "Content-Length: 0x13\r\n".into(),
        "Content-Length: \r\n".into(),
        "Content-Length: 99999999999999999999999\r\n".into(),
    ] {
        let wire = format!("{SUBMIT_HEAD}{cl}\r\n{body}");
        let r = send_raw_expect_close(b.addr, wire.as_bytes());
        assert_error(&r, 400);
        assert_healthy(b.addr);
    }
    // Identical duplicates MAY be accepted as one length (RFC 9112 §6.3); the broker does.
    let wire = format!(
        "{SUBMIT_HEAD}Content-Length: {0}, {0}\r\n\r\n{body}",
        body.len()
    );
    let r = send_raw(b.addr, wire.as_bytes(), 1);
    assert_eq!(r[0].status, 202, "{}", r[0].text());
}

#[test]
fn transfer_coding_errors() {
    let b = Broker::start();
    let chunked_body = "2\r\n{}\r\n0\r\n\r\n";
    // chunked must be last: 400; unknown codings: 501; chunked twice: 400. All close.
    for (te, status) in [
        ("chunked, gzip", 400),
        ("gzip, chunked", 501),
        ("xchunked", 501),
        ("chunked, chunked", 400),
        ("chunked\r\nTransfer-Encoding: chunked", 400),
    ] {
        let wire = format!("{SUBMIT_HEAD}Transfer-Encoding: {te}\r\n\r\n{chunked_body}");
        rejects_and_closes(&b, wire.as_bytes(), status);
    }
}

#[test]

fn transfer_encoding_in_http_1_0_is_400_and_close() {
    let b = Broker::start();
    let body = echo_body("x");
    let wire = format!(
        "POST /api/v1/submit HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    rejects_and_closes(&b, wire.as_bytes(), 400);
}

#[test]
fn bad_chunk_framing_is_400_and_close() {
    let b = Broker::start();
    for chunks in [
        "zz\r\n{}\r\n0\r\n\r\n",
        "\r\n{}\r\n0\r\n\r\n",
        "0_2e\r\n",
        "fffffffffffffffffff\r\n",
        "-2\r\n{}\r\n0\r\n\r\n",
        "2\n{}\r\n0\r\n\r\n",
        "2\r\n{}XX0\r\n\r\n",
    ] {
        let wire = format!("{SUBMIT_HEAD}Transfer-Encoding: chunked\r\n\r\n{chunks}");
        let r = send_raw_expect_close(b.addr, wire.as_bytes());
        assert_error(&r, 400);
        assert_healthy(b.addr);
    }
}

#[test]
fn request_line_errors() {
    let b = Broker::start();
    let cases: &[(&str, u16)] = &[
        ("GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("GET /health HTTP/3.0\r\nHost: x\r\n\r\n", 505),
        ("get /health HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        ("FOO /health HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        ("GET  /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /health HTTP/1.x\r\nHost: x\r\n\r\n", 400),
        ("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ];
    for (wire, status) in cases {
        let r = send_raw_expect_close(b.addr, wire.as_bytes());
        assert_error(&r, *status);
        assert_healthy(b.addr);
    }
    // HTTP/1.2 is served as 1.1.
    let r = send_raw(b.addr, b"GET /health HTTP/1.2\r\nHost: x\r\n\r\n", 1);
    assert_eq!(r[0].status, 200);
}

#[test]
fn host_header_rules() {
    let b = Broker::start();
    for wire in [
        "GET /health HTTP/1.1\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a b\r\n\r\n",
    ] {
        let r = send_raw_expect_close(b.addr, wire.as_bytes());
        assert_error(&r, 400);
        assert_healthy(b.addr);
    }
    // HTTP/1.0 needs no Host.
    let r = send_raw(b.addr, b"GET /health HTTP/1.0\r\n\r\n", 1);
    assert_eq!(r[0].status, 200);
}

#[test]
fn header_syntax_errors_are_400() {
    let b = Broker::start();
    for wire in [
        "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n".as_bytes(),
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
    ] {
        let r = send_raw_expect_close(b.addr, wire);
        assert_error(&r, 400);
        assert_healthy(b.addr);
    }
}

#[test]
fn nine_kib_uri_is_414() {
    let b = Broker::start();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9 * 1024));
    rejects_and_closes(&b, long_uri.as_bytes(), 414);
    let long_post = format!(
        "POST /api/v1/submit?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "q".repeat(9 * 1024)
    );
    rejects_and_closes(&b, long_post.as_bytes(), 414);
}

#[test]

fn sixty_four_kib_header_is_431() {
    let b = Broker::start();
    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(64 * 1024)
    );
    rejects_and_closes(&b, huge_header.as_bytes(), 431);
}

#[test]
fn five_hundred_headers_is_431() {
    let b = Broker::start();
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    rejects_and_closes(&b, many.as_bytes(), 431);
}

#[test]
fn unknown_expectation_is_417() {
    let b = Broker::start();
    let r = send_raw_expect_close(
        b.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nExpect: gzip\r\n\r\n",
    );
    assert_error(&r, 417);
    assert_healthy(b.addr);
}

#[test]
fn routes_404_405_head_options_and_absolute_form() {
    let b = Broker::start();
    let mut c = Client::connect(b.addr);

    for path in [
        "/",
        "/nope",
        "/health/",
        "/api/v1/submit/",
        "/api/v1/statusx",
    ] {
        let r = c.get(path);
        assert_error(&r, 404);
        assert!(!r.closes(), "a 404 keeps the connection");
    }

    let r = c.get("/api/v1/submit");
    assert_error(&r, 405);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = c.request("PUT", "/health", &[], b"");
    assert_error(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = c.request("DELETE", "/metrics", &[], b"");
    assert_error(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = c.request("TRACE", "/health", &[], b"");
    assert!(
        r.status == 405 || r.status == 501,
        "TRACE must be disabled, got {}",
        r.status
    );
    assert_error(&r, r.status);

    // HEAD: same headers as GET, no body. The GET pipelined right after it must parse cleanly.
    c.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = c.read_final(true).unwrap();
    let get = c.read_final(false).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(get.status, 200);
    let head_len: usize = head
        .header("content-length")
        .expect("HEAD has content-length")
        .parse()
        .unwrap();
    assert_eq!(
        head_len,
        get.body.len(),
        "HEAD's content-length is the GET body's length"
    );
    assert_eq!(head.header("content-type"), get.header("content-type"));
    assert_eq!(get.json()["status"], "healthy");

    let r = c.request("OPTIONS", "/api/v1/submit", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    assert!(r.body.is_empty());
    let r = c.request("OPTIONS", "/health", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));

    // absolute-form must be accepted (RFC 9112 §3.2.2).
    c.send(b"GET http://127.0.0.1/health?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "healthy");

    // Still the same keep-alive connection.
    assert_eq!(c.get("/health").status, 200);
}

#[test]
fn header_read_timeout_answers_408_or_closes() {
    let b = Broker::start_with(&["--server.header_read_timeout_seconds", "1"]);
    let mut c = Client::connect(b.addr);
    let started = Instant::now();
    c.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    let took = expect_408_or_close(&mut c, started);
    assert!(
        took >= Duration::from_millis(900),
        "timed out too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "header-read timeout took {took:?}"
    );
    assert_healthy(b.addr);
}

#[test]
fn body_read_timeout_answers_408() {
    let b = Broker::start_with(&["--server.body_read_timeout_seconds", "1"]);
    let mut c = Client::connect(b.addr);
    let started = Instant::now();
    c.send(format!("{SUBMIT_HEAD}Content-Length: 100\r\n\r\n{{\"payload\"").as_bytes())
        .unwrap();
    let took = expect_408_or_close(&mut c, started);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "body timeout took {took:?}"
    );
    assert_healthy(b.addr);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let b = Broker::start_with(&["--server.idle_timeout_seconds", "1"]);
    let mut c = Client::connect(b.addr);
    assert_eq!(c.get("/health").status, 200);
    let started = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(4)),
        "idle connection still open after 4 s"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    // An idle close sends nothing (no 408 for a connection that never started a request).
    assert_healthy(b.addr);
}

#[test]
fn connection_close_and_http_1_0_end_the_connection() {
    let b = Broker::start();
    for wire in [
        &b"GET /health HTTP/1.0\r\n\r\nGET /health HTTP/1.0\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (mut c, r) = send_raw_keep(b.addr, wire, 1);
        assert_eq!(r[0].status, 200);
        assert!(r[0].closes(), "response should say connection: close");
        // The second pipelined request is not answered.
        assert!(c.closed_within(Duration::from_secs(5)));
    }
    // HTTP/1.0 with keep-alive stays open.
    let (mut c, r) = send_raw_keep(
        b.addr,
        b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        1,
    );
    assert_eq!(r[0].status, 200);
    assert!(!r[0].closes());
    c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(c.response().status, 200);
}

#[test]
fn body_size_limit_boundary() {
    let b = Broker::start_with(&["--server.max_body_bytes", "200000"]);
    let mut c = Client::connect(b.addr);
    // A body of exactly the limit, arriving over several reads, is accepted and kept byte for byte.
    let prefix = "{\"payload\":{\"operation\":\"echo\",\"data\":\"";
    let suffix = "\"}}";
    let data = "z".repeat(200_000 - prefix.len() - suffix.len());
    let body = format!("{prefix}{data}{suffix}");
    assert_eq!(body.len(), 200_000);
    let r = c.post_json("/api/v1/submit", &body);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let r = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(
        r.json()["result"]["output"].as_str().map(str::len),
        Some(data.len())
    );
    // One byte more is a 413, decided from Content-Length, and the connection closes.
    let body = format!("{prefix}{data}z{suffix}");
    let wire = format!("{SUBMIT_HEAD}Content-Length: {}\r\n\r\n", body.len());
    let r = send_raw_expect_close(b.addr, wire.as_bytes());
    assert_error(&r, 413);
    assert_healthy(b.addr);
}

#[test]
fn every_rejection_leaves_other_connections_working() {
    // A keep-alive connection opened before a burst of bad input keeps working through it.
    let b = Broker::start();
    let mut keep = Client::connect(b.addr);
    assert_eq!(keep.get("/health").status, 200);
    for wire in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET /health HTTP/2.0\r\n\r\n",
        b"POST /api/v1/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let r = send_raw_expect_close(b.addr, wire);
        assert!((400..=505).contains(&r.status));
        assert_error(&r, r.status);
        assert_eq!(keep.get("/health").status, 200);
    }
}

/// Waits for the answer to a request the client never finished: a 408 followed by a close, or a
/// plain close. Returns the time since `started`.
fn expect_408_or_close(c: &mut Client, started: Instant) -> Duration {
    c.set_read_timeout(Duration::from_secs(5));
    match c.read_one(false) {
        Ok(r) => {
            assert_error(&r, 408);
            assert!(
                c.closed_within(Duration::from_secs(2)),
                "closed after the 408"
            );
        }
        Err(ReadError::Closed) => {}
        Err(e) => panic!("expected 408 or a close, got {e:?}"),
    }
    started.elapsed()
}

/// Sends `bytes` one at a time, `gap` apart, until the broker closes the connection or answers;
/// returns how long the connection lasted from the first byte, or `None` if every byte went
/// through without an answer.
fn trickle(c: &mut Client, bytes: &[u8], gap: Duration) -> Option<Duration> {
    let started = Instant::now();
    c.set_read_timeout(gap);
    for b in bytes {
        if c.send(&[*b]).is_err() {
            return Some(started.elapsed());
        }
        match c.read_one(false) {
            Ok(r) => {
                assert_error(&r, 408);
                return Some(started.elapsed());
            }
            Err(ReadError::Closed) => return Some(started.elapsed()),
            Err(_) => {} // nothing yet: send the next byte
        }
    }
    None
}

#[test]
fn a_trickled_head_or_body_cannot_outlast_its_deadline() {
    // One byte every 200 ms never leaves a read waiting a whole second, but the head as a
    // whole (and the body as a whole) must arrive within the 1 s deadlines.
    let b = Broker::start_with(&[
        "--server.header_read_timeout_seconds",
        "1",
        "--server.body_read_timeout_seconds",
        "1",
    ]);
    let gap = Duration::from_millis(200);
    let head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut c = Client::connect(b.addr);
    let lasted = trickle(&mut c, head, gap).expect("the trickled head was cut off");
    assert!(lasted < Duration::from_secs(4), "head lasted {lasted:?}");

    let mut c = Client::connect(b.addr);
    c.send(format!("{SUBMIT_HEAD}Content-Length: 200\r\n\r\n").as_bytes())
        .unwrap();
    let body = [b' '; 200];
    let lasted = trickle(&mut c, &body, gap).expect("the trickled body was cut off");
    assert!(lasted < Duration::from_secs(4), "body lasted {lasted:?}");
    assert_healthy(b.addr);
}

#[test]
fn bare_lf_line_endings_are_400() {
    let b = Broker::start();
    for raw in [
        &b"GET /health HTTP/1.1\nHost: 127.0.0.1\n\n"[..],
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Empty:\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b  \n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\n",
    ] {
        let r = send_raw_expect_close(b.addr, raw);
        assert_error(&r, 400);
    }
    // CRLF everywhere, with an empty value and trailing blanks: fine.
    let ok = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Empty:\r\nX-A: b \t\r\n\r\n";
    let r = send_raw(b.addr, ok, 1);
    assert_eq!(r[0].status, 200);
    assert_healthy(b.addr);
}
