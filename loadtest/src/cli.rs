//! `loadtest run` arguments: parsing (hand-rolled, `--flag value` or `--flag=value`), checks
//! between them, and the `--help` text that documents every flag.

use std::path::PathBuf;
use std::time::Duration;

use openhqm::config::CpuList;

use crate::scenario::Scenario;
use crate::target::Target;

/// The whole `loadtest` usage; `loadtest --help` prints it.
pub const HELP: &str = "\
loadtest: load tools for OpenHQM (and any HTTP/1.1 server)

USAGE:
  loadtest run --url http://HOST:PORT[/BASE] [options]
  loadtest null-server [--host H] [--port P] [--cpu N]
  loadtest --help

loadtest run: drive load and report throughput, latency percentiles and correctness checks.
  --url URL             target (required). OpenHQM scenarios append /api/v1/... to its path;
                        the get scenario requests the URL as given.
  --scenario S          get | submit | status | e2e | wait | mixed     (default submit)
                          get     GET the URL (any HTTP server, e.g. the null server)
                          submit  POST /api/v1/submit, check each 202's correlation id
                          status  submit a pool of ids first, then GET /api/v1/status/{id}
                                  of random pool ids
                          e2e     submit, then poll /api/v1/response/{id} until final
                                  (COMPLETED/FAILED/TIMEOUT): submit->complete latency and
                                  completed/s
                          wait    submit with Prefer: wait=N (N = --deadline in seconds, the
                                  server caps it): answered 200 once final, no polls; polled as
                                  e2e only when the wait ends first
                          mixed   --submit-percent submits, the rest status reads of pool ids
  --connections N       TCP connections in total, spread over threads  (default 64)
  --pipeline D          requests in flight per connection (e2e: flows per connection in
                        closed loop)                                   (default 1)
  --duration T          sending window, e.g. 10s, 500ms, 2m            (default 10s)
  --requests N          stop after N requests (e2e: N submits) instead of a duration
  --rate R              open loop: R requests/s in total (e2e: submits/s), each with an
                        intended send time; latency counts from the intended time, so a
                        server that falls behind shows growing latency (no coordinated
                        omission). Without --rate: closed loop, as fast as answers come.
  --pacer               open loop: wake for send times every 100 us from a helper thread
                        (on the worker's CPU with --cpus) instead of the 1 ms timer (which sends
                        each millisecond's requests at once, up to 1 ms late); costs the
                        generator CPU, so near its own limit the timer keeps up better
  --threads T           worker threads (default: the number of --cpus, else 1)
  --cpus LIST           pin worker threads to these CPUs, e.g. 1,3 or 2-3 (thread i on the
                        i-th CPU, wrapping), to keep the generator off the server's cores
  --payload-bytes B     submit body size in bytes, filled out in payload.data (default 50)
  --operation OP        payload.operation of submits                   (default echo)
  --endpoint NAME       metadata.endpoint of submits: the processor or proxy endpoint that
                        runs them (default: none, the broker's default processor)
  --pool N              ids submitted before a status/mixed run         (default 1000)
  --submit-percent P    mixed: share of submits, 0-100                  (default 20)
  --poll-interval T     e2e/verify: wait between two polls of an id; the first poll goes
                        right after the 202                            (default 1ms)
  --deadline T          e2e/verify: an accepted id not final this long after its submit
                        (after the start of verification for --verify) is LOST (default 30s)
  --verify N            submit: after the run, poll a random sample of N accepted ids until
                        final; those that are not within --deadline are LOST
  --json                print one JSON object on stdout instead of the human summary
  --plot FILE.svg       write the latency percentile distribution as an SVG plot: one curve
                        per kind measured (submit, poll, e2e, ...; open loop also service
                        times and send lag), x = percentile on HdrHistogram's log scale of
                        1/(1-p), y = ms
  --hgrm PATH           write each curve as HdrHistogram percentile-distribution text (.hgrm,
                        values in ms): PATH itself for one curve; with several, PATH with the
                        curve's name before the extension (run.hgrm -> run.submit.hgrm, ...);
                        a directory (existing, or PATH ending in /) gets NAME.hgrm each
  --fail-on-errors      exit 1 also on any non-2xx, transport error or contract-breaking body
  --no-progress         no progress line on stderr (otherwise one a second for runs over 2 s)

  Exit status: 0 ok; 1 lost or duplicate ids, no answer at all, or (with --fail-on-errors)
  any error; 2 bad arguments or the target refuses connections.

loadtest null-server: a do-nothing HTTP/1.1 responder (a fixed 202 to every request), the
ceiling to compare a server with.
  --host H              listen address                                 (default 127.0.0.1)
  --port P              listen port                                    (default 8080)
  --cpu N               pin its one thread to CPU N
";

/// Parsed `loadtest run` options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--url` as given.
    pub url: String,
    /// `--url`, resolved.
    pub target: Target,
    /// `--scenario`.
    pub scenario: Scenario,
    /// `--connections`.
    pub connections: usize,
    /// `--pipeline`.
    pub pipeline: usize,
    /// `--duration` (set unless `--requests` is).
    pub duration: Option<Duration>,
    /// `--requests`.
    pub requests: Option<u64>,
    /// `--rate`.
    pub rate: Option<f64>,
    /// `--threads`.
    pub threads: usize,
    /// `--cpus`.
    pub cpus: Option<Vec<usize>>,
    /// `--payload-bytes`.
    pub payload_bytes: usize,
    /// `--operation`.
    pub operation: String,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--pool`.
    pub pool: usize,
    /// `--submit-percent`.
    pub submit_percent: u32,
    /// `--poll-interval`.
    pub poll_interval: Duration,
    /// `--deadline`.
    pub deadline: Duration,
    /// `--verify`.
    pub verify: u64,
    /// `--json`.
    pub json: bool,
    /// `--fail-on-errors`.
    pub fail_on_errors: bool,
    /// Not `--no-progress`.
    pub progress: bool,
    /// `--pacer`.
    pub pacer: bool,
    /// `--plot`.
    pub plot: Option<PathBuf>,
    /// `--hgrm`.
    pub hgrm: Option<PathBuf>,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these options.
    Run(Box<RunOptions>),
    /// Print [`HELP`].
    Help,
}

impl RunOptions {
    /// Parses the arguments after `run`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
        let mut url = None;
        let mut scenario = Scenario::Submit;
        let mut connections = 64usize;
        let mut pipeline = 1usize;
        let mut duration = None;
        let mut requests = None;
        let mut rate = None;
        let mut threads = None;
        let mut cpus: Option<Vec<usize>> = None;
        let mut payload_bytes = 50usize;
        let mut operation = "echo".to_string();
        let mut endpoint = None;
        let mut pool = 1000usize;
        let mut submit_percent = 20u32;
        let mut poll_interval = Duration::from_millis(1);
        let mut deadline = Duration::from_secs(30);
        let mut verify = 0u64;
        let (mut json, mut fail_on_errors, mut progress) = (false, false, true);
        let mut pacer = false;
        let (mut plot, mut hgrm) = (None, None);

        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg, None),
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Parsed::Help),
                "--json" => json = true,
                "--fail-on-errors" => fail_on_errors = true,
                "--no-progress" => progress = false,
                "--pacer" => pacer = true,
                _ => {
                    let value = match inline {
                        Some(v) => v,
                        None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
                    };
                    let v = value.as_str();
                    match flag.as_str() {
                        "--url" => url = Some(value.clone()),
                        "--scenario" => {
                            scenario = Scenario::parse(v).ok_or_else(|| {
                                format!(
                                "--scenario {v:?}: one of get, submit, status, e2e, wait, mixed"
                            )
                            })?
                        }
                        "--connections" => connections = positive(&flag, v)?,
                        "--pipeline" => pipeline = positive(&flag, v)?,
                        "--duration" => duration = Some(parse_duration(&flag, v)?),
                        "--requests" => requests = Some(positive(&flag, v)? as u64),
                        "--rate" => {
                            let r: f64 = v.parse().map_err(|_| bad(&flag, v))?;
                            if !(r.is_finite() && r > 0.0) {
                                return Err(format!("{flag} {v}: must be > 0"));
                            }
                            rate = Some(r);
                        }
                        "--threads" => threads = Some(positive(&flag, v)?),
                        "--cpus" => {
                            let list = CpuList::parse(v)
                                .map_err(|_| format!("--cpus {v:?}: expected e.g. 1,3 or 2-3"))?;
                            cpus = Some((0..list.len()).map(|i| list.for_shard(i)).collect());
                        }
                        "--payload-bytes" => {
                            payload_bytes = v.parse().map_err(|_| bad(&flag, v))?
                        }
                        "--operation" => operation = value.clone(),
                        "--endpoint" => endpoint = Some(value.clone()),
                        "--pool" => pool = positive(&flag, v)?,
                        "--submit-percent" => {
                            submit_percent = v.parse().map_err(|_| bad(&flag, v))?;
                            if submit_percent > 100 {
                                return Err(format!("{flag} {v}: 0 to 100"));
                            }
                        }
                        "--poll-interval" => poll_interval = parse_duration(&flag, v)?,
                        "--deadline" => deadline = parse_duration(&flag, v)?,
                        "--verify" => verify = v.parse().map_err(|_| bad(&flag, v))?,
                        "--plot" => plot = Some(PathBuf::from(v)),
                        "--hgrm" => hgrm = Some(PathBuf::from(v)),
                        _ => return Err(format!("unknown option {flag} (see loadtest --help)")),
                    }
                }
            }
        }

        let url = url.ok_or("--url is required (see loadtest --help)")?;
        let target = Target::parse(&url)?;
        if duration.is_some() && requests.is_some() {
            return Err("give --duration or --requests, not both".into());
        }
        if duration.is_none() && requests.is_none() {
            duration = Some(Duration::from_secs(10));
        }
        if duration.is_some_and(|d| d.is_zero()) || deadline.is_zero() {
            return Err("--duration and --deadline must be > 0".into());
        }
        let threads = threads.unwrap_or(cpus.as_ref().map_or(1, Vec::len));
        if threads > connections {
            return Err(format!(
                "--threads {threads} > --connections {connections}: each thread needs one"
            ));
        }
        if pacer && rate.is_none() {
            return Err("--pacer paces an open loop: give --rate too".into());
        }
        if verify > 0 && scenario != Scenario::Submit {
            return Err("--verify is for --scenario submit (e2e checks every id)".into());
        }
        Ok(Parsed::Run(Box::new(RunOptions {
            url,
            target,
            scenario,
            connections,
            pipeline,
            duration,
            requests,
            rate,
            threads,
            cpus,
            payload_bytes,
            operation,
            endpoint,
            pool,
            submit_percent,
            poll_interval,
            deadline,
            verify,
            json,
            fail_on_errors,
            progress,
            pacer,
            plot,
            hgrm,
        })))
    }
}

fn bad(flag: &str, v: &str) -> String {
    format!("bad {flag} {v:?}")
}

fn positive(flag: &str, v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} {v:?}: expected a whole number > 0")),
    }
}

/// `10s`, `500ms`, `250us`, `2m`, `1.5s`; a bare number is seconds.
pub fn parse_duration(flag: &str, v: &str) -> Result<Duration, String> {
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad(flag, v))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{flag} {v:?}: units are us, ms, s, m, h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad(flag, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<RunOptions, String> {
        match RunOptions::parse(args.split_whitespace().map(String::from))? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults() {
        let o = parse("--url http://127.0.0.1:1").unwrap();
        assert_eq!(o.scenario, Scenario::Submit);
        assert_eq!((o.connections, o.pipeline, o.threads), (64, 1, 1));
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
        assert_eq!((o.requests, o.rate, o.verify), (None, None, 0));
        assert_eq!(o.deadline, Duration::from_secs(30));
        assert!(o.progress && !o.json && !o.fail_on_errors);
    }

    #[test]
    fn reads_every_flag() {
        let o = parse(
            "--url=http://127.0.0.1:1/b --scenario e2e --connections 8 --pipeline 4 --requests 100 \
             --rate 2.5e3 --cpus 1,3 --payload-bytes 200 --operation uppercase --endpoint null --pool 10 \
             --submit-percent 30 --poll-interval 5ms --deadline 2m --json --fail-on-errors \
             --no-progress --pacer --plot out/p.svg --hgrm=out/",
        )
        .unwrap();
        assert_eq!(o.scenario, Scenario::E2e);
        assert_eq!((o.connections, o.pipeline, o.requests), (8, 4, Some(100)));
        assert_eq!((o.duration, o.rate), (None, Some(2500.0)));
        assert_eq!((o.threads, o.cpus.as_deref()), (2, Some(&[1, 3][..])));
        assert_eq!((o.payload_bytes, o.operation.as_str()), (200, "uppercase"));
        assert_eq!(o.endpoint.as_deref(), Some("null"));
        assert_eq!((o.pool, o.submit_percent), (10, 30));
        assert_eq!(o.poll_interval, Duration::from_millis(5));
        assert_eq!(o.deadline, Duration::from_secs(120));
        assert!(o.json && o.fail_on_errors && !o.progress && o.pacer);
        assert_eq!(o.target.path, "/b");
        assert_eq!(o.plot.as_deref(), Some(std::path::Path::new("out/p.svg")));
        assert_eq!(o.hgrm.as_deref(), Some(std::path::Path::new("out/")));
    }

    #[test]
    fn refuses_bad_combinations() {
        for bad in [
            "",
            "--url http://h:1 --bogus 1",
            "--url http://127.0.0.1:1 --duration 1s --requests 5",
            "--url http://127.0.0.1:1 --connections 0",
            "--url http://127.0.0.1:1 --rate 0",
            "--url http://127.0.0.1:1 --rate -5",
            "--url http://127.0.0.1:1 --pacer",
            "--url http://127.0.0.1:1 --threads 3 --connections 2",
            "--url http://127.0.0.1:1 --scenario nope",
            "--url http://127.0.0.1:1 --scenario e2e --verify 5",
            "--url http://127.0.0.1:1 --submit-percent 101",
            "--url http://127.0.0.1:1 --duration 10x",
            "--url http://127.0.0.1:1 --pipeline",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            RunOptions::parse(["--help".to_string()]),
            Ok(Parsed::Help)
        ));
    }

    #[test]
    fn durations() {
        let d = |v| parse_duration("--d", v).unwrap();
        assert_eq!(d("10s"), Duration::from_secs(10));
        assert_eq!(d("10"), Duration::from_secs(10));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("250us"), Duration::from_micros(250));
        assert_eq!(d("2m"), Duration::from_secs(120));
        assert!(parse_duration("--d", "s").is_err());
    }

    #[test]
    fn help_documents_every_flag_the_parser_knows() {
        let src = include_str!("cli.rs");
        let parser = &src[src.find("match flag.as_str()").unwrap()..src.find("fn bad(").unwrap()];
        let mut n = 0;
        for (i, _) in parser.match_indices("\"--") {
            let flag: String = parser[i + 1..]
                .chars()
                .take_while(|&c| c.is_ascii_alphanumeric() || c == '-')
                .collect();
            let documented =
                HELP.contains(&format!("{flag} ")) || HELP.contains(&format!("{flag}\n"));
            assert!(documented, "{flag} is not in --help");
            n += 1;
        }
        assert!(n >= 20, "found only {n} flags");
    }
}
