//! The latency curves a run recorded, one list for `--plot` and `--hgrm`: each request kind that
//! got answers (from the intended send time in open loop), and in open loop each kind's service
//! time (sent → answer) and the send lag (sent − intended). Each is an HdrHistogram in
//! microseconds with a file-safe name and a label for the legend.

use hdrhistogram::Histogram;

use crate::report::Summary;
use crate::scenario::Kind;

/// How a curve is drawn: kinds in their colour, service times dashed in their kind's colour,
/// the send lag dotted grey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A kind's latency.
    Latency(Kind),
    /// A kind's service time.
    Service(Kind),
    /// Send lag.
    Lag,
}

/// One latency distribution.
pub struct Curve<'a> {
    /// File-safe name: `submit`, `e2e`, `submit-service`, `send-lag`.
    pub name: String,
    /// Legend label.
    pub label: String,
    /// Line style.
    pub style: Style,
    /// Values in microseconds.
    pub hist: &'a Histogram<u64>,
}

/// What a kind's latency measures, for the legend.
fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Get => "get: request → answer",
        Kind::Submit => "submit: request → 202",
        Kind::Status => "status: request → answer",
        Kind::Poll => "poll: one poll's round trip",
        Kind::E2e => "e2e: submit → final answer",
    }
}

/// The non-empty curves of `s`, kinds in report order, then service times, then the send lag.
pub fn curves(s: &Summary) -> Vec<Curve<'_>> {
    let open = s.info.rate.is_some();
    let mut out = Vec::new();
    for k in Kind::ALL {
        let hist = &s.stats.latency[k as usize];
        if !hist.is_empty() {
            let from = if open { " (from intended send)" } else { "" };
            out.push(Curve {
                name: k.name().to_string(),
                label: format!("{}{from}", describe(k)),
                style: Style::Latency(k),
                hist,
            });
        }
    }
    if open {
        for k in Kind::ALL {
            let hist = &s.stats.service[k as usize];
            if !hist.is_empty() {
                out.push(Curve {
                    name: format!("{}-service", k.name()),
                    label: format!("{} service: sent → answer", k.name()),
                    style: Style::Service(k),
                    hist,
                });
            }
        }
        if !s.stats.send_lag.is_empty() {
            out.push(Curve {
                name: "send-lag".into(),
                label: "send lag: sent − intended".into(),
                style: Style::Lag,
                hist: &s.stats.send_lag,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::{RunInfo, Stats};

    fn info(rate: Option<f64>) -> RunInfo {
        RunInfo {
            url: "http://x".into(),
            scenario: "e2e",
            rate,
            pacer: false,
            connections: 1,
            pipeline: 1,
            threads: 1,
            cpus: None,
            verify: 0,
        }
    }

    fn stats() -> Stats {
        let mut st = Stats::default();
        st.record(Kind::Submit, 100);
        st.record(Kind::E2e, 900);
        st.service[Kind::Submit as usize].record(80).unwrap();
        st.send_lag.record(20).unwrap();
        st
    }

    #[test]
    fn closed_loop_has_the_kinds_only() {
        let s = Summary::new(info(None), Duration::from_secs(1), vec![stats()]);
        let names: Vec<String> = curves(&s).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["submit", "e2e"]);
    }

    #[test]
    fn open_loop_adds_service_and_send_lag() {
        let s = Summary::new(info(Some(100.0)), Duration::from_secs(1), vec![stats()]);
        let c = curves(&s);
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["submit", "e2e", "submit-service", "send-lag"]);
        assert!(c[0].label.contains("intended"), "{}", c[0].label);
        assert_eq!(c[2].style, Style::Service(Kind::Submit));
        assert_eq!(c[3].hist.max(), 20);
    }
}
