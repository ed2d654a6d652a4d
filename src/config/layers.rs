//! The configuration layers: defaults < TOML file < `OPENHQM_*` environment < command line.
//! Inputs are passed in (not read from globals) so the precedence is tested directly.

use std::fmt::Write as _;

use super::keys::{env_name, is_known, key_of_env, KEYS};
use super::sources::{Source, Sources};
use super::{Config, ConfigError};

/// What the command line asked for.
#[derive(Debug)]
pub enum Loaded {
    /// Run with this configuration.
    Run(Box<Config>),
    /// Print this text (help or version) and exit 0.
    Print(String),
}

/// Short flags and the keys they set.
const ALIASES: &[(&str, &str)] = &[
    ("host", "server.host"),
    ("port", "server.port"),
    ("shards", "server.shards"),
    ("cpus", "server.cpus"),
    ("workers", "worker.count"),
    ("queue", "queue.type"),
    ("log-level", "monitoring.log_level"),
    ("log-format", "monitoring.log_format"),
];

/// Builds the configuration from the arguments (without the program name), the environment and
/// the file `--config` names, read with `read_file`.
pub fn load<A, E, F>(args: A, env: E, read_file: F) -> Result<Loaded, ConfigError>
where
    A: IntoIterator<Item = String>,
    E: IntoIterator<Item = (String, String)>,
    F: Fn(&str) -> std::io::Result<String>,
{
    load_with_sources(args, env, read_file).map(|(loaded, _)| loaded)
}

/// [`load`], also telling which layer set each key (for `openhqm check-config`).
pub fn load_with_sources<A, E, F>(
    args: A,
    env: E,
    read_file: F,
) -> Result<(Loaded, Sources), ConfigError>
where
    A: IntoIterator<Item = String>,
    E: IntoIterator<Item = (String, String)>,
    F: Fn(&str) -> std::io::Result<String>,
{
    let mut file = None;
    let mut overrides = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok((Loaded::Print(help()), Sources::default())),
            "-V" | "--version" => {
                let version = format!("openhqm {}\n", env!("CARGO_PKG_VERSION"));
                return Ok((Loaded::Print(version), Sources::default()));
            }
            _ => {}
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(ConfigError(format!(
                "unexpected argument {arg:?} (see --help)"
            )));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (flag.to_owned(), None),
        };
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .ok_or_else(|| ConfigError(format!("--{name} needs a value")))?,
        };
        if name == "config" {
            file = Some(value);
            continue;
        }
        let key = ALIASES
            .iter()
            .find(|(a, _)| *a == name)
            .map_or(name.as_str(), |(_, k)| k);
        if !is_known(key) {
            return Err(ConfigError(format!("unknown option --{name} (see --help)")));
        }
        overrides.push((key.to_owned(), value, format!("--{name}")));
    }

    let mut c = Config::default();
    // Every key some layer set, and which layer set it last: what depends on whether a key was
    // given at all asks it, and check-config prints it.
    let mut sources = Sources::default();
    if let Some(path) = file {
        let text = read_file(&path)
            .map_err(|e| ConfigError(format!("--config {path}: cannot read: {e}")))?;
        apply_toml(&mut c, &text, &mut sources).map_err(|e| ConfigError(format!("{path}: {e}")))?;
    }
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("OPENHQM_"))
        .collect();
    env.sort();
    let mut ignored = Vec::new();
    for (var, value) in env {
        let key = match key_of_env(&var) {
            Some(k) if is_known(&k) => k,
            Some(k) if is_python_only(&k) => {
                ignored.push(var);
                continue;
            }
            _ => return Err(ConfigError(format!("unknown configuration variable {var}"))),
        };
        c.set(&key, &value)
            .map_err(|e| ConfigError(format!("{var}: {e}")))?;
        sources.record(&key, Source::Env(var));
    }
    if !ignored.is_empty() {
        c.notices.push(format!(
            "ignoring settings of the Python OpenHQM this broker does not use: {}",
            ignored.join(", ")
        ));
    }
    for (key, _, flag) in &overrides {
        sources.record(key, Source::Flag(flag.clone()));
    }
    if sources.given("queue.redis_url") && !sources.given("queue.type") {
        c.set("queue.type", "redis")?;
        sources.record("queue.type", Source::Inferred("queue.redis_url"));
        c.notices.push(
            "queue.type is not set and queue.redis_url is: using Redis (queue.type = redis)"
                .to_owned(),
        );
    }
    for (key, value, _) in overrides {
        c.set(&key, &value)
            .map_err(|e| ConfigError(format!("--{key}: {e}")))?;
    }
    c.validate()?;
    Ok((Loaded::Run(Box::new(c)), sources))
}

/// Keys of the Python OpenHQM's settings that this broker does not use (other queue brokers,
/// its process model, partitioning): set in the environment, they are ignored with a warning so
/// an existing deployment still starts.
fn is_python_only(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "server.workers",
        "server.reload",
        "server.debug",
        "server.log_level",
        "cache.max_connections",
        "queue.max_connections",
        "worker.name",
        "worker.id",
        "monitoring.tracing_enabled",
        "monitoring.otlp_endpoint",
    ];
    const PREFIXES: &[&str] = &[
        "queue.kafka_",
        "queue.sqs_",
        "queue.azure_",
        "queue.gcp_",
        "queue.pubsub_",
        "queue.mqtt_",
        "queue.nats_",
        "queue.rabbitmq_",
        "queue.eventhubs_",
        "queue.handler",
        "partitioning.",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Applies a TOML document of `[section]` tables (nested ones for deeper keys,
/// `[proxy.endpoints.billing]`). Lists and the `headers` maps are passed on as JSON text.
fn apply_toml(c: &mut Config, text: &str, sources: &mut Sources) -> Result<(), ConfigError> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError(format!("invalid TOML: {e}")))?;
    for (section, table) in doc {
        let toml::Value::Table(table) = table else {
            return Err(ConfigError(format!(
                "{section:?} must be a [section] table"
            )));
        };
        apply_table(c, &section, table, sources)?;
    }
    Ok(())
}

fn apply_table(
    c: &mut Config,
    prefix: &str,
    table: toml::Table,
    sources: &mut Sources,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let name = format!("{prefix}.{key}");
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Table(t) if key != "headers" => {
                apply_table(c, &name, t, sources)?;
                continue;
            }
            v @ (toml::Value::Array(_) | toml::Value::Table(_)) => json_of(&name, v)?,
            toml::Value::Datetime(_) => {
                return Err(ConfigError(format!(
                    "{name}: expected a string, number, boolean or list"
                )))
            }
        };
        c.set(&name, &text)?;
        sources.record(&name, Source::File);
    }
    Ok(())
}

/// A TOML list or table of scalars as JSON text.
fn json_of(name: &str, v: toml::Value) -> Result<String, ConfigError> {
    fn conv(v: toml::Value) -> Option<serde_json::Value> {
        Some(match v {
            toml::Value::String(s) => serde_json::Value::String(s),
            toml::Value::Integer(i) => serde_json::Value::from(i),
            toml::Value::Float(f) => serde_json::Value::from(f),
            toml::Value::Boolean(b) => serde_json::Value::Bool(b),
            toml::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(conv).collect::<Option<_>>()?)
            }
            toml::Value::Table(t) => serde_json::Value::Object(
                t.into_iter()
                    .map(|(k, v)| Some((k, conv(v)?)))
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Datetime(_) => return None,
        })
    }
    conv(v)
        .map(|j| j.to_string())
        .ok_or_else(|| ConfigError(format!("{name}: dates are not accepted here")))
}

/// The `--help` text, generated from the key table.
pub fn help() -> String {
    let mut s = String::from(
        "openhqm: thread-per-core broker for asynchronous HTTP request processing\n\n\
         USAGE: openhqm [--config FILE] [--KEY VALUE]...\n\
         \x20      openhqm check-config [--config FILE] [--KEY VALUE]...\n\
         \x20        (load and check the configuration as a start would, print it as TOML with\n\
         \x20        where each value came from, secrets as ***; exit 2 if it is invalid)\n\
         \x20      printf %s \"$KEY\" | openhqm hash-key   (digest of an API key, for auth.api_keys)\n\n\
         Precedence: defaults < --config FILE (TOML, [section] key = value) < environment < flags.\n\
         Every key below is a flag (--server.port 8001) and an environment variable.\n\
         Short flags: --host --port --shards --cpus --workers (worker.count) --queue (queue.type)\n\
         --log-level --log-format.  Also: --help, --version.\n\nKEYS:\n",
    );
    for k in KEYS {
        let default = k
            .default
            .map(|d| format!(" [default: {d}]"))
            .unwrap_or_default();
        let _ = writeln!(s, "  --{:<38} {}{}", k.name, k.help, default);
        let _ = writeln!(s, "    {}", env_name(k.name));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueType;
    use std::time::Duration;

    fn run(args: &[&str], env: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigError> {
        let file = file.map(str::to_owned);
        let loaded = load(
            args.iter().map(|s| s.to_string()),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            |_| {
                file.clone()
                    .ok_or_else(|| std::io::Error::other("no such file"))
            },
        )?;
        match loaded {
            Loaded::Run(c) => Ok(*c),
            Loaded::Print(_) => panic!("printed"),
        }
    }

    #[test]
    fn precedence_defaults_file_env_cli() {
        let toml =
            "[server]\nport = 8001\nhost = \"127.0.0.1\"\n[worker]\ncount = 5\nmax_retries = 7\n";
        let env = [
            ("OPENHQM_SERVER__PORT", "8002"),
            ("OPENHQM_WORKER__COUNT", "6"),
        ];
        let c = run(&["--config", "f.toml", "--port", "8003"], &env, Some(toml)).unwrap();
        assert_eq!(c.server.port, 8003); // cli beats env beats file
        assert_eq!(c.worker.count, 6); // env beats file
        assert_eq!(c.worker.max_retries, 7); // file beats default
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.worker.batch_size, 10); // default
        let c = run(&["--config=f.toml", "--worker.count=9"], &env, Some(toml)).unwrap();
        assert_eq!((c.server.port, c.worker.count), (8002, 9));
    }

    #[test]
    fn unrelated_environment_is_ignored() {
        let c = run(
            &[],
            &[("PATH", "/bin"), ("OPENHQM_CACHE__TTL_SECONDS", "7200")],
            None,
        )
        .unwrap();
        assert_eq!(c.cache.ttl, Duration::from_secs(7200));
    }

    #[test]
    fn python_only_keys_start_with_one_notice() {
        let c = run(
            &[],
            &[
                ("OPENHQM_SERVER__WORKERS", "4"),
                ("OPENHQM_QUEUE__KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
                ("OPENHQM_PARTITIONING__ENABLED", "true"),
                ("OPENHQM_SERVER__PORT", "9000"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.notices.len(), 1, "{:?}", c.notices);
        for var in [
            "OPENHQM_SERVER__WORKERS",
            "OPENHQM_QUEUE__KAFKA_BOOTSTRAP_SERVERS",
            "OPENHQM_PARTITIONING__ENABLED",
        ] {
            assert!(c.notices[0].contains(var), "{:?}", c.notices);
        }
        assert!(!c.notices[0].contains("k:9092"), "names, never values");
        assert!(run(&[], &[], None).unwrap().notices.is_empty());
    }

    #[test]
    fn a_redis_url_without_a_queue_type_selects_redis() {
        let url = ("OPENHQM_QUEUE__REDIS_URL", "redis://127.0.0.1:6390");
        let c = run(&[], &[url], None).unwrap();
        assert_eq!(c.queue.kind, QueueType::Redis);
        assert!(c.notices.iter().any(|n| n.contains("queue.type = redis")));
        let c = run(&[], &[url, ("OPENHQM_QUEUE__TYPE", "memory")], None).unwrap();
        assert_eq!(c.queue.kind, QueueType::Memory, "an explicit type wins");
        assert!(c.notices.is_empty());
        let c = run(&["--queue.type", "memory"], &[url], None).unwrap();
        assert_eq!(c.queue.kind, QueueType::Memory);
        let file = "[queue]\nredis_url = \"redis://127.0.0.1:6390\"\n";
        let from_file = run(&["--config", "f.toml"], &[], Some(file)).unwrap();
        assert_eq!(from_file.queue.kind, QueueType::Redis);
        assert_eq!(run(&[], &[], None).unwrap().queue.kind, QueueType::Memory);
    }

    #[test]
    fn errors_name_the_key() {
        type Case<'a> = (
            &'a [&'a str],
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (&["--port", "x"], &[], None, "server.port"),
            (&["--nope", "1"], &[], None, "--nope"),
            (&["--port"], &[], None, "--port"),
            (&["stray"], &[], None, "stray"),
            (
                &[],
                &[("OPENHQM_SERVER__PORTT", "1")],
                None,
                "OPENHQM_SERVER__PORTT",
            ),
            (
                &[],
                &[("OPENHQM_WORKER__COUNT", "0")],
                None,
                "OPENHQM_WORKER__COUNT",
            ),
            (
                &["--config", "f"],
                &[],
                Some("[server]\nbogus = 1\n"),
                "server.bogus",
            ),
            (
                &["--config", "f"],
                &[],
                Some("[server]\nport = \"x\"\n"),
                "server.port",
            ),
            (&["--config", "f"], &[], Some("port = 1\n"), "port"),
            (&["--config", "f"], &[], Some("[server\n"), "invalid TOML"),
            (&["--config", "missing"], &[], None, "missing"),
        ];
        for (args, env, file, want) in cases {
            let e = run(args, env, *file).unwrap_err();
            assert!(e.0.contains(want), "{args:?} {env:?}: {e}");
        }
    }

    #[test]
    fn help_lists_every_key_and_env_name() {
        let h = help();
        for k in KEYS {
            assert!(
                h.contains(k.name) && h.contains(&env_name(k.name)),
                "{}",
                k.name
            );
        }
        let loaded = load(["--help".to_string()], [], |_| Ok(String::new())).unwrap();
        assert!(matches!(loaded, Loaded::Print(t) if t.contains("USAGE")));
    }
}
