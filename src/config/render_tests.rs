//! Tests of `render`: every key shown, sources named, the round trip through `--config`, and
//! secrets kept out.

use super::*;
use crate::auth::KeyDigest;
use crate::config::{load_with_sources, ConfigError, Loaded};

/// Loads as the binary does, from flags, environment and a file's text.
fn load(
    args: &[&str],
    env: &[(&str, &str)],
    file: Option<&str>,
) -> Result<(Config, Sources), ConfigError> {
    let file = file.map(str::to_owned);
    let (loaded, sources) = load_with_sources(
        args.iter().map(|s| s.to_string()),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        |_| {
            file.clone()
                .ok_or_else(|| std::io::Error::other("no such file"))
        },
    )?;
    match loaded {
        Loaded::Run(c) => Ok((*c, sources)),
        Loaded::Print(t) => panic!("printed {t:?}"),
    }
}

/// The rendered text read back as the only layer.
fn reload(text: &str) -> Config {
    load(&["--config", "effective.toml"], &[], Some(text))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .0
}

/// A value other than the default for every key of the table (a valid whole together).
fn non_defaults() -> Vec<(&'static str, String)> {
    let digest = |k: &[u8]| KeyDigest::of(k).to_string();
    let pairs: &[(&str, &str)] = &[
        ("server.host", "127.0.0.2"),
        ("server.port", "8123"),
        ("server.shards", "3"),
        ("server.cpus", "0-1,3"),
        ("server.max_batch", "7"),
        ("server.max_wait_seconds", "2.5"),
        ("server.max_waiters", "11"),
        ("server.max_connections", "12"),
        ("server.max_body_bytes", "4096"),
        ("server.max_header_bytes", "2048"),
        ("server.max_uri_bytes", "1024"),
        ("server.header_read_timeout_seconds", "0.25"),
        ("server.body_read_timeout_seconds", "4"),
        ("server.idle_timeout_seconds", "61"),
        ("server.shutdown_grace_seconds", "0.1"),
        ("server.io_driver", "epoll"),
        ("server.role", "worker"),
        ("queue.type", "redis"),
        ("queue.redis_url", "redis://10.0.0.1:6380/2"),
        ("queue.request_queue_name", "rq"),
        ("queue.response_queue_name", "rs"),
        ("queue.dlq_retention_seconds", "86400.123456789"),
        ("queue.durability", "relaxed"),
        ("queue.dlq_name", "dl"),
        ("queue.max_depth", "99"),
        ("queue.max_bytes", "8192"),
        ("queue.redis_password_file", "/run/secrets/redis password"),
        ("queue.redis_ca_file", "/etc/ssl/redis ca.pem"),
        ("queue.redis_timeout_seconds", "0.75"),
        ("queue.redis_max_in_flight", "5"),
        ("worker.count", "3"),
        ("worker.batch_size", "4"),
        ("worker.timeout_seconds", "100"),
        ("worker.max_retries", "0"),
        ("worker.retry_delay_base", "0.3"),
        ("worker.retry_delay_max", "0.7"),
        ("cache.type", "redis"),
        ("cache.redis_url", "redis://10.0.0.1:6380/2"),
        ("cache.ttl_seconds", "200"),
        ("proxy.enabled", "true"),
        ("proxy.default_endpoint", "billing"),
        ("proxy.forward_headers", "*"),
        ("proxy.strip_headers", "Cookie, X-Tab\t\"q\""),
        ("proxy.max_response_bytes", "1000"),
        ("proxy.dns_refresh_seconds", "5"),
        ("auth.api_keys_file", "/etc/openhqm/api keys"),
        ("auth.admin_keys_file", "/etc/openhqm/admin"),
        ("auth.protect_metrics", "true"),
        ("auth.rate_limit_per_second", "2.5"),
        ("monitoring.metrics_enabled", "false"),
        ("monitoring.log_level", "debug"),
        ("monitoring.log_format", "text"),
    ];
    let mut v: Vec<(&'static str, String)> =
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    v.push((
        "auth.api_keys",
        format!("{},{}", digest(b"a"), digest(b"b")),
    ));
    v.push(("auth.admin_keys", digest(b"c")));
    v
}

#[test]
fn every_key_of_the_table_is_shown() {
    let c = Config::default();
    for k in KEYS {
        assert!(
            shown(&c, k.name).is_some(),
            "render.rs does not show {}",
            k.name
        );
    }
    let e = EndpointConfig::default();
    for field in ENDPOINT_KEYS {
        assert!(endpoint_shown(&e, field).is_some(), "{field}");
    }
}

#[test]
fn round_trip_through_config_gives_the_same_config() {
    let pairs = non_defaults();
    for k in KEYS {
        let (_, v) = pairs
            .iter()
            .find(|(n, _)| *n == k.name)
            .unwrap_or_else(|| panic!("give {} a non-default value here", k.name));
        let mut c = Config::default();
        c.set(k.name, v).unwrap();
        assert_ne!(c, Config::default(), "{}: {v:?} is its default", k.name);
    }
    let mut args: Vec<String> = pairs.iter().map(|(k, v)| format!("--{k}={v}")).collect();
    args.extend(
        [
            "--proxy.endpoints.billing.url=http://127.0.0.1:9/invoice?a=\"b\"",
            "--proxy.endpoints.billing.method=put",
            "--proxy.endpoints.billing.timeout_seconds=1.5",
            "--proxy.endpoints.billing.auth_type=bearer",
            "--proxy.endpoints.billing.auth_token_file=/run/token",
            "--proxy.endpoints.billing.max_connections=3",
            "--proxy.endpoints.billing.retry_on=[500]",
            "--proxy.endpoints.billing.ca_file=/etc/ca.pem",
            "--proxy.endpoints.plain.url=https://example.test",
            "--proxy.endpoints.plain.retry_on=[]",
            "--proxy.endpoints.plain.auth_type=basic",
            "--proxy.endpoints.plain.auth_username=me",
            "--proxy.endpoints.plain.auth_password_file=/run/pw",
            r#"--routing.routes=[{"name":"eu","match_field":"metadata.tenant","match_value":"eu","priority":-2,"endpoint":"billing","method":"PATCH"},{"name":"re","match_field":"payload.kind","match_pattern":"^a\\d+$","endpoint":"plain"}]"#,
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (c, sources) = load(&args, &[], None).unwrap();
    assert_eq!(c.routes.len(), 2);
    let text = effective_toml(&c, &sources);
    assert_eq!(reload(&text), c, "{text}");

    // And the defaults (commented-out keys stay unset).
    let (d, sources) = load(&[], &[], None).unwrap();
    let text = effective_toml(&d, &sources);
    assert_eq!(reload(&text), d, "{text}");
}

#[test]
fn each_value_names_its_layer() {
    let file = "[server]\nhost = \"127.0.0.1\"\nport = 8001\n[worker]\ncount = 5\n";
    let env = [
        ("OPENHQM_WORKER__COUNT", "6"),
        ("OPENHQM_QUEUE__REDIS_URL", "redis://127.0.0.1:6390"),
        (
            "OPENHQM_PROXY__ENDPOINTS__BILLING__URL",
            "http://127.0.0.1:9",
        ),
    ];
    let args = [
        "--config",
        "f.toml",
        "--port",
        "8003",
        "--worker.batch_size=4",
    ];
    let (c, sources) = load(&args, &env, Some(file)).unwrap();
    let text = effective_toml(&c, &sources);
    for want in [
        "\n[server]\nhost = \"127.0.0.1\"  # file\nport = 8003  # flag --port\n",
        &format!("\n# shards = {}  # default (number of CPUs)\n", c.nr_shards()),
        "\n# cpus = (unset: no pinning)  # default\n",
        "\ncount = 6  # env OPENHQM_WORKER__COUNT\n",
        "\nbatch_size = 4  # flag --worker.batch_size\n",
        "\nmax_retries = 3  # default\n",
        "\ntype = \"redis\"  # inferred from queue.redis_url\n",
        "\n# type = \"redis\"  # default (follows queue.type)\n",
        "\n# notice: queue.type is not set and queue.redis_url is",
        "\n[proxy.endpoints.billing]\nurl = \"http://127.0.0.1:9\"  # env OPENHQM_PROXY__ENDPOINTS__BILLING__URL\nmethod = \"POST\"  # default\n",
        "\n# [[routing.routes]]: none  # default\n",
        "\nretry_delay_base = 1  # default\n",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}

#[test]
fn secrets_never_appear() {
    let (c, sources) = load(
        &[
            "--queue.redis_url=redis://user:SECRET-1@127.0.0.1:6390",
            "--cache.redis_url=redis://user:SECRET-1@127.0.0.1:6390",
            "--proxy.enabled=true",
            "--proxy.endpoints.a.url=http://127.0.0.1:9",
            "--proxy.endpoints.a.auth_type=bearer",
            "--proxy.endpoints.a.auth_token=SECRET-2",
            r#"--proxy.endpoints.a.headers={"X-Api-Token":"SECRET-3"}"#,
            "--proxy.endpoints.b.url=http://127.0.0.1:9",
            "--proxy.endpoints.b.auth_type=basic",
            "--proxy.endpoints.b.auth_username=me",
            "--proxy.endpoints.b.auth_password=SECRET-4",
        ],
        &[],
        None,
    )
    .unwrap();
    let text = effective_toml(&c, &sources);
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("redis_url = \"redis://user:***@127.0.0.1:6390\"  # flag"));
    assert!(text.contains("auth_token = \"***\""), "{text}");
    assert!(
        text.contains("headers = { \"X-Api-Token\" = \"***\" }"),
        "{text}"
    );
    // Still TOML that loads: the secrets come back as ***.
    let back = reload(&text);
    assert_eq!(
        back.proxy.endpoints["a"].auth_token,
        Some(Secret("***".into()))
    );

    // URLs outside proxy mode (not validated) and a Redis password without a user.
    let (c, sources) = load(
        &[
            "--queue.redis_url=redis://SECRET-5@127.0.0.1:6390",
            "--proxy.endpoints.c.url=http://u:SECRET-6@127.0.0.1:9",
            "--proxy.default_endpoint=http://u:SECRET-7@127.0.0.1:9",
        ],
        &[],
        None,
    )
    .unwrap();
    let text = effective_toml(&c, &sources);
    assert!(!text.contains("SECRET"), "{text}");
    reload(&text);
}

#[test]
fn values_are_toml_of_the_same_value() {
    assert_eq!(seconds(Duration::from_secs(30)), "30");
    assert_eq!(seconds(Duration::from_millis(1500)), "1.5");
    assert_eq!(seconds(Duration::from_nanos(1)), "0.000000001");
    for text in [
        "0.1",
        "0.3",
        "2.675",
        "31535999.999999999",
        "86400.123456789",
    ] {
        let d = crate::config::keys::secs("k", text).unwrap();
        let back = crate::config::keys::secs("k", &seconds(d)).unwrap();
        assert_eq!(back, d, "{text}");
    }
    let weird = "a\"b\\c\nd\u{1}e\u{7f}é";
    let doc: toml::Table = format!("k = {}", string(weird)).parse().unwrap();
    assert_eq!(doc["k"].as_str(), Some(weird));
}
