//! Prometheus text format 0.0.4 for the summed shard metrics. Family names follow the Python
//! OpenHQM; gauges that describe one shard's own resources carry a `shard` label.

use std::fmt::Write;

use super::histogram::{Histogram, BUCKETS};
use super::Endpoint;
use super::{DlqReason, RejectReason, ShardMetrics, WorkerError, METHODS, OUTCOMES, STATUSES};

/// Renders every family from the per-shard snapshots (index = shard id).
pub fn encode(shards: &[ShardMetrics], queue_name: &str) -> String {
    let mut total = ShardMetrics::default();
    for s in shards {
        total.merge(s);
    }
    let mut out = String::with_capacity(8 * 1024);
    let o = &mut out;

    family(
        o,
        "openhqm_api_requests_total",
        "counter",
        "HTTP requests answered.",
    );
    for (e, endpoint) in Endpoint::ALL.iter().enumerate() {
        for (m, method) in METHODS.iter().enumerate() {
            for (s, status) in STATUSES.iter().enumerate() {
                let n = total.requests_at(e, m, s);
                if n > 0 {
                    let status = if *status == 0 {
                        "other".to_owned()
                    } else {
                        status.to_string()
                    };
                    let _ = writeln!(
                        o,
                        "openhqm_api_requests_total{{method=\"{method}\",endpoint=\"{}\",status=\"{status}\"}} {n}",
                        endpoint.template()
                    );
                }
            }
        }
    }

    family(
        o,
        "openhqm_api_request_duration_seconds",
        "histogram",
        "Time to answer HTTP requests.",
    );
    for e in Endpoint::ALL {
        let labels = format!("endpoint=\"{}\"", e.template());
        histogram(
            o,
            "openhqm_api_request_duration_seconds",
            &labels,
            &total.request_duration[e.index()],
        );
    }

    gauge(
        o,
        "openhqm_api_requests_in_flight",
        "HTTP requests being handled.",
        total.in_flight,
    );
    gauge(
        o,
        "openhqm_http_connections_open",
        "Open HTTP connections.",
        total.connections,
    );
    gauge(
        o,
        "openhqm_waiters",
        "Clients waiting for a final state (submit-and-wait, long-poll).",
        total.waiters,
    );

    family(
        o,
        "openhqm_queue_publish_total",
        "counter",
        "Jobs offered to the queue.",
    );
    let _ = writeln!(
        o,
        "openhqm_queue_publish_total{{queue_name=\"{queue_name}\",status=\"success\"}} {}",
        total.published
    );
    let _ = writeln!(
        o,
        "openhqm_queue_publish_total{{queue_name=\"{queue_name}\",status=\"failure\"}} {}",
        total.publish_failed
    );

    family(
        o,
        "openhqm_queue_consume_total",
        "counter",
        "Jobs handed to worker slots.",
    );
    let _ = writeln!(
        o,
        "openhqm_queue_consume_total{{queue_name=\"{queue_name}\"}} {}",
        total.consumed
    );

    family(
        o,
        "openhqm_queue_retries_total",
        "counter",
        "Retries scheduled after a failed attempt.",
    );
    let _ = writeln!(
        o,
        "openhqm_queue_retries_total{{queue_name=\"{queue_name}\"}} {}",
        total.retries
    );

    family(
        o,
        "openhqm_queue_depth",
        "gauge",
        "Jobs waiting (ready or delayed for a retry), per shard.",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(
            o,
            "openhqm_queue_depth{{queue_name=\"{queue_name}\",shard=\"{i}\"}} {}",
            s.queue_ready + s.queue_delayed
        );
    }

    family(
        o,
        "openhqm_queue_pending",
        "gauge",
        "Jobs delivered to a consumer and not yet acknowledged (Redis), per shard.",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(
            o,
            "openhqm_queue_pending{{queue_name=\"{queue_name}\",shard=\"{i}\"}} {}",
            s.queue_pending
        );
    }

    family(
        o,
        "openhqm_queue_dlq_total",
        "counter",
        "Jobs moved to the dead-letter queue.",
    );
    for (i, reason) in DlqReason::LABELS.iter().enumerate() {
        let _ = writeln!(
            o,
            "openhqm_queue_dlq_total{{reason=\"{reason}\"}} {}",
            total.dead_lettered[i]
        );
    }

    family(
        o,
        "openhqm_worker_active",
        "gauge",
        "Worker slots processing a job, per shard.",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(
            o,
            "openhqm_worker_active{{shard=\"{i}\"}} {}",
            s.workers_active
        );
    }

    family(
        o,
        "openhqm_worker_slots",
        "gauge",
        "Worker slots (capacity), per shard.",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(o, "openhqm_worker_slots{{shard=\"{i}\"}} {}", s.worker_slots);
    }

    family(
        o,
        "openhqm_backend_up",
        "gauge",
        "1 while the shard's queue backend can take work (Redis: connected, start-up checks passed).",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(o, "openhqm_backend_up{{shard=\"{i}\"}} {}", s.backend_up);
    }

    family(
        o,
        "openhqm_queue_oldest_age_seconds",
        "gauge",
        "Age of the oldest job waiting to be taken, per shard (0 when none waits).",
    );
    for (i, s) in shards.iter().enumerate() {
        if let Some(age) = s.oldest_age_seconds {
            let _ = writeln!(o, "openhqm_queue_oldest_age_seconds{{shard=\"{i}\"}} {age}");
        }
    }

    family(
        o,
        "openhqm_queue_wait_seconds",
        "histogram",
        "Time from acceptance to the first start of processing.",
    );
    histogram(o, "openhqm_queue_wait_seconds", "", &total.queue_wait);

    family(
        o,
        "openhqm_request_duration_seconds",
        "histogram",
        "Time from acceptance to the final state, by final status.",
    );
    for (i, outcome) in OUTCOMES.iter().enumerate() {
        let labels = format!("status=\"{}\"", outcome.as_str());
        histogram(
            o,
            "openhqm_request_duration_seconds",
            &labels,
            &total.request_total[i],
        );
    }

    family(
        o,
        "openhqm_rejected_total",
        "counter",
        "Submits refused, by reason.",
    );
    for (i, reason) in RejectReason::LABELS.iter().enumerate() {
        let _ = writeln!(
            o,
            "openhqm_rejected_total{{reason=\"{reason}\"}} {}",
            total.rejected[i]
        );
    }

    family(
        o,
        "openhqm_shutdown_dropped_total",
        "counter",
        "Accepted requests still in the embedded queue when a drain ended (logged with their ids).",
    );
    let _ = writeln!(o, "openhqm_shutdown_dropped_total {}", total.dropped_on_exit);

    family(
        o,
        "openhqm_build_info",
        "gauge",
        "The running build (always 1).",
    );
    let _ = writeln!(
        o,
        "openhqm_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    family(
        o,
        "openhqm_worker_processing_duration_seconds",
        "histogram",
        "Processing time per attempt.",
    );
    for (i, outcome) in OUTCOMES.iter().enumerate() {
        let labels = format!("status=\"{}\"", outcome.as_str());
        histogram(
            o,
            "openhqm_worker_processing_duration_seconds",
            &labels,
            &total.processing_duration[i],
        );
    }

    family(
        o,
        "openhqm_worker_errors_total",
        "counter",
        "Failed processing attempts.",
    );
    for (i, kind) in WorkerError::LABELS.iter().enumerate() {
        let _ = writeln!(
            o,
            "openhqm_worker_errors_total{{error_type=\"{kind}\"}} {}",
            total.worker_errors[i]
        );
    }

    family(
        o,
        "openhqm_proxy_requests_total",
        "counter",
        "Upstream calls of proxy mode, by endpoint and outcome (status code or error kind).",
    );
    for (endpoint, calls) in &total.proxy.endpoints {
        for (code, n) in &calls.codes {
            let _ = writeln!(
                o,
                "openhqm_proxy_requests_total{{endpoint=\"{endpoint}\",code=\"{code}\"}} {n}"
            );
        }
    }
    family(
        o,
        "openhqm_proxy_duration_seconds",
        "histogram",
        "Upstream call time of proxy mode, by endpoint.",
    );
    for (endpoint, calls) in &total.proxy.endpoints {
        let labels = format!("endpoint=\"{endpoint}\"");
        histogram(o, "openhqm_proxy_duration_seconds", &labels, &calls.durations);
    }

    family(
        o,
        "openhqm_request_states",
        "gauge",
        "Request states held in memory, per shard.",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(o, "openhqm_request_states{{shard=\"{i}\"}} {}", s.states);
    }

    family(
        o,
        "openhqm_redis_command_duration_seconds",
        "histogram",
        "Redis round trip per pipelined call.",
    );
    let labels = "connection=\"commands\"";
    histogram(
        o,
        "openhqm_redis_command_duration_seconds",
        labels,
        &total.redis_round_trips,
    );

    family(
        o,
        "openhqm_redis_reconnects_total",
        "counter",
        "Redis connections lost and re-established.",
    );
    let _ = writeln!(
        o,
        "openhqm_redis_reconnects_total {}",
        total.redis_reconnects
    );
    out
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(o: &mut String, name: &str, help: &str, v: u64) {
    family(o, name, "gauge", help);
    let _ = writeln!(o, "{name} {v}");
}

fn histogram(o: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (sep, own) = if labels.is_empty() {
        ("", String::new())
    } else {
        (",", format!("{{{labels}}}"))
    };
    let mut cumulative = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += h.counts[i];
        let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(o, "{name}_sum{own} {}", h.sum);
    let _ = writeln!(o, "{name}_count{own} {}", h.count());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let mut a = ShardMetrics::default();
        a.request(Endpoint::Submit, Some(Method::Post), 202, 0.0003);
        a.published = 1;
        let mut b = ShardMetrics::default();
        b.request(Endpoint::Submit, Some(Method::Post), 202, 2.0);
        b.queue_ready = 4;
        let text = encode(&[a, b], "openhqm-requests");
        assert!(text.contains(
            "openhqm_api_requests_total{method=\"POST\",endpoint=\"/api/v1/submit\",status=\"202\"} 2\n"
        ));
        assert!(text.contains(
            "openhqm_api_request_duration_seconds_bucket{endpoint=\"/api/v1/submit\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains(
            "openhqm_api_request_duration_seconds_bucket{endpoint=\"/api/v1/submit\",le=\"+Inf\"} 2\n"
        ));
        assert!(
            text.contains("openhqm_queue_depth{queue_name=\"openhqm-requests\",shard=\"1\"} 4\n")
        );
        assert!(text.contains(
            "openhqm_queue_publish_total{queue_name=\"openhqm-requests\",status=\"success\"} 1\n"
        ));
        assert!(text.contains("openhqm_redis_reconnects_total 0\n"));
        assert!(text
            .contains("openhqm_redis_command_duration_seconds_count{connection=\"commands\"} 0\n"));
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| declared.contains(*b)))
                    .unwrap_or(name);
                assert!(declared.contains(base), "undeclared {name}");
            }
        }
    }
}
