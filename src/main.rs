//! The `openhqm` binary: configuration → logging → shards, then wait for SIGTERM/SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use openhqm::config::{self, Loaded, QueueType};
use openhqm::{log, notify, Broker, StartError};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

/// mimalloc: with glibc malloc, the mix of per-request and long-lived (state) allocations
/// fragments the heap to about 1 KiB of RSS per stored state; mimalloc keeps it near what the
/// data needs (`examples/state_memory.rs`, PERFORMANCE.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("hash-key") => return hash_key(),
        Some("check-config") => return check_config(),
        _ => {}
    }
    disable_transparent_huge_pages();
    let args = std::env::args().skip(1);
    let config = match config::load(args, std::env::vars(), |p| std::fs::read_to_string(p)) {
        Ok(Loaded::Run(c)) => c,
        Ok(Loaded::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("openhqm: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let _log_guard = log::init(&config.monitoring);
    for notice in &config.notices {
        warn!("{notice}");
    }
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let grace = config.server.shutdown_grace;
    let queue = config.queue.kind;
    let running = match Broker::new(*config).start() {
        Ok(r) => r,
        Err(StartError::Config(e)) => {
            eprintln!("openhqm: configuration error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    info!(
        addr = %running.local_addr(),
        shards = running.nr_shards(),
        driver = running.driver(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    if let Err(e) = notify::ready() {
        warn!(error = %e, "cannot tell the service manager the broker is ready (NOTIFY_SOCKET)");
    }
    if queue == QueueType::Memory {
        warn!(
            "embedded queue (queue.type = memory): requests in flight are lost if the process dies"
        );
    }

    // Wait for a signal, or for a shard to die on its own (a bug: exit non-zero).
    loop {
        if signals.pending().next().is_some() {
            break;
        }
        if running.any_stopped() {
            error!("a shard stopped unexpectedly; shutting down");
            running.shutdown();
            let _ = running.wait();
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    info!(grace_seconds = grace.as_secs_f64(), "shutting down");
    if let Err(e) = notify::stopping() {
        warn!(error = %e, "cannot tell the service manager the broker is stopping (NOTIFY_SOCKET)");
    }
    running.shutdown();
    // Shards bound their own drain by the grace period; a second signal stops waiting.
    while !running.all_stopped() {
        if signals.pending().next().is_some() {
            warn!("second signal; exiting now");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match running.wait() {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "shutdown failed");
            ExitCode::FAILURE
        }
    }
}

/// `openhqm check-config [--config FILE] [--KEY VALUE]...`: the configuration loaded and
/// checked as a start would (the layers, then [`Broker::check`]), printed as TOML with each
/// value's source; exit 2 with the start's message when it is invalid. Nothing is started.
fn check_config() -> ExitCode {
    let args = std::env::args().skip(2);
    let loaded = config::load_with_sources(args, std::env::vars(), |p| std::fs::read_to_string(p));
    let (config, sources) = match loaded {
        Ok((Loaded::Run(c), sources)) => (c, sources),
        Ok((Loaded::Print(text), _)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("openhqm: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match Broker::new((*config).clone()).check() {
        Ok(()) => {
            print!("{}", config::render::effective_toml(&config, &sources));
            ExitCode::SUCCESS
        }
        Err(StartError::Config(e)) => {
            eprintln!("openhqm: configuration error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("openhqm: {e}");
            ExitCode::from(2)
        }
    }
}

/// `openhqm hash-key`: the `sha256:<hex>` digest of the key on stdin, for `auth.api_keys`.
fn hash_key() -> ExitCode {
    use std::io::Read;
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(64 * 1024).read_to_end(&mut input) {
        eprintln!("openhqm hash-key: cannot read stdin: {e}");
        return ExitCode::from(2);
    }
    match openhqm::auth::digest::hash_key_line(&input) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("openhqm hash-key: {e}");
            ExitCode::from(2)
        }
    }
}

/// Opts this process out of transparent huge pages. The allocator asks for them on its heap
/// (`madvise`), and the kernel then zeroes a whole 2 MiB page inside the first touch, in the
/// middle of a request (milliseconds; PERFORMANCE.md). With 4 KiB pages the same zeroing is
/// spread over many short faults.
fn disable_transparent_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and touches no memory
    // of ours; failure (an old kernel) leaves the default, which is only slower at the tail.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
