//! The pipelined RESP client on a real Redis: a call past its deadline is answered `Timeout`
//! (by the connection's deadline sweep, not a timer per call), and its late reply is absorbed in
//! order, so the calls after it still get their own replies.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use openhqm::config::IoDriver;
use openhqm::resp::{Client, Frame, RedisError, RedisTarget};
use openhqm::shard::runtime;

#[test]
fn a_late_reply_is_absorbed_and_the_next_call_gets_its_own() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let target = RedisTarget::parse(&redis.url()).expect("url");
        let client = Client::start(target, Duration::from_secs(5), "test", false);
        let mut up = false;
        for _ in 0..250 {
            if client.call(&openhqm::resp::Cmd::new(b"PING")).await.is_ok() {
                up = true;
                break;
            }
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(up, "no connection to redis");

        // Redis sleeps 1 s on this connection; the call allows 200 ms.
        let started = Instant::now();
        let slow = client
            .pipeline_within(Duration::from_millis(200), 1, |out| {
                openhqm::resp::encode::command(out, &[b"DEBUG", b"SLEEP", b"1"])
            })
            .await;
        let waited = started.elapsed();
        assert_eq!(slow, Err(RedisError::Timeout));
        assert!(
            waited < Duration::from_millis(900),
            "answered after {waited:?}"
        );

        // The next call's reply comes after the late `+OK` of DEBUG SLEEP, which must not be
        // taken for it.
        let echo = client
            .call(&openhqm::resp::Cmd::new(b"ECHO").arg(b"mine"))
            .await;
        assert_eq!(
            echo,
            Ok(Frame::Bulk(Some(bytes::Bytes::from_static(b"mine"))))
        );
        assert_eq!(client.reconnects(), 0);
    });
}
