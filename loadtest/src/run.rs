//! Driving a run: worker threads, their phases, the progress line, the summary, the latency files.
//!
//! **Why monoio thread-per-core and not blocking sockets.** Each worker thread is pinned (with
//! `--cpus`) and runs one monoio runtime built exactly like a broker shard's
//! (`openhqm::shard::runtime::build`: io_uring with the broker's ring flags, epoll where io_uring
//! is unavailable); its share of the connections are tasks on it. With blocking std sockets every
//! connection needs its own thread, so 64 connections on one pinned core cost two context
//! switches per request on top of the two syscalls, and open-loop pacing would need one sleeping
//! thread per connection. Measured on the 2-vCPU VM this was built on (null server pinned to
//! CPU 0, client to CPU 1, 64 connections, 5 s rounds alternating with wrk against the same
//! server): `wrk -t1 -c64` 144-153k req/s at 6.6 µs of client CPU per request, `loadtest run
//! --scenario get --cpus 1` 135-180k req/s at 5.1-6.5 µs. One pinned thread is as cheap per
//! request as wrk, so the generator is not the bottleneck of a ceiling run.
//!
//! **Phases of a worker thread**, each over all of its connections at once:
//! 1. connect (before any clock starts);
//! 2. `status`/`mixed` only: submit this thread's share of `--pool` ids (not measured);
//! 3. wait for every other thread (a barrier), take the whole pool;
//! 4. the measured phase: new flows until `--duration` or `--requests` is used up, then drain
//!    (answers still in flight, e2e flows until final or `--deadline`);
//! 5. `submit --verify N` only: poll this thread's share of a random sample of the accepted ids
//!    until final or `--deadline`.
//!
//! Every phase has a hard stop (a measured phase bounded by `--requests` has none, but each
//! connection gives up once the server leaves its requests unanswered for `--deadline`), so a
//! server that stops answering ends the run instead of hanging it.

use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use openhqm::config::IoDriver;
use openhqm::shard::runtime;

use crate::cli::RunOptions;
use crate::conn::{Conn, Due, Flow, Phase, Worker};
use crate::pacer::{SendTimes, Ticker};
use crate::progress::{self, Live};
use crate::report::{RunInfo, Stats, Summary};
use crate::rng::Rng;
use crate::scenario::{Requests, Scenario};
use crate::schedule::{share, OpenSchedule, Pace};
use crate::{hgrm, latency, plot};

/// Time after the sending window for answers still in flight (on top of `--deadline` in e2e).
const DRAIN: Duration = Duration::from_secs(5);
/// Longest time for submitting the status/mixed pool.
const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// Runs planned longer than this get a progress line.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

/// What a worker thread hands back.
struct ThreadOut {
    stats: Stats,
    elapsed: Duration,
}

/// Runs the load and prints the report; returns the exit code (0 or 1), or an error that
/// stopped the run (exit code 2).
pub fn run(opts: RunOptions) -> Result<u8, String> {
    // A target that refuses connections is an error up front, not a run full of them.
    std::net::TcpStream::connect_timeout(&opts.target.addr, Duration::from_secs(3))
        .map_err(|e| format!("cannot connect to {} ({}): {e}", opts.url, opts.target.addr))?;

    // Output files go where their directory is: found out now, not after the run.
    for path in [&opts.plot, &opts.hgrm].into_iter().flatten() {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) && !path.is_dir() {
            return Err(format!(
                "{}: no such directory",
                dir.unwrap_or(path).display()
            ));
        }
    }

    let opts = Arc::new(opts);
    let threads = opts.threads;
    let barrier = Arc::new(Barrier::new(threads));
    let pool = Arc::new(Mutex::new(Vec::new()));
    let lives: Vec<Arc<Live>> = (0..threads).map(|_| Arc::new(Live::default())).collect();
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for (index, live) in lives.iter().enumerate() {
        let (opts, barrier, pool, live, tx) = (
            opts.clone(),
            barrier.clone(),
            pool.clone(),
            live.clone(),
            tx.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("loadtest-{index}"))
            .spawn(move || {
                let out = worker_thread(index, &opts, &barrier, &pool, live);
                let _ = tx.send(out);
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        handles.push(h);
    }
    drop(tx);

    let show = opts.progress && opts.duration.map_or(true, |d| d > PROGRESS_AFTER);
    let started = Instant::now();
    let (mut before, mut tick) = ((0, 0, 0), started);
    let mut outs = Vec::new();
    while outs.len() < threads {
        let next_tick = tick + Duration::from_secs(1);
        match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(out) => outs.push(out),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress::totals(&lives);
                if show {
                    let dt = next_tick - tick;
                    eprintln!("{}", progress::line(started.elapsed(), now, before, dt));
                }
                (before, tick) = (now, next_tick);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for h in handles {
        h.join()
            .map_err(|_| "a worker thread panicked".to_string())?;
    }
    let mut parts = Vec::new();
    let mut elapsed = Duration::ZERO;
    for out in outs {
        let out = out?;
        elapsed = elapsed.max(out.elapsed);
        parts.push(out.stats);
    }
    if parts.len() < threads {
        return Err("a worker thread stopped without a result".into());
    }
    let info = RunInfo {
        url: opts.url.clone(),
        scenario: opts.scenario.name(),
        rate: opts.rate,
        pacer: opts.pacer,
        connections: opts.connections,
        pipeline: opts.pipeline,
        threads,
        cpus: opts
            .cpus
            .as_ref()
            .map(|c| (0..threads).map(|i| c[i % c.len()]).collect()),
        verify: opts.verify,
    };
    let summary = Summary::new(info, elapsed, parts);
    if opts.json {
        println!("{}", summary.to_json(opts.fail_on_errors));
    } else {
        print!("{}", summary.to_text(opts.fail_on_errors));
    }
    write_latency_files(&opts, &summary)?;
    Ok(summary.exit_code(opts.fail_on_errors))
}

/// `--plot` and `--hgrm`: the run's latency curves to files (named on stderr, so `--json` keeps
/// stdout to its one object). A file that cannot be written is an error (exit 2) after the
/// report is out.
fn write_latency_files(opts: &RunOptions, summary: &Summary) -> Result<(), String> {
    let curves = latency::curves(summary);
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("loadtest: wrote {}", path.display());
        Ok::<_, String>(())
    };
    if let Some(path) = &opts.plot {
        let (title, subtitle) = plot::titles(summary);
        write(path, plot::svg(&title, &subtitle, &curves))?;
    }
    if let Some(arg) = &opts.hgrm {
        if curves.is_empty() {
            eprintln!("loadtest: no latency recorded, no .hgrm written");
            return Ok(());
        }
        let names: Vec<&str> = curves.iter().map(|c| c.name.as_str()).collect();
        let as_dir = arg.is_dir() || arg.as_os_str().to_string_lossy().ends_with('/');
        if as_dir {
            std::fs::create_dir_all(arg)
                .map_err(|e| format!("cannot create {}: {e}", arg.display()))?;
        }
        for (path, c) in hgrm::paths(arg, as_dir, &names).iter().zip(&curves) {
            write(path, hgrm::text(c.hist))?;
        }
    }
    Ok(())
}

/// One worker thread: pins itself, builds its runtime, runs its phases.
fn worker_thread(
    index: usize,
    opts: &RunOptions,
    barrier: &Barrier,
    pool: &Mutex<Vec<u128>>,
    live: Arc<Live>,
) -> Result<ThreadOut, String> {
    // Whatever fails before the barrier must still reach it, or the other threads wait forever.
    let prepared = (|| {
        if let Some(cpus) = &opts.cpus {
            let cpu = cpus[index % cpus.len()];
            monoio::utils::bind_to_cpu_set([cpu])
                .map_err(|e| format!("cannot pin to CPU {cpu}: {e:?}"))?;
        }
        runtime::build(IoDriver::Auto)
            .map(|(rt, _driver)| rt)
            .map_err(|e| format!("cannot build the runtime: {e}"))
    })();
    let mut rt = match prepared {
        Ok(rt) => rt,
        Err(e) => {
            barrier.wait();
            return Err(e);
        }
    };
    rt.block_on(phases(index, opts, barrier, pool, live))
}

async fn phases(
    index: usize,
    opts: &RunOptions,
    barrier: &Barrier,
    pool: &Mutex<Vec<u128>>,
    live: Arc<Live>,
) -> Result<ThreadOut, String> {
    let threads = opts.threads;
    // This thread's connections: a contiguous slice of the global indices.
    let first: usize = (0..index)
        .map(|t| share(opts.connections as u64, threads, t) as usize)
        .sum();
    let n = share(opts.connections as u64, threads, index) as usize;
    // `--pacer`: send times to the tick of a helper thread, not the runtime's 1 ms timer. The
    // ticker lives until this function returns (on every path, unwinding too), so its thread is
    // stopped and joined before the runtime goes. (No early return here: every thread must reach
    // the barrier.)
    let (_ticker, send_times) = match opts.pacer {
        true => match Ticker::start(opts.cpus.as_ref().map(|c| c[index % c.len()])) {
            Ok(ticker) => {
                let times = Rc::new(SendTimes::default());
                monoio::spawn(times.clone().relay(ticker.ticks()));
                (Some(ticker), Some(times))
            }
            Err(e) => {
                eprintln!("loadtest: no pacer thread ({e}): send times to the 1 ms timer");
                (None, None)
            }
        },
        false => (None, None),
    };
    let w = Rc::new(Worker {
        addr: opts.target.addr,
        requests: Requests::new(
            &opts.target,
            &opts.operation,
            opts.endpoint.as_deref(),
            opts.payload_bytes,
            opts.deadline.as_secs().max(1),
        ),
        depth: opts.pipeline,
        open: opts.rate.is_some(),
        send_times,
        submit_percent: opts.submit_percent,
        poll_interval: opts.poll_interval,
        deadline: opts.deadline,
        pool: std::cell::RefCell::new(Rc::from(Vec::new())),
        rng: std::cell::RefCell::new(Rng::from_time(index as u64)),
        stats: Default::default(),
        live,
    });
    let mut conns: Vec<Conn> = (0..n).map(|_| Conn::default()).collect();
    for c in &mut conns {
        c.connect(&w).await;
    }

    // Phase 2: the pool.
    if opts.scenario.needs_pool() {
        let mine = share(opts.pool as u64, threads, index);
        let paces = (0..n)
            .map(|k| Pace::Closed {
                remaining: Some(share(mine, n, k)),
                end: None,
            })
            .collect();
        let phase = Phase {
            scenario: Scenario::Submit,
            live: false,
            hard_stop: Some(Instant::now() + SETUP_LIMIT),
        };
        conns = all(&w, conns, phase, paces, Vec::new()).await;
        let setup = std::mem::take(&mut *w.stats.borrow_mut());
        if setup.ids.len() as u64 != mine {
            eprintln!(
                "loadtest: thread {index}: {} of {mine} pool submits accepted (statuses {:?}, \
                 transport errors {}{})",
                setup.ids.len(),
                setup.status_codes,
                setup.transport_errors,
                setup
                    .first_error
                    .map(|e| format!(", first: {e}"))
                    .unwrap_or_default()
            );
        }
        lock(pool).extend(setup.ids);
    }

    // Phase 3: everyone ready.
    barrier.wait();
    let ids: Rc<[u128]> = Rc::from(lock(pool).as_slice());
    if opts.scenario.needs_pool() && ids.is_empty() {
        return Err("no pool id was accepted: nothing to read (see the messages above)".into());
    }
    *w.pool.borrow_mut() = ids;

    // Phase 4: measured.
    let start = Instant::now();
    let end = opts.duration.map(|d| start + d);
    let paces = (0..n)
        .map(|k| match opts.rate {
            Some(rate) => Pace::Open(OpenSchedule::new(
                start,
                rate,
                first + k,
                opts.connections,
                opts.requests,
                opts.duration,
            )),
            None => Pace::Closed {
                remaining: opts.requests.map(|r| share(r, opts.connections, first + k)),
                end,
            },
        })
        .collect();
    let e2e_drain = if opts.scenario.follows_to_final() {
        opts.deadline
    } else {
        Duration::ZERO
    };
    let phase = Phase {
        scenario: opts.scenario,
        live: true,
        hard_stop: end.map(|e| e + DRAIN + e2e_drain),
    };
    conns = all(&w, conns, phase, paces, Vec::new()).await;
    let elapsed = start.elapsed();
    let mut measured = std::mem::take(&mut *w.stats.borrow_mut());

    // Phase 5: verify a sample of the accepted ids.
    if opts.verify > 0 {
        let want = share(opts.verify, threads, index) as usize;
        let sample = sample(&measured.ids, want, &mut w.rng.borrow_mut());
        let now = Instant::now();
        let mut polls: Vec<VecDeque<Due>> = (0..n).map(|_| VecDeque::new()).collect();
        for (i, id) in sample.into_iter().enumerate() {
            polls[i % n].push_back(Due {
                at: now,
                flow: Flow {
                    id,
                    start: now,
                    deadline: now + opts.deadline,
                },
            });
        }
        let phase = Phase {
            scenario: Scenario::Submit,
            live: false,
            hard_stop: Some(now + opts.deadline + DRAIN),
        };
        let paces = (0..n).map(|_| Pace::Idle).collect();
        all(&w, conns, phase, paces, polls).await;
        let v = std::mem::take(&mut *w.stats.borrow_mut());
        measured.verified += v.completed + v.failed + v.timed_out;
        measured.lost += v.lost;
        measured.bad_responses += v.bad_responses;
        measured.transport_errors += v.transport_errors;
        measured.connect_errors += v.connect_errors;
        if measured.first_error.is_none() {
            measured.first_error = v.first_error;
        }
    }
    Ok(ThreadOut {
        stats: measured,
        elapsed,
    })
}

/// Runs a phase on every connection at once; hands the connections back.
async fn all(
    w: &Rc<Worker>,
    conns: Vec<Conn>,
    phase: Phase,
    paces: Vec<Pace>,
    polls: Vec<VecDeque<Due>>,
) -> Vec<Conn> {
    let mut polls = polls.into_iter();
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(paces)
        .map(|(mut c, pace)| {
            let w = w.clone();
            let polls = polls.next().unwrap_or_default();
            monoio::spawn(async move {
                c.drive(&w, phase, pace, polls).await;
                c
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// Up to `want` distinct entries of `ids`, chosen at random.
fn sample(ids: &[u128], want: usize, rng: &mut Rng) -> Vec<u128> {
    let mut v = ids.to_vec();
    let want = want.min(v.len());
    for i in 0..want {
        let j = i + rng.below(v.len() - i);
        v.swap(i, j);
    }
    v.truncate(want);
    v
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_distinct_ids() {
        let ids: Vec<u128> = (0..100).collect();
        let mut rng = Rng::new(9);
        let mut s = sample(&ids, 10, &mut rng);
        assert_eq!(s.len(), 10);
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 10, "no id twice");
        assert_ne!(s, (0..10).collect::<Vec<u128>>(), "not just the first ones");
        assert_eq!(sample(&ids[..3], 10, &mut rng).len(), 3);
    }
}
