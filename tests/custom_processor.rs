//! `examples/custom_processor.rs` end to end: the example's broker (its `sha256` processor
//! registered on the `Broker` builder) started in this process on a free port, driven over real
//! HTTP. The expected digests come from coreutils' `sha256sum`, not from the crate the example
//! uses.

mod common;

#[allow(dead_code)]
#[path = "../examples/custom_processor.rs"]
mod example;

use std::time::{Duration, Instant};

use common::{assert_error, wait_final, Client};
use openhqm::Config;

fn start() -> openhqm::Running {
    let mut config = Config::default();
    config.set("server.host", "127.0.0.1").unwrap();
    config.set("server.port", "0").unwrap();
    config.set("server.shards", "2").unwrap();
    example::broker(config).start().expect("broker starts")
}

fn submit(client: &mut Client, body: &str) -> String {
    let r = client.post_json("/api/v1/submit", body);
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["correlation_id"].as_str().unwrap().to_owned()
}

#[test]
fn the_registered_processor_runs_the_jobs_that_name_it() {
    let running = start();
    let mut client = Client::connect(running.local_addr());
    let deadline = Instant::now() + Duration::from_secs(10);

    // The payload is hashed as the bytes the client sent (spacing and UTF-8 kept).
    let cases = [
        (
            r#"{"payload":{"doc":"hello"},"metadata":{"endpoint":"sha256"}}"#,
            "a8b7945165015ab4cdca15acec05a1eaab7f363af81adf2f9379377fd306a32b",
            15,
        ),
        (
            r#"{"payload":{"doc": "héllo", "n": [1, 2]},"metadata":{"endpoint":"sha256"}}"#,
            "c54b4834fe28fe7fdd54e7e285412965f30b08cd189751fc5ad0b663d9236f10",
            30,
        ),
    ];
    for (body, digest, bytes) in cases {
        let id = submit(&mut client, body);
        let r = wait_final(&mut client, &id, deadline);
        let v = r.json();
        assert_eq!(v["status"], "COMPLETED", "{v}");
        assert_eq!(v["result"]["sha256"], digest, "{v}");
        assert_eq!(v["result"]["bytes"], bytes, "{v}");
        assert_eq!(v["status_code"], 200);
    }

    // Naming none, or the built-ins by name, runs the built-in operations.
    for body in [
        r#"{"payload":{"operation":"uppercase","data":"abc"}}"#,
        r#"{"payload":{"operation":"uppercase","data":"abc"},"metadata":{"endpoint":"builtin"}}"#,
    ] {
        let id = submit(&mut client, body);
        let v = wait_final(&mut client, &id, deadline).json();
        assert_eq!(v["result"]["output"], "ABC", "{v}");
    }

    // A name nothing is registered under is refused before anything is queued.
    let r = client.post_json(
        "/api/v1/submit",
        r#"{"payload":{},"metadata":{"endpoint":"md5"}}"#,
    );
    let v = assert_error(&r, 422);
    assert_eq!(v["detail"][0]["loc"][2], "endpoint", "{v}");

    running.shutdown();
    running.wait().expect("clean stop");
}

#[test]
fn a_default_processor_that_is_not_registered_stops_the_start() {
    let e = example::broker(Config::default())
        .default_processor("nope")
        .start()
        .err()
        .expect("refused");
    assert!(e.to_string().contains("\"nope\""), "{e}");
}
