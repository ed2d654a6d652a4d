//! The deployment kit (`docker-compose.yml`, `deploy/`) checked against the broker itself: the
//! host paths the compose file mounts exist; every `OPENHQM_*` variable and TOML file the kit
//! sets is configuration the broker accepts; stop timeouts cover the drain; and every
//! `openhqm_*` metric the Grafana dashboard, the alert rules and the KEDA triggers query is one a
//! running broker exports, used as its type allows, with labels its samples carry.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::upstream::{Reply, Upstream};
use common::{wait_final, Broker};
use openhqm::config::keys::{is_known, key_of_env};
use openhqm::config::{self, Loaded, QueueType};
use openhqm::Config;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Files and configuration.
// ---------------------------------------------------------------------------------------------

#[test]
fn compose_mounts_files_that_exist() {
    let text = read("docker-compose.yml");
    let mut mounts = 0;
    for (n, line) in text.lines().enumerate() {
        let item = line.trim().trim_start_matches("- ").trim_matches('"');
        if let Some(rest) = item.strip_prefix("./") {
            let host = rest.split(':').next().unwrap();
            assert!(
                root().join(host).exists(),
                "docker-compose.yml:{}: mounts ./{host}, which does not exist",
                n + 1
            );
            mounts += 1;
        }
        if let Some(context) = item.strip_prefix("build:") {
            let dockerfile = root().join(context.trim()).join("Dockerfile");
            assert!(
                dockerfile.is_file(),
                "{}: no Dockerfile",
                dockerfile.display()
            );
        }
    }
    // prometheus.yml, alerts.yml, two provisioning folders, the dashboard.
    assert!(
        mounts >= 5,
        "found only {mounts} ./ mounts: is the scanner still right?"
    );
}

/// One `OPENHQM_*` assignment found in a kit file: the variable, its value when the file gives
/// one literally (not for Kubernetes `valueFrom`), and where.
struct Assignment {
    var: String,
    value: Option<String>,
    at: String,
}

/// Every `OPENHQM_*` assignment in `text`, in the forms the kit uses: compose's `KEY: value` or
/// `- KEY=value`, Kubernetes' `- name: KEY` then `value: v`, systemd's `Environment=KEY=value`.
/// A non-comment line naming `OPENHQM_` in any other form fails, so nothing goes unchecked.
fn assignments(file: &str, text: &str) -> Vec<Assignment> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.starts_with('#') || !t.contains("OPENHQM_") {
            continue;
        }
        let at = format!("{file}:{}", i + 1);
        let unquote = |v: &str| v.trim().trim_matches('"').trim_matches('\'').to_owned();
        let found = if let Some(var) = t.strip_prefix("- name: ") {
            let value = lines
                .get(i + 1)
                .and_then(|next| next.trim().strip_prefix("value:"))
                .map(unquote);
            Some((var.trim().to_owned(), value))
        } else {
            let t = t
                .strip_prefix("Environment=")
                .or_else(|| t.strip_prefix("- "))
                .unwrap_or(t);
            t.starts_with("OPENHQM_")
                .then(|| t.split_once([':', '=']))
                .flatten()
                .map(|(var, value)| (var.to_owned(), Some(unquote(value))))
        };
        let (var, value) = found.unwrap_or_else(|| panic!("{at}: unrecognised use of OPENHQM_"));
        out.push(Assignment { var, value, at });
    }
    out
}

/// The kit's files that may set `OPENHQM_*` variables (documentation and JSON excluded).
fn kit_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&root().join("deploy"), &mut paths);
    let mut files: Vec<String> = paths
        .iter()
        .filter(|p| !matches!(p.extension().and_then(|e| e.to_str()), Some("md" | "json")))
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    files.push("docker-compose.yml".into());
    files.sort();
    files
}

#[test]
fn every_openhqm_variable_in_the_kit_is_a_known_key_with_a_valid_value() {
    let mut checked = BTreeSet::new();
    for file in kit_files() {
        for a in assignments(&file, &read(&file)) {
            let key = key_of_env(&a.var)
                .filter(|k| is_known(k))
                .unwrap_or_else(|| panic!("{}: {} is not a configuration key", a.at, a.var));
            if let Some(value) = &a.value {
                Config::default()
                    .set(&key, value)
                    .unwrap_or_else(|e| panic!("{}: {}={value:?}: {e}", a.at, a.var));
            }
            checked.insert(a.var);
        }
    }
    for must in [
        "OPENHQM_QUEUE__TYPE",
        "OPENHQM_QUEUE__REDIS_URL",
        "OPENHQM_SERVER__CPUS",
    ] {
        assert!(
            checked.contains(must),
            "no kit file sets {must}: scanner broken?"
        );
    }
}

/// Loads `toml` as the broker does with `--config`, with `env` as the environment.
fn load(what: &str, toml: &str, env: &[(&str, &str)]) -> Config {
    let args = ["--config".to_owned(), "kit.toml".to_owned()];
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    match config::load(args, env, |_| Ok(toml.to_owned())) {
        Ok(Loaded::Run(c)) => *c,
        Ok(Loaded::Print(text)) => panic!("{what}: printed {text:?} instead of loading"),
        Err(e) => panic!("{what}: the broker refuses it: {e}"),
    }
}

/// The indented block after the line `header` (a YAML block scalar), de-indented.
fn block_after(text: &str, header: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != header).skip(1);
    let first = lines.next().expect("block after header");
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(lines.take_while(|l| l.trim().is_empty() || l.starts_with(&" ".repeat(indent))))
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The number after `key` on the first line that starts with it (`45`, `"30"`, `40s`).
fn number_after(file: &str, text: &str, key: &str) -> f64 {
    let line = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{file}: no {key}"));
    line.trim()
        .trim_matches('"')
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("{file}: {key}{line} is not a number"))
}

#[test]
fn the_kit_configuration_files_load_and_stop_timeouts_cover_the_drain() {
    // systemd: the example /etc/openhqm/openhqm.toml, and TimeoutStopSec above its grace.
    let c = load(
        "deploy/systemd/openhqm.toml",
        &read("deploy/systemd/openhqm.toml"),
        &[],
    );
    assert_eq!(c.queue.kind, QueueType::Redis);
    let unit = read("deploy/systemd/openhqm.service");
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/openhqm --config /etc/openhqm/openhqm.toml\n")
    );
    let stop = number_after("openhqm.service", &unit, "TimeoutStopSec=");
    assert!(
        stop > c.server.shutdown_grace.as_secs_f64(),
        "TimeoutStopSec={stop}"
    );

    // Kubernetes sidecar: the ConfigMap's TOML with the Redis URL from the environment.
    let sidecar = read("deploy/kubernetes/sidecar.yaml");
    let toml = block_after(&sidecar, "openhqm.toml: |");
    let c = load(
        "sidecar.yaml ConfigMap",
        &toml,
        &[("OPENHQM_QUEUE__REDIS_URL", "redis://redis:6379")],
    );
    assert_eq!(c.queue.kind, QueueType::Redis);

    // Compose and the standalone Deployment: the stop timeout above preStop + grace.
    let compose = read("docker-compose.yml");
    let grace = number_after(
        "compose",
        &compose,
        "OPENHQM_SERVER__SHUTDOWN_GRACE_SECONDS:",
    );
    let stop = number_after("compose", &compose, "stop_grace_period:");
    assert!(stop > grace, "stop_grace_period {stop} <= grace {grace}");
    let k8s = read("deploy/kubernetes/standalone.yaml");
    let grace = block_after(&k8s, "- name: OPENHQM_SERVER__SHUTDOWN_GRACE_SECONDS");
    let grace = number_after("standalone.yaml", &grace, "value:");
    let pre_stop = number_after("standalone.yaml", &k8s, "seconds:");
    let stop = number_after("standalone.yaml", &k8s, "terminationGracePeriodSeconds:");
    assert!(stop > pre_stop + grace, "{stop} <= {pre_stop} + {grace}");
}

// ---------------------------------------------------------------------------------------------
// Metrics.
// ---------------------------------------------------------------------------------------------

/// What one `/metrics` scrape declares and carries.
#[derive(Default)]
struct Exposition {
    /// Family name → its `# TYPE`.
    types: BTreeMap<String, String>,
    /// Family name → label name → the values seen in its samples.
    labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                e.types.insert(name.to_owned(), kind.to_owned());
            }
        }
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let end = line.find(['{', ' ']).expect("sample line");
            let family = e.family_of(&line[..end]).0;
            let entry = e.labels.entry(family).or_default();
            if line[end..].starts_with('{') {
                for (k, v) in parse_labels(&line[end + 1..]) {
                    entry.entry(k).or_default().insert(v);
                }
            }
        }
        e
    }

    /// The family a sample or series name belongs to, and the histogram suffix it carries.
    fn family_of(&self, name: &str) -> (String, Option<&'static str>) {
        for suffix in HISTOGRAM_SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix) {
                if self.types.get(base).map(String::as_str) == Some("histogram") {
                    return (base.to_owned(), Some(suffix));
                }
            }
        }
        (name.to_owned(), None)
    }
}

/// `k="v",k2="v2"}` → pairs (values unescaped as far as the exposition escapes them).
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if rest.starts_with('}') || rest.is_empty() {
            return out;
        }
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let close = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => value.push(chars.next().expect("escaped char").1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        out.push((name.to_owned(), value));
        rest = &after[close + 1..];
    }
}

/// A label matcher of a selector: (label, operator, value).
type Matcher = (String, String, String);

/// What one PromQL expression refers to: metric names with the label matchers of their
/// selectors, and the labels of its `by (...)` / `without (...)` clauses.
#[derive(Debug, Default)]
struct Refs {
    /// (metric name, its matchers).
    series: Vec<(String, Vec<Matcher>)>,
    grouping: Vec<String>,
}

/// A small PromQL scanner: enough for the selectors and grouping clauses the kit writes.
fn scan(expr: &str) -> Refs {
    let b = expr.as_bytes();
    let ident = |i: usize| {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
            j += 1;
        }
        j
    };
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut refs = Refs::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            // A string literal: skipped whole (label values are not names).
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'$' {
            // A Grafana variable ($__rate_interval, $instance).
            i = ident(i + 1);
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let j = ident(i);
            let word = &expr[i..j];
            let k = skip_ws(j);
            if word.starts_with("openhqm_") {
                let mut matchers = Vec::new();
                if b.get(k) == Some(&b'{') {
                    let close = k + expr[k..].find('}').expect("closing brace");
                    for m in split_matchers(&expr[k + 1..close]) {
                        matchers.push(m);
                    }
                    i = close + 1;
                } else {
                    i = j;
                }
                refs.series.push((word.to_owned(), matchers));
                continue;
            }
            if matches!(word, "by" | "without") && b.get(k) == Some(&b'(') {
                let close = k + expr[k..].find(')').expect("closing paren");
                refs.grouping.extend(
                    expr[k + 1..close]
                        .split(',')
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty()),
                );
                i = close + 1;
                continue;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    refs
}

/// `a="x", b=~"y"` → [(a, =, x), (b, =~, y)]. Label values in the kit hold no `,` or `}`.
fn split_matchers(s: &str) -> Vec<Matcher> {
    s.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            let at = m.find(['=', '!']).expect("a label matcher");
            let name = m[..at].trim().to_owned();
            let rest = &m[at..];
            let op_len =
                if rest.starts_with("=~") || rest.starts_with("!=") || rest.starts_with("!~") {
                    2
                } else {
                    1
                };
            let value = rest[op_len..].trim().trim_matches('"').to_owned();
            (name, rest[..op_len].to_owned(), value)
        })
        .collect()
}

/// Every PromQL expression of the kit, with where it comes from.
fn kit_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    // The dashboard: every "expr", and the templating queries ("definition", string "query").
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/openhqm.json")).expect("dashboard JSON");
    fn walk(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition" | "query", serde_json::Value::String(s)) => {
                            out.push((format!("openhqm.json {k}"), s.clone()))
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut out);
    let from_dashboard = out.len();
    assert!(
        from_dashboard >= 20,
        "only {from_dashboard} dashboard queries"
    );
    // YAML: `expr:` (one line, or a block scalar after `expr: |`) and KEDA's `query:`.
    for (file, key) in [
        ("deploy/prometheus/alerts.yml", "expr:"),
        ("deploy/kubernetes/keda-scaledobject.yaml", "query:"),
    ] {
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(value) = line.trim().strip_prefix(key) else {
                continue;
            };
            let value = value.trim();
            let expr = if value == "|" || value == ">" {
                let indent = line.len() - line.trim_start().len();
                lines[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                value.to_owned()
            };
            out.push((format!("{file}:{}", i + 1), expr));
        }
    }
    assert!(
        out.len() > from_dashboard + 5,
        "alert or KEDA queries not found"
    );
    out
}

/// Labels Prometheus itself adds to every series (or that histogram buckets carry).
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

#[test]
fn every_metric_the_kit_queries_is_exported_with_its_labels() {
    // A proxy endpoint, so the proxy families carry samples (and so labels) too.
    let upstream = Upstream::start(|_, _| Reply::json(200, r#"{"ok":true}"#));
    let url = format!("http://{}/work", upstream.addr);
    let broker = Broker::start_with(&[
        "--shards",
        "2",
        "--proxy.enabled",
        "true",
        "--proxy.endpoints.up.url",
        &url,
    ]);
    let mut c = broker.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let echo = c.submit(r#"{"operation":"echo","data":"x"}"#);
    assert_eq!(
        wait_final(&mut c, &echo, deadline).json()["status"],
        "COMPLETED"
    );
    let r = c.post_json(
        "/api/v1/submit",
        r#"{"payload":{"a":1},"metadata":{"endpoint":"up"}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let proxied = r.json()["correlation_id"].as_str().unwrap().to_owned();
    assert_eq!(
        wait_final(&mut c, &proxied, deadline).json()["status"],
        "COMPLETED"
    );
    for probe in ["/readyz", "/livez", "/health"] {
        assert_eq!(c.get(probe).status, 200, "{probe}");
    }
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    let exported = Exposition::parse(&r.text());

    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (source, expr) in kit_queries() {
        let refs = scan(&expr);
        let mut families = Vec::new();
        for (name, matchers) in &refs.series {
            let (family, suffix) = exported.family_of(name);
            let Some(kind) = exported.types.get(&family) else {
                problems.push(format!("{source}: {name} is not exported"));
                continue;
            };
            if kind == "histogram" && suffix.is_none() {
                problems.push(format!(
                    "{source}: {name} is a histogram: query _bucket, _sum or _count"
                ));
            }
            used.insert(family.clone());
            let Some(labels) = exported.labels.get(&family) else {
                problems.push(format!(
                    "{source}: {family} has no samples to check labels on"
                ));
                continue;
            };
            for (label, op, value) in matchers {
                if SCRAPE_LABELS.contains(&label.as_str()) {
                    continue;
                }
                match labels.get(label) {
                    None => problems.push(format!("{source}: {family} has no label {label}")),
                    // An exact value must be one the broker writes; HTTP statuses are written
                    // only once answered, so any three-digit status passes.
                    Some(values)
                        if op == "="
                            && !values.contains(value)
                            && !(label == "status" && value.len() == 3
                                && value.bytes().all(|b| b.is_ascii_digit())) =>
                    {
                        problems.push(format!(
                            "{source}: {family}{{{label}=\"{value}\"}}: the broker writes {values:?}"
                        ))
                    }
                    Some(_) => {}
                }
            }
            families.push(family);
        }
        for label in &refs.grouping {
            let known = SCRAPE_LABELS.contains(&label.as_str())
                || label == "le"
                || families.iter().any(|f| {
                    exported
                        .labels
                        .get(f)
                        .is_some_and(|l| l.contains_key(label))
                });
            if !known {
                problems.push(format!(
                    "{source}: groups by {label}, which none of {families:?} has"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for must in [
        "openhqm_queue_depth",
        "openhqm_queue_oldest_age_seconds",
        "openhqm_worker_slots",
        "openhqm_proxy_duration_seconds",
    ] {
        assert!(
            used.contains(must),
            "the kit no longer queries {must}: scanner broken?"
        );
    }
}

#[test]
fn the_promql_scanner_finds_names_matchers_and_grouping() {
    let r = scan(
        r#"histogram_quantile(0.99, sum by (endpoint, le) (rate(openhqm_api_request_duration_seconds_bucket{instance=~"$instance",endpoint!="openhqm_fake"}[$__rate_interval]))) / on() openhqm_waiters"#,
    );
    let names: Vec<&str> = r.series.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "openhqm_api_request_duration_seconds_bucket",
            "openhqm_waiters"
        ]
    );
    assert_eq!(
        r.series[0].1,
        [
            ("instance".into(), "=~".into(), "$instance".into()),
            ("endpoint".into(), "!=".into(), "openhqm_fake".into())
        ]
    );
    assert_eq!(r.grouping, ["endpoint", "le"]);
    assert_eq!(
        parse_labels(r#"endpoint="/api/v1/status/{correlation_id}",le="+Inf"} 3"#),
        [
            (
                "endpoint".to_owned(),
                "/api/v1/status/{correlation_id}".to_owned()
            ),
            ("le".to_owned(), "+Inf".to_owned())
        ]
    );
}
