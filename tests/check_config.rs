//! `openhqm check-config`, the real binary: the effective configuration from a file, the
//! environment and flags, each value's source, secrets redacted, the output loading back as a
//! config file, and exit 2 with the start's message on what a start would refuse.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A file in a directory of its own, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!(
            "openhqm-check-config-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("openhqm.toml");
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `openhqm check-config ARGS` with only `env` of the `OPENHQM_*` variables. It exits at once:
/// only loopback addresses are named, so no lookup can wait on a resolver.
fn check_config(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openhqm"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OPENHQM_") {
            cmd.env_remove(name);
        }
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .arg("check-config")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run openhqm check-config");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (status.code(), text(stdout), text(stderr))
}

const FILE: &str = r#"
[server]
host = "127.0.0.1"
port = 8001

[queue]
type = "redis"
redis_url = "redis://app:redis-SECRET@127.0.0.1:6390/1"

[proxy]
enabled = true
default_endpoint = "billing"

[proxy.endpoints.billing]
url = "http://127.0.0.1:9/invoice"
auth_type = "bearer"
auth_token = "token-SECRET"
headers = { "X-Upstream-Key" = "header-SECRET" }

[[routing.routes]]
name = "eu"
match_field = "metadata.tenant"
match_value = "eu"
endpoint = "billing"
"#;

#[test]
fn sources_and_redaction_from_file_env_and_flags() {
    let file = TempFile::new("sources", FILE);
    let env = [
        ("OPENHQM_WORKER__COUNT", "7"),
        ("OPENHQM_SERVER__PORT", "8002"),
    ];
    let (code, out, err) = check_config(
        &[
            "--config",
            file.path(),
            "--port",
            "8003",
            "--worker.max_retries=5",
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{err}");
    for want in [
        "\nhost = \"127.0.0.1\"  # file\n",
        "\nport = 8003  # flag --port\n",
        "\ncount = 7  # env OPENHQM_WORKER__COUNT\n",
        "\nmax_retries = 5  # flag --worker.max_retries\n",
        "\nbatch_size = 10  # default\n",
        "  # default (number of CPUs)\n",
        "\nredis_url = \"redis://app:***@127.0.0.1:6390/1\"  # file\n",
        "\nauth_token = \"***\"  # file\n",
        "\nheaders = { \"X-Upstream-Key\" = \"***\" }  # file\n",
        "\n[[routing.routes]]  # file\nname = \"eu\"\n",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    assert!(!out.contains("SECRET"), "a secret in\n{out}");
    assert!(!err.contains("SECRET"), "{err}");

    // The output is a config file: loaded alone, it is shown the same but for the sources.
    let again = TempFile::new("again", &out);
    let (code, out2, err) = check_config(&["--config", again.path()], &[]);
    assert_eq!(code, Some(0), "{err}");
    let values = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split("  # ").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(values(&out2), values(&out));
    assert!(out2.contains("\ncount = 7  # file\n"), "{out2}");
}

#[test]
fn what_a_start_refuses_exits_2_with_its_message() {
    let unknown_route = TempFile::new(
        "route",
        "[[routing.routes]]\nname = \"a\"\nmatch_field = \"x\"\nmatch_value = \"1\"\nendpoint = \"nowhere\"\n",
    );
    /// Flags, environment, the message wanted.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (&["--nope", "1"], &[], "unknown option --nope"),
        (
            &[],
            &[("OPENHQM_SERVER__PORTT", "1")],
            "unknown configuration variable OPENHQM_SERVER__PORTT",
        ),
        (
            &["--worker.count", "0"],
            &[],
            "--worker.count: worker.count: invalid value",
        ),
        (
            &["--worker.retry_delay_max", "0.5"],
            &[],
            "worker.retry_delay_max must be >= worker.retry_delay_base",
        ),
        // Broker::start's own checks, beyond Config::validate.
        (
            &["--config", unknown_route.path()],
            &[],
            "routing.routes[0].endpoint: no endpoint or processor is named \"nowhere\"",
        ),
        (
            &["--auth.api_keys_file", "/nonexistent/openhqm-keys"],
            &[],
            "auth.api_keys_file: cannot read /nonexistent/openhqm-keys",
        ),
        (
            &[
                "--proxy.enabled=true",
                "--proxy.endpoints.a.url=http://127.0.0.1:9",
                "--proxy.endpoints.a.auth_type=bearer",
                "--proxy.endpoints.a.auth_token_file=/nonexistent/openhqm-token",
            ],
            &[],
            "proxy.endpoints.a.auth_token_file: cannot read",
        ),
    ];
    for (args, env, want) in cases {
        let (code, out, err) = check_config(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {out}{err}");
        assert!(
            err.contains(&format!("openhqm: configuration error: {want}")),
            "{args:?}: {err}"
        );
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

#[test]
fn help_and_version_still_print() {
    let (code, out, _) = check_config(&["--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("openhqm check-config [--config FILE]"),
        "{out}"
    );
    let (code, out, _) = check_config(&["--version"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(out, format!("openhqm {}\n", env!("CARGO_PKG_VERSION")));
}
