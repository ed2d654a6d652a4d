//! What a run measured: per-thread [`Stats`] (HdrHistograms in microseconds, counters, accepted
//! ids), merged into a [`Summary`] at the end that renders as a human table or one JSON object
//! and decides the exit code.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::scenario::{Final, Kind, KINDS};

/// Largest latency recorded exactly: one hour, in microseconds. Longer ones are clamped to it.
const MAX_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Everything one thread measured (or all of them, merged).
pub struct Stats {
    /// Latency per kind: from the intended send time (open loop) or the send (closed loop).
    pub latency: Vec<Histogram<u64>>,
    /// Open loop: time from the actual send to the answer, per kind.
    pub service: Vec<Histogram<u64>>,
    /// Open loop: actual send − intended send, over the paced requests.
    pub send_lag: Histogram<u64>,
    /// Answers by status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection reset or closed, unparseable answer, hard stop).
    pub transport_errors: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
    /// 2xx answers whose body broke the contract.
    pub bad_responses: u64,
    /// First transport-level error seen, for the report.
    pub first_error: Option<String>,
    /// Final states seen by polls.
    pub completed: u64,
    /// `FAILED` final states.
    pub failed: u64,
    /// `TIMEOUT` final states.
    pub timed_out: u64,
    /// Accepted ids not final within the deadline, or answered 404 while polled.
    pub lost: u64,
    /// Ids sampled by `--verify` and found final.
    pub verified: u64,
    /// Every id a 202 handed out, for the duplicate check.
    pub ids: Vec<u128>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            latency: (0..KINDS).map(|_| histogram()).collect(),
            service: (0..KINDS).map(|_| histogram()).collect(),
            send_lag: histogram(),
            status_codes: BTreeMap::new(),
            transport_errors: 0,
            connect_errors: 0,
            bad_responses: 0,
            first_error: None,
            completed: 0,
            failed: 0,
            timed_out: 0,
            lost: 0,
            verified: 0,
            ids: Vec::new(),
        }
    }
}

impl Stats {
    /// Records one latency in microseconds.
    pub fn record(&mut self, kind: Kind, micros: u64) {
        self.latency[kind as usize].saturating_record(micros);
    }

    /// Records one answer's status code.
    pub fn status(&mut self, code: u16) {
        *self.status_codes.entry(code).or_default() += 1;
    }

    /// Counts a final state.
    pub fn final_state(&mut self, f: Final) {
        match f {
            Final::Completed => self.completed += 1,
            Final::Failed => self.failed += 1,
            Final::Timeout => self.timed_out += 1,
        }
    }

    /// Counts `n` requests lost to a transport problem described by `why`.
    pub fn transport_error(&mut self, n: u64, why: impl FnOnce() -> String) {
        self.transport_errors += n;
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }

    /// Answers received.
    pub fn responses(&self) -> u64 {
        self.status_codes.values().sum()
    }

    /// Answers outside 2xx.
    pub fn non_2xx(&self) -> u64 {
        self.status_codes
            .iter()
            .filter(|(c, _)| !(200..300).contains(*c))
            .map(|(_, n)| n)
            .sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, mut other: Stats) {
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            a.add(b).expect("same bounds");
        }
        for (a, b) in self.service.iter_mut().zip(&other.service) {
            a.add(b).expect("same bounds");
        }
        self.send_lag.add(&other.send_lag).expect("same bounds");
        for (code, n) in other.status_codes {
            *self.status_codes.entry(code).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.connect_errors += other.connect_errors;
        self.bad_responses += other.bad_responses;
        self.first_error = self.first_error.take().or(other.first_error);
        self.completed += other.completed;
        self.failed += other.failed;
        self.timed_out += other.timed_out;
        self.lost += other.lost;
        self.verified += other.verified;
        self.ids.append(&mut other.ids);
    }
}

/// How the run was set up, for the report's header.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `--url`.
    pub url: String,
    /// Scenario name.
    pub scenario: &'static str,
    /// `--rate`, when open loop.
    pub rate: Option<f64>,
    /// `--pacer`.
    pub pacer: bool,
    /// Total connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Worker threads.
    pub threads: usize,
    /// CPUs they are pinned to.
    pub cpus: Option<Vec<usize>>,
    /// `--verify` sample size asked for.
    pub verify: u64,
}

/// The merged result of a run.
pub struct Summary {
    /// Set-up.
    pub info: RunInfo,
    /// Measured phase: start to the last answer (or the hard stop).
    pub elapsed: Duration,
    /// Merged counters and histograms (ids sorted).
    pub stats: Stats,
    /// Ids handed out more than once.
    pub duplicates: u64,
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Reads them off `h`.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    fn to_json(self) -> Value {
        json!({
            "count": self.count, "mean": (self.mean * 10.0).round() / 10.0,
            "p50": self.p50, "p90": self.p90, "p99": self.p99, "p99_9": self.p999, "max": self.max,
        })
    }
}

impl Summary {
    /// Merges the threads' stats and checks ids for duplicates.
    pub fn new(info: RunInfo, elapsed: Duration, parts: Vec<Stats>) -> Summary {
        let mut stats = Stats::default();
        for p in parts {
            stats.merge(p);
        }
        let duplicates = crate::ids::count_duplicates(&mut stats.ids);
        Summary {
            info,
            elapsed,
            stats,
            duplicates,
        }
    }

    fn seconds(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Answers per second over the measured phase.
    pub fn throughput(&self) -> f64 {
        self.stats.responses() as f64 / self.seconds()
    }

    /// Requests that reached a final state, per second.
    pub fn completed_per_s(&self) -> f64 {
        (self.stats.completed + self.stats.failed + self.stats.timed_out) as f64 / self.seconds()
    }

    /// 1 when ids were lost or duplicated, nothing was answered at all, or (with
    /// `fail_on_errors`) on any error; else 0.
    pub fn exit_code(&self, fail_on_errors: bool) -> u8 {
        let s = &self.stats;
        let errors = s.non_2xx() + s.transport_errors + s.connect_errors + s.bad_responses;
        let silent = s.responses() == 0;
        u8::from(s.lost > 0 || self.duplicates > 0 || silent || (fail_on_errors && errors > 0))
    }

    fn kinds(&self) -> impl Iterator<Item = (Kind, Percentiles, Percentiles)> + '_ {
        Kind::ALL.into_iter().filter_map(|k| {
            let h = &self.stats.latency[k as usize];
            (!h.is_empty()).then(|| {
                (
                    k,
                    Percentiles::of(h),
                    Percentiles::of(&self.stats.service[k as usize]),
                )
            })
        })
    }

    /// One JSON object with everything.
    pub fn to_json(&self, fail_on_errors: bool) -> Value {
        let s = &self.stats;
        let open = self.info.rate.is_some();
        let mut latency = Map::new();
        let mut service = Map::new();
        for (k, lat, svc) in self.kinds() {
            latency.insert(k.name().into(), lat.to_json());
            if open {
                service.insert(k.name().into(), svc.to_json());
            }
        }
        let codes: Map<String, Value> = s
            .status_codes
            .iter()
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect();
        let mut v = json!({
            "url": self.info.url,
            "scenario": self.info.scenario,
            "mode": if open { "open" } else { "closed" },
            "rate_requested": self.info.rate,
            "pacing": if !open { None } else if self.info.pacer { Some("pacer") } else { Some("timer") },
            "threads": self.info.threads,
            "cpus": self.info.cpus,
            "connections": self.info.connections,
            "pipeline": self.info.pipeline,
            "duration_s": round3(self.elapsed.as_secs_f64()),
            "requests": s.responses(),
            "throughput_rps": round3(self.throughput()),
            "status_codes": codes,
            "non_2xx": s.non_2xx(),
            "transport_errors": s.transport_errors,
            "connect_errors": s.connect_errors,
            "bad_responses": s.bad_responses,
            "first_error": s.first_error,
            "accepted_ids": s.ids.len(),
            "duplicate_ids": self.duplicates,
            "lost_ids": s.lost,
            "verify_requested": self.info.verify,
            "verified_ids": s.verified,
            "completed": s.completed,
            "failed": s.failed,
            "timed_out": s.timed_out,
            "completed_per_s": round3(self.completed_per_s()),
            "latency_us": latency,
            "exit_code": self.exit_code(fail_on_errors),
        });
        if open {
            v["service_time_us"] = Value::Object(service);
            v["send_lag_us"] = Percentiles::of(&s.send_lag).to_json();
        }
        v
    }

    /// The human summary.
    pub fn to_text(&self, fail_on_errors: bool) -> String {
        use std::fmt::Write;
        let s = &self.stats;
        let i = &self.info;
        let mut o = String::new();
        let mode = match i.rate {
            Some(r) => format!(
                "open loop at {} req/s ({})",
                group(r.round() as u64),
                if i.pacer {
                    "100 us pacer"
                } else {
                    "1 ms timer"
                }
            ),
            None => "closed loop".into(),
        };
        let cpus = i
            .cpus
            .as_ref()
            .map(|c| format!(" on CPU {c:?}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{} {}, {mode}, {} connections x pipeline {}, {} thread(s){cpus}, {:.2} s",
            i.url,
            i.scenario,
            i.connections,
            i.pipeline,
            i.threads,
            self.seconds()
        );
        let _ = writeln!(
            o,
            "  requests    {} answered, {}/s",
            group(s.responses()),
            group(self.throughput().round() as u64)
        );
        let codes: Vec<String> = s
            .status_codes
            .iter()
            .map(|(c, n)| format!("{c}: {}", group(*n)))
            .collect();
        let codes = if codes.is_empty() {
            "none".to_string()
        } else {
            codes.join(", ")
        };
        let _ = writeln!(o, "  statuses    {codes}");
        let _ = writeln!(
            o,
            "  errors      non-2xx {}, transport {}, connect {}, bad bodies {}{}",
            group(s.non_2xx()),
            group(s.transport_errors),
            group(s.connect_errors),
            group(s.bad_responses),
            s.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        if !s.ids.is_empty() || s.lost > 0 {
            let verify = if i.verify > 0 {
                format!(", verified final {} of {} sampled", s.verified, i.verify)
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "  ids         {} accepted, {} duplicate, {} lost{verify}",
                group(s.ids.len() as u64),
                group(self.duplicates),
                group(s.lost)
            );
        }
        if s.completed + s.failed + s.timed_out > 0 {
            let _ = writeln!(
                o,
                "  final       {} completed, {} failed, {} timeout; {}/s",
                group(s.completed),
                group(s.failed),
                group(s.timed_out),
                group(self.completed_per_s().round() as u64)
            );
        }
        let what = if i.rate.is_some() {
            "latency from intended send time"
        } else {
            "latency"
        };
        let _ = writeln!(
            o,
            "  {what:<34} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "count", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut row = |name: String, p: Percentiles| {
            let _ = writeln!(
                o,
                "  {name:<34} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                group(p.count),
                fmt_us(p.mean.round() as u64),
                fmt_us(p.p50),
                fmt_us(p.p90),
                fmt_us(p.p99),
                fmt_us(p.p999),
                fmt_us(p.max)
            );
        };
        for (k, lat, svc) in self.kinds() {
            row(k.name().to_string(), lat);
            if i.rate.is_some() && svc.count > 0 {
                row(format!("{} (service: sent→answer)", k.name()), svc);
            }
        }
        if i.rate.is_some() {
            row(
                "send lag (sent − intended)".into(),
                Percentiles::of(&s.send_lag),
            );
        }
        let code = self.exit_code(fail_on_errors);
        let _ = writeln!(
            o,
            "  result      {}",
            if code == 0 { "ok" } else { "FAILED (exit 1)" }
        );
        o
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds, shown as `us`, `ms` or `s` with three significant-ish digits.
pub fn fmt_us(us: u64) -> String {
    match us {
        0..=9_999 => format!("{us}us"),
        10_000..=9_999_999 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            url: "http://x".into(),
            scenario: "submit",
            rate: None,
            pacer: false,
            connections: 1,
            pipeline: 1,
            threads: 2,
            cpus: None,
            verify: 0,
        }
    }

    #[test]
    fn merges_threads_and_finds_duplicates_across_them() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for us in 1..=100 {
            a.record(Kind::Submit, us * 10);
            a.status(202);
        }
        b.record(Kind::Submit, 5_000);
        b.status(503);
        a.ids = vec![1, 2, 3];
        b.ids = vec![4, 2];
        let s = Summary::new(info(), Duration::from_secs(2), vec![a, b]);
        assert_eq!(s.stats.responses(), 101);
        assert_eq!(s.stats.non_2xx(), 1);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.exit_code(false), 1, "a duplicate fails the run");
        let p = Percentiles::of(&s.stats.latency[Kind::Submit as usize]);
        assert_eq!(p.count, 101);
        assert!((5_000..=5_005).contains(&p.max), "{p:?}"); // 3 significant digits
        assert!((509..=511).contains(&p.p50), "{p:?}"); // the 51st of 101 values
        assert!((985..=1005).contains(&p.p99), "{p:?}");
        assert!((s.throughput() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn exit_code_follows_lost_ids_and_errors() {
        let mut st = Stats::default();
        st.status(202);
        let s = Summary::new(info(), Duration::from_secs(1), vec![st]);
        assert_eq!((s.exit_code(false), s.exit_code(true)), (0, 0));

        let mut st = Stats::default();
        st.status(500);
        let s = Summary::new(info(), Duration::from_secs(1), vec![st]);
        assert_eq!((s.exit_code(false), s.exit_code(true)), (0, 1));

        let mut st = Stats::default();
        st.status(200);
        st.transport_error(1, || "reset".into());
        let s = Summary::new(info(), Duration::from_secs(1), vec![st]);
        assert_eq!((s.exit_code(false), s.exit_code(true)), (0, 1));

        let s = Summary::new(info(), Duration::from_secs(1), vec![Stats::default()]);
        assert_eq!(s.exit_code(false), 1, "nothing answered is no success");

        let mut st = Stats {
            lost: 1,
            ..Stats::default()
        };
        st.status(202);
        let s = Summary::new(info(), Duration::from_secs(1), vec![st]);
        assert_eq!(s.exit_code(false), 1);
        let j = s.to_json(false);
        assert_eq!(
            (j["lost_ids"].as_u64(), j["exit_code"].as_u64()),
            (Some(1), Some(1))
        );
    }

    #[test]
    fn json_has_the_fields_and_open_loop_extras() {
        let mut st = Stats::default();
        st.record(Kind::Get, 100);
        st.service[Kind::Get as usize].record(40).unwrap();
        st.send_lag.record(60).unwrap();
        st.status(200);
        let mut i = info();
        i.rate = Some(1000.0);
        let s = Summary::new(i, Duration::from_secs(1), vec![st]);
        let j = s.to_json(false);
        assert_eq!(j["mode"], "open");
        assert_eq!(j["requests"], 1);
        assert_eq!(j["status_codes"]["200"], 1);
        assert_eq!(j["latency_us"]["get"]["p50"], 100);
        assert_eq!(j["service_time_us"]["get"]["max"], 40);
        assert_eq!(j["send_lag_us"]["max"], 60);
        assert!(
            j["latency_us"].get("submit").is_none(),
            "empty kinds are left out"
        );
        let text = s.to_text(false);
        assert!(text.contains("get (service: sent→answer)"), "{text}");
        assert!(text.contains("result      ok"), "{text}");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(fmt_us(950), "950us");
        assert_eq!(fmt_us(12_340), "12.34ms");
        assert_eq!(fmt_us(12_340_000), "12.34s");
    }
}
