//! A Rust program that embeds the broker with its own processor: `sha256` answers the SHA-256
//! digest of the submitted payload (the bytes the client sent) and its length. Jobs that name
//! it in `metadata.endpoint` run it; the others run the built-in operations.
//!
//! ```text
//! cargo run --release --example custom_processor -- --port 8000
//! curl -s localhost:8000/api/v1/submit -H 'Content-Type: application/json' \
//!   -d '{"payload":{"doc":"hello"},"metadata":{"endpoint":"sha256"}}'
//! curl -s localhost:8000/api/v1/response/<correlation_id>
//! ```
//! It takes the same flags, file and `OPENHQM_*` environment as the `openhqm` binary.

use std::fmt::Write;
use std::process::ExitCode;

use openhqm::config::{self, Loaded};
use openhqm::{Broker, Config, Job, Output, ProcessError, Processor};
use sha2::{Digest, Sha256};

/// The SHA-256 digest of a job's payload, as `{"sha256": "<hex>", "bytes": <length>}`.
pub struct PayloadDigest;

impl Processor for PayloadDigest {
    async fn process(&self, job: &Job) -> Result<Output, ProcessError> {
        let digest = Sha256::digest(&job.payload);
        let mut result = String::with_capacity(96);
        result.push_str("{\"sha256\":\"");
        for byte in digest {
            let _ = write!(result, "{byte:02x}");
        }
        let _ = write!(result, "\",\"bytes\":{}}}", job.payload.len());
        Ok(Output::json(result))
    }
}

/// The broker this program runs: `config` with the digest registered as `sha256`.
pub fn broker(config: Config) -> Broker {
    Broker::new(config).processor("sha256", PayloadDigest)
}

#[allow(dead_code)] // The end-to-end test includes this file and starts `broker` itself.
fn main() -> ExitCode {
    let args = std::env::args().skip(1);
    let config = match config::load(args, std::env::vars(), |p| std::fs::read_to_string(p)) {
        Ok(Loaded::Run(c)) => *c,
        Ok(Loaded::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let _log = openhqm::log::init(&config.monitoring);
    let running = match broker(config).start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}; Ctrl-C stops", running.local_addr());
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .expect("signal handlers");
    signals.forever().next();
    running.shutdown();
    match running.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
