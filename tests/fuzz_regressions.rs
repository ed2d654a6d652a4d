//! The fuzz targets' checks on stable, over every kept input: each file under
//! `fuzz/seeds/<target>/` (the seeds, and as `regression-*` the inputs of crashes found so far:
//! by fuzzing, or in a parser we measured ours against), and, where they exist locally (both are
//! git-ignored), a fuzzing run's `fuzz/corpus/<target>/` and the crash files cargo-fuzz leaves in
//! `fuzz/artifacts/<target>/`.
//!
//! The checks are the targets' own bodies (`fuzz/fuzz_targets/common/*.rs`, included by path by
//! both), so what CI runs here is exactly what the fuzzer runs. Each input runs on a thread named
//! `<target>/<file>`: a panic, and a stack overflow (which aborts the process), name the input.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;
use std::{fs, panic, thread};

#[path = "../fuzz/fuzz_targets/common/http_conn.rs"]
mod http_conn;
#[path = "../fuzz/fuzz_targets/common/resp_frame.rs"]
mod resp_frame;
#[path = "../fuzz/fuzz_targets/common/state_value.rs"]
mod state_value;
#[path = "../fuzz/fuzz_targets/common/submit_body.rs"]
mod submit_body;

/// A target's check: panics where the fuzzer would report a crash.
type Check = fn(&[u8]);

/// Every target of `fuzz/Cargo.toml`, with its check.
const TARGETS: &[(&str, Check)] = &[
    ("http_conn", http_conn::check),
    ("resp_frame", resp_frame::check),
    ("state_value", state_value::check),
    ("submit_body", submit_body::check),
];

/// Longest one input may take (a debug build; libFuzzer's own default is 1200 s). Past it the
/// input counts as a hang, the target's "never loops".
const PER_INPUT: Duration = Duration::from_secs(20);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on `data` on a thread named `name`; `Err` says what went wrong.
fn run_one(name: String, check: Check, data: Vec<u8>) -> Result<(), String> {
    let (done, outcome) = mpsc::channel();
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let ok = panic::catch_unwind(|| check(&data)).is_ok();
            let _ = done.send(ok);
        })
        .expect("spawn a thread");
    match outcome.recv_timeout(PER_INPUT) {
        Ok(true) => Ok(()),
        Ok(false) | Err(RecvTimeoutError::Disconnected) => {
            Err(format!("{name}: panicked (its message is above)"))
        }
        Err(RecvTimeoutError::Timeout) => Err(format!("{name}: still running after {PER_INPUT:?}")),
    }
}

#[test]
fn every_kept_input_passes_its_targets_check() {
    let fuzz = fuzz_dir();
    let mut failures = Vec::new();
    let mut ran = 0;
    for &(target, check) in TARGETS {
        let seeds = files(&fuzz.join("seeds").join(target));
        assert!(!seeds.is_empty(), "fuzz/seeds/{target}/ has no inputs");
        let local = ["corpus", "artifacts"]
            .iter()
            .flat_map(|d| files(&fuzz.join(d).join(target)));
        for path in seeds.into_iter().chain(local) {
            let data = fs::read(&path).expect("readable input");
            let shown = path.strip_prefix(&fuzz).unwrap_or(&path).display();
            if let Err(e) = run_one(format!("{target}: {shown}"), check, data) {
                failures.push(e);
            }
            ran += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} inputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The regression inputs of the crashes found so far are kept (a rename that drops one fails).
#[test]
fn the_crashes_found_so_far_are_kept() {
    let seeds = fuzz_dir().join("seeds");
    for kept in [
        // Unbounded recursion on a stray token before the version (commit 4464079).
        // Checked: the build before that fix aborts on both, naming the input.
        "http_conn/regression-stray-token-http11",
        "http_conn/regression-stray-token-http12",
        // The nested reply that overflows redis-protocol's stack (commit aa57bf0).
        "resp_frame/regression-nested-10000",
    ] {
        assert!(seeds.join(kept).is_file(), "fuzz/seeds/{kept} is missing");
    }
}

/// A target added to `fuzz/Cargo.toml` without a row in `TARGETS` (or the other way round)
/// fails here, so no target goes unguarded.
#[test]
fn every_fuzz_target_is_run_here() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut section = "";
    let mut bins = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[[bin]]" {
            if let Some(name) = line.strip_prefix("name = ") {
                bins.push(name.trim_matches('"').to_owned());
            }
        }
    }
    bins.sort();
    let mut here: Vec<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    here.sort();
    assert_eq!(bins, here, "fuzz/Cargo.toml's targets against TARGETS");
}

/// Beyond the target's check: the nested reply that overflows redis-protocol's stack is refused
/// by our decoder's depth bound, not decoded.
#[test]
fn the_deeply_nested_reply_is_refused() {
    let data = fs::read(fuzz_dir().join("seeds/resp_frame/regression-nested-10000")).unwrap();
    let frame = openhqm::resp::Frame::decode(&bytes::Bytes::from(data));
    assert!(frame.is_err(), "{frame:?}");
}
