//! Unit tests of `keys.rs`.

use super::*;

#[test]
fn every_key_in_the_table_is_settable_and_every_default_parses() {
    let mut c = Config::default();
    for k in KEYS {
        let sample = k.default.unwrap_or_else(|| match k.name {
            "server.shards" => "2",
            "server.cpus" => "0-1",
            "cache.type" => "memory",
            "cache.redis_url" => "redis://h:1",
            "proxy.default_endpoint" => "billing",
            "auth.api_keys_file" | "auth.admin_keys_file" => "/etc/openhqm/keys",
            "queue.redis_password_file" => "/run/secrets/redis",
            "queue.redis_ca_file" => "/etc/ssl/redis-ca.pem",
            _ => panic!("no sample for {}", k.name),
        });
        set(&mut c, k.name, sample).unwrap_or_else(|e| panic!("{}: {e}", k.name));
    }
}

#[test]
fn invalid_values_name_the_key() {
    let cases = [
        ("server.port", "abc"),
        ("server.port", "70000"),
        ("server.shards", "0"),
        ("worker.count", "-1"),
        ("worker.timeout_seconds", "0"),
        ("worker.retry_delay_base", "nan"),
        ("queue.type", "kafka"),
        ("monitoring.log_level", "loud"),
        ("monitoring.metrics_enabled", "maybe"),
        ("queue.request_queue_name", "a b"),
        ("server.cpus", "x"),
    ];
    for (k, v) in cases {
        let e = set(&mut Config::default(), k, v).unwrap_err();
        assert!(e.0.contains(k), "{k}={v}: {e}");
    }
    let e = set(&mut Config::default(), "server.nope", "1").unwrap_err();
    assert!(e.0.contains("server.nope"));
}

#[test]
fn redis_urls_are_checked_without_echoing_secrets() {
    for ok in [
        "redis://localhost:6379",
        "redis://u:p@h:1/2",
        "redis://[::1]:6379",
    ] {
        assert!(redis_url("queue.redis_url", ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://h",
        "redis://",
        "redis://u:hunter2@h:notaport",
        "redis://h:1/x",
        "unix://relative/path",
    ] {
        let e = redis_url("queue.redis_url", bad).unwrap_err();
        assert!(!e.0.contains("hunter2"), "{e}");
    }
}

#[test]
fn readme_documents_every_key() {
    let readme = include_str!("../../README.md");
    for k in KEYS {
        let row = format!("| `{}` | `{}` |", k.name, env_name(k.name));
        assert!(readme.contains(&row), "README lacks the row for {}", k.name);
    }
}

#[test]
fn env_names_round_trip() {
    for k in KEYS {
        assert_eq!(key_of_env(&env_name(k.name)).as_deref(), Some(k.name));
    }
    assert_eq!(env_name("server.port"), "OPENHQM_SERVER__PORT");
    assert_eq!(key_of_env("OPENHQM_NOPE"), None);
}

#[test]
fn a_redis_deadline_too_long_for_the_lease_is_refused() {
    let mut c = Config::default();
    c.set("queue.type", "redis").unwrap();
    c.set("queue.redis_timeout_seconds", "9").unwrap();
    assert!(c.validate().is_ok());
    c.set("queue.redis_timeout_seconds", "10").unwrap();
    let e = c.validate().unwrap_err();
    assert!(e.0.contains("queue.redis_timeout_seconds"), "{e}");
    // The embedded queue has no lease.
    c.set("queue.type", "memory").unwrap();
    assert!(c.validate().is_ok());
}
