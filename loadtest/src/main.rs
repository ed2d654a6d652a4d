//! `loadtest`: load tools for OpenHQM.
//!
//! `loadtest null-server [--host H] [--port P] [--cpu N]` runs a do-nothing HTTP/1.1 responder:
//! one monoio thread (pinned with `--cpu`), httparse for heads, request bodies skipped by
//! `Content-Length`, keep-alive and pipelining, and a fixed `202` with a body the size of the
//! broker's submit answer. It is the ceiling a broker run is compared with: same machine, same
//! client, same pinning, no queue and no state.

mod null_server;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("null-server") => match null_server::Options::parse(args) {
            Ok(opts) => match null_server::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("loadtest null-server: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("loadtest null-server: {e}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: loadtest null-server [--host H] [--port P] [--cpu N]");
            ExitCode::from(2)
        }
    }
}
