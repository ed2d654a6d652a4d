//! One shard's upstream connection pool against a real HTTP server on a free port: keep-alive
//! reuse, the bound on open connections, deadlines, a stale keep-alive connection replaced,
//! refused connections, a moved upstream found by a new lookup, oversized and cut-off responses.

mod common;

use std::net::TcpListener;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::upstream::{Reply, Upstream};
use openhqm::config::IoDriver;
use openhqm::shard::runtime;
use openhqm::upstream::{encode, Addresses, Exchange, Pool, UpstreamError, UpstreamRequest};

fn request(body: &str) -> Bytes {
    let mut out = BytesMut::new();
    let headers: &[(&str, &[u8])] = &[("content-type", b"application/json")];
    encode(
        &UpstreamRequest {
            method: "POST",
            target: "/echo",
            host: "upstream.test",
            headers,
            body: body.as_bytes(),
        },
        &mut out,
    )
    .expect("a valid request");
    out.freeze()
}

fn exchange(body: &str, timeout: Duration) -> Exchange {
    Exchange {
        request: request(body),
        head_request: false,
        max_body: 1024,
        timeout,
    }
}

/// An upstream that answers every request with its own body as JSON.
fn echo() -> Upstream {
    Upstream::start(|_, seen| Reply::json(200, std::str::from_utf8(&seen.body).unwrap()))
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(f)
}

#[test]
fn keep_alive_connections_are_reused() {
    let up = echo();
    let pool = Pool::new(
        Addresses::fixed(vec![up.addr]),
        4,
        Duration::from_secs(2),
        None,
    );
    run(async {
        for i in 0..20 {
            let body = format!("{{\"n\":{i}}}");
            let resp = pool
                .send(&exchange(&body, Duration::from_secs(5)))
                .await
                .unwrap();
            assert_eq!(resp.status, 200);
            assert_eq!(&resp.body[..], body.as_bytes());
            assert_eq!(resp.header("content-type"), Some(&b"application/json"[..]));
        }
    });
    assert_eq!(pool.opened(), 1, "one connection for 20 requests in a row");
    assert_eq!(up.connections(), 1);
    assert_eq!(up.requests(), 20);
}

#[test]
fn open_connections_stay_within_the_bound() {
    // Each answer waits a little, so the requests overlap and queue for the two connections.
    let up = Upstream::start(|_, _| {
        Reply::After(Duration::from_millis(20), Box::new(Reply::json(200, "{}")))
    });
    let pool = Rc::new(Pool::new(
        Addresses::fixed(vec![up.addr]),
        2,
        Duration::from_secs(2),
        None,
    ));
    run(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                monoio::spawn(async move {
                    let ex = exchange("{}", Duration::from_secs(10));
                    pool.send(&ex).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().status, 200);
        }
    });
    assert_eq!(up.requests(), 8);
    assert!(pool.opened() <= 2, "opened {}", pool.opened());
    assert_eq!(up.connections() as u64, pool.opened());
}

#[test]
fn a_silent_upstream_times_out_and_gives_its_connection_back() {
    let up = Upstream::start(|_, _| {
        Reply::After(Duration::from_secs(3), Box::new(Reply::json(200, "{}")))
    });
    let pool = Pool::new(
        Addresses::fixed(vec![up.addr]),
        1,
        Duration::from_secs(2),
        None,
    );
    run(async {
        let r = pool.send(&exchange("{}", Duration::from_millis(200))).await;
        assert_eq!(r, Err(UpstreamError::Timeout));
    });
    assert_eq!(
        pool.open(),
        0,
        "the abandoned connection is closed, not leaked"
    );
}

#[test]
fn a_connection_the_upstream_closed_is_replaced_once() {
    // Answers, then closes without saying so: the idle connection the pool keeps is dead.
    let up = Upstream::start(|_, _| {
        Reply::RawThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
    });
    let pool = Pool::new(
        Addresses::fixed(vec![up.addr]),
        1,
        Duration::from_secs(2),
        None,
    );
    run(async {
        for _ in 0..3 {
            let resp = pool.send(&exchange("{}", Duration::from_secs(5))).await;
            assert_eq!(resp.map(|r| r.body), Ok(Bytes::from_static(b"ok")));
        }
    });
    assert_eq!(up.requests(), 3, "each request reached the upstream once");
    assert_eq!(pool.opened(), 3);
}

#[test]
fn a_closed_port_is_a_connect_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let pool = Pool::new(
        Addresses::fixed(vec![port]),
        1,
        Duration::from_secs(2),
        None,
    );
    run(async {
        let r = pool.send(&exchange("{}", Duration::from_secs(5))).await;
        assert!(matches!(r, Err(UpstreamError::Connect(_))), "{r:?}");
    });
    assert_eq!(pool.open(), 0);
}

#[test]
fn the_first_address_that_accepts_is_used() {
    let up = echo();
    // A host name may resolve to an address nothing listens on before the one that answers.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let pool = Pool::new(
        Addresses::fixed(vec![closed, up.addr]),
        1,
        Duration::from_secs(2),
        None,
    );
    run(async {
        let r = pool.send(&exchange("{}", Duration::from_secs(5))).await;
        assert_eq!(r.map(|r| r.status), Ok(200));
    });
}

#[test]
fn oversized_and_cut_off_responses_are_errors() {
    let up = Upstream::start(|n, _| match n {
        0 => Reply::json(200, &"x".repeat(2000)),
        1 => Reply::RawThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()),
        2 => Reply::Drop,
        _ => Reply::json(200, "{}"),
    });
    let pool = Pool::new(
        Addresses::fixed(vec![up.addr]),
        1,
        Duration::from_secs(2),
        None,
    );
    run(async {
        let ex = exchange("{}", Duration::from_secs(5));
        assert_eq!(pool.send(&ex).await, Err(UpstreamError::TooLarge));
        assert!(matches!(
            pool.send(&ex).await,
            Err(UpstreamError::Malformed(_))
        ));
        assert!(pool.send(&ex).await.is_err(), "no answer at all");
        // The pool recovers: a fresh connection answers.
        assert_eq!(pool.send(&ex).await.map(|r| r.status), Ok(200));
    });
    assert_eq!(pool.open(), 1);
}

/// Where the upstream of `a_moved_upstream_is_found_again` lives now, as its DNS would say.
static MOVED_TO: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();

fn moved_lookup(host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
    assert_eq!((host, port), ("upstream.test", 8080));
    Ok(vec![*MOVED_TO.get().expect("set before the lookup")])
}

#[test]
fn a_moved_upstream_is_found_again() {
    // The name resolved at start to an address nothing listens on any more; the next lookup
    // (started by the refused connect, off the shard's thread) finds the new one.
    let up = echo();
    MOVED_TO.set(up.addr).unwrap();
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let addrs = Addresses::new(
        "upstream.test",
        8080,
        vec![gone],
        Duration::from_secs(3600),
        moved_lookup,
    );
    let pool = Pool::new(addrs, 1, Duration::from_secs(2), None);
    run(async {
        let ex = exchange("{}", Duration::from_secs(5));
        assert!(matches!(
            pool.send(&ex).await,
            Err(UpstreamError::Connect(_))
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match pool.send(&ex).await {
                Ok(r) => {
                    assert_eq!(r.status, 200);
                    break;
                }
                Err(e) => {
                    assert!(matches!(e, UpstreamError::Connect(_)), "{e:?}");
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the new address was never used"
                    );
                    monoio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    });
    assert_eq!(up.requests(), 1);
}
