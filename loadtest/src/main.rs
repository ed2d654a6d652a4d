//! `loadtest`: load tools for OpenHQM.
//!
//! `loadtest run --url http://HOST:PORT [options]` is the load generator: closed loop (as fast as
//! answers come, `--connections` x `--pipeline` in flight) or open loop at a constant `--rate`
//! with latency counted from each request's intended send time; scenarios `get`, `submit`,
//! `status`, `e2e` and `mixed`; checks for non-2xx answers, transport errors, lost and duplicate
//! correlation ids; HdrHistogram percentiles; a human summary or `--json`; the latency
//! distributions as an SVG plot (`--plot`) and `.hgrm` files (`--hgrm`). `loadtest --help`
//! lists every flag.
//!
//! `loadtest null-server [--host H] [--port P] [--cpu N]` runs a do-nothing HTTP/1.1 responder:
//! one monoio thread (pinned with `--cpu`), httparse for heads, request bodies skipped by
//! `Content-Length`, keep-alive and pipelining, and a fixed `202` with a body the size of the
//! broker's submit answer. It is the ceiling a broker run is compared with: same machine, same
//! client, same pinning, no queue and no state.
//!
//! Files: [`cli`] arguments and `--help`, [`target`] the URL, [`http`] sans-IO request encoding
//! and response framing, [`ids`] correlation ids, [`scenario`] what is sent and what answers
//! mean, [`schedule`] closed- and open-loop pacing, [`conn`] one connection's reader and writer,
//! [`run`] threads and phases, [`report`] histograms and the summary, [`latency`] the recorded
//! curves that [`plot`] draws as SVG (`--plot`) and [`hgrm`] writes as HdrHistogram text
//! (`--hgrm`), [`progress`] the live line, [`notify`] and [`rng`] small helpers,
//! [`null_server`] the ceiling.

mod cli;
mod conn;
mod hgrm;
mod http;
mod ids;
mod latency;
mod notify;
mod null_server;
mod pacer;
mod plot;
mod progress;
mod report;
mod rng;
mod run;
mod scenario;
mod schedule;
mod target;

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
        Some("run") => match cli::RunOptions::parse(args) {
            Ok(cli::Parsed::Help) => {
                print!("{}", cli::HELP);
                ExitCode::SUCCESS
            }
            Ok(cli::Parsed::Run(opts)) => match run::run(*opts) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("loadtest run: {e}");
                    ExitCode::from(2)
                }
            },
            Err(e) => {
                eprintln!("loadtest run: {e}");
                ExitCode::from(2)
            }
        },
        Some("-h" | "--help" | "help") => {
            print!("{}", cli::HELP);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: loadtest run --url URL [options] | loadtest null-server [--host H] \
                 [--port P] [--cpu N] (loadtest --help for all options)"
            );
            ExitCode::from(2)
        }
    }
}
