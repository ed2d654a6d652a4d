//! The per-shard runtime, kept behind this one file: monoio with io_uring where the kernel allows
//! it and epoll otherwise. Ring flags follow DESIGN.md's measurements (cooperative task running,
//! and single-issuer + deferred task running on kernels that support them).

use std::io;

use monoio::time::TimeDriver;
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

pub use crate::config::IoDriver;

/// A shard's runtime, whichever driver it got.
pub type ShardRuntime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

const ENTRIES: u32 = 1024;

/// Builds a runtime for the calling thread; returns it with the name of the driver in use.
pub fn build(driver: IoDriver) -> io::Result<(ShardRuntime, &'static str)> {
    if driver != IoDriver::Epoll && monoio::utils::detect_uring() {
        match build_uring() {
            Ok(rt) => return Ok((rt, "io_uring")),
            Err(e) if driver == IoDriver::Uring => return Err(e),
            Err(_) => {}
        }
    } else if driver == IoDriver::Uring {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring is not available",
        ));
    }
    let rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()?;
    Ok((rt.into(), "epoll"))
}

fn build_uring() -> io::Result<ShardRuntime> {
    let with = |urb: io_uring::Builder| {
        RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .with_entries(ENTRIES)
            .uring_builder(urb)
            .build()
            .map(Into::into)
    };
    let mut best = io_uring::IoUring::builder();
    best.setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_single_issuer()
        .setup_defer_taskrun();
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun().setup_taskrun_flag();
    // Kernels before 6.1 refuse DEFER_TASKRUN; before 5.19 COOP_TASKRUN.
    with(best)
        .or_else(|_| with(coop))
        .or_else(|_| with(io_uring::IoUring::builder()))
}
