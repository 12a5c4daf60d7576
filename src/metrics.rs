//! Prometheus metrics without a registry crate: fixed families, atomic counters, bounded
//! labels (route names from the router table, status codes from a fixed list; never a short
//! code or an address).
//!
//! A scrape hits one random instance behind the shared socket, so every instance publishes a
//! [`Snapshot`] to Redis every few seconds and `/metrics` renders all live snapshots, each
//! sample labelled with its `instance`. Sum over `instance` for cluster totals.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const STATUSES: [u16; 21] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 409, 410, 413, 415, 429, 500, 502, 503,
    504, 0,
];
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Family name, type, help — in render order.
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "http_requests_total",
        "counter",
        "HTTP requests answered, by route and status.",
    ),
    (
        "http_request_duration_seconds",
        "histogram",
        "Time from request to response head, by route.",
    ),
    (
        "boltlink_clicks_recorded_total",
        "counter",
        "Click events accepted into the in-memory queue.",
    ),
    (
        "boltlink_clicks_delivered_total",
        "counter",
        "Click events appended to the Redis click stream.",
    ),
    (
        "boltlink_clicks_dropped_total",
        "counter",
        "Click events dropped because the queue was full.",
    ),
    (
        "boltlink_click_queue_depth",
        "gauge",
        "Click events waiting in memory for Redis.",
    ),
    (
        "boltlink_click_queue_lag_seconds",
        "gauge",
        "Age of the oldest click event waiting in memory.",
    ),
    (
        "boltlink_click_stream_length",
        "gauge",
        "Entries in the Redis click stream (cluster-wide; one entry carries one flushed batch of clicks).",
    ),
    (
        "boltlink_consumer_lag_events",
        "gauge",
        "Click stream entries (each a flushed batch of clicks) the consumer group has not processed yet, by group.",
    ),
    (
        "boltlink_consumer_lag_seconds",
        "gauge",
        "Age of the oldest click stream entry the group has not processed, by group.",
    ),
    (
        "boltlink_consumer_processed_total",
        "counter",
        "Click stream entries processed by the group's consumer, by group.",
    ),
    (
        "boltlink_consumer_heartbeat_age_seconds",
        "gauge",
        "Seconds since the group's consumer last reported, by group.",
    ),
    (
        "boltlink_webhook_deliveries_pending",
        "gauge",
        "Webhook events waiting for delivery (first attempt or retry), all keys.",
    ),
    (
        "boltlink_webhook_oldest_pending_seconds",
        "gauge",
        "Age of the oldest webhook event waiting for delivery.",
    ),
    (
        "boltlink_webhook_attempts_total",
        "counter",
        "Webhook delivery attempts since boltlink-webhooks started, by result (delivered, retried, failed: given up).",
    ),
    (
        "boltlink_cache_hits_total",
        "counter",
        "Link lookups answered by a cache, by layer.",
    ),
    (
        "boltlink_cache_misses_total",
        "counter",
        "Link lookups that went to PostgreSQL.",
    ),
    (
        "boltlink_database_reads_total",
        "counter",
        "List and analytics reads with DATABASE_READ_URL set, by the server that ran them (replica, or primary when the replica was not usable or behind the caller's own write).",
    ),
    (
        "boltlink_database_replica_usable",
        "gauge",
        "1 when the read replica answers and is at most DATABASE_READ_MAX_LAG_MS behind.",
    ),
    (
        "boltlink_database_replica_lag_seconds",
        "gauge",
        "How far the read replica is behind the primary (resolution 0.5 s).",
    ),
    (
        "boltlink_redis_up",
        "gauge",
        "1 when this instance reaches Redis.",
    ),
    (
        "boltlink_redis_errors_total",
        "counter",
        "Failed Redis calls.",
    ),
    (
        "boltlink_local_cache_entries",
        "gauge",
        "Entries in the in-process link cache.",
    ),
    (
        "boltlink_password_hashes_in_progress",
        "gauge",
        "Password hashes and checks running now (at most PASSWORD_HASH_CONCURRENCY).",
    ),
    (
        "boltlink_password_hash_refused_total",
        "counter",
        "Requests answered 503 because every password-hashing slot was busy.",
    ),
    (
        "boltlink_http_connections_open",
        "gauge",
        "Client connections open in this process.",
    ),
    (
        "boltlink_http_connections_refused_total",
        "counter",
        "Connections closed at accept because a connection cap was reached with nothing idle to shed, by cap (client, process).",
    ),
    (
        "boltlink_http_connections_closed_total",
        "counter",
        "Connections the server closed on its own, by reason (no_request: nothing sent within HTTP_HEADER_TIMEOUT_MS; idle: HTTP_IDLE_TIMEOUT_MS without a request; shed: the oldest idle one, to admit a new connection over a cap).",
    ),
    (
        "boltlink_http_edge_errors_total",
        "counter",
        "Requests refused before routing because they could not be parsed, by status (400, 414, 431).",
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident set size of the process.",
    ),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch.",
    ),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub family: String,
    /// Appended to the family name: `""`, `_bucket`, `_sum`, `_count`.
    pub suffix: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn new(family: &str, labels: &[(&str, &str)], value: f64) -> Self {
        Self {
            family: family.to_string(),
            suffix: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub instance: String,
    pub samples: Vec<Sample>,
}

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Metrics {
    routes: &'static [&'static str],
    requests: Vec<[AtomicU64; STATUSES.len()]>,
    durations: Vec<Histogram>,
    pub cache_local_hits: AtomicU64,
    pub cache_redis_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Requests hyper refused before routing (see `http::edge`): 400, 414, 431.
    edge_errors: [AtomicU64; EDGE_STATUSES.len()],
}

/// The statuses hyper answers by itself for requests it cannot parse.
pub const EDGE_STATUSES: [u16; 3] = [400, 414, 431];

impl Metrics {
    /// `routes`: the route names used as the `route` label, indexed by route id.
    pub fn new(routes: &'static [&'static str]) -> Self {
        Self {
            routes,
            requests: routes
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            durations: routes.iter().map(|_| Histogram::new()).collect(),
            cache_local_hits: AtomicU64::new(0),
            cache_redis_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            edge_errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts a request refused before routing, with the status it was answered.
    pub fn observe_edge_error(&self, status: u16) {
        if let Some(i) = EDGE_STATUSES.iter().position(|s| *s == status) {
            self.edge_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn observe_request(&self, route: usize, status: u16, elapsed: Duration) {
        let slot = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len() - 1);
        if let (Some(counts), Some(h)) = (self.requests.get(route), self.durations.get(route)) {
            counts[slot].fetch_add(1, Ordering::Relaxed);
            h.observe(elapsed);
        }
    }

    pub fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .flat_map(|r| r.iter())
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// This instance's samples (without the `instance` label), plus `extra` gauges.
    pub fn snapshot(&self, instance: &str, extra: Vec<Sample>) -> Snapshot {
        let mut samples = Vec::new();
        for (route_idx, route) in self.routes.iter().enumerate() {
            for (slot, status) in STATUSES.iter().enumerate() {
                let v = self.requests[route_idx][slot].load(Ordering::Relaxed);
                if v > 0 {
                    let status = if *status == 0 {
                        "other".to_string()
                    } else {
                        status.to_string()
                    };
                    samples.push(Sample::new(
                        "http_requests_total",
                        &[("route", route), ("status", &status)],
                        v as f64,
                    ));
                }
            }
            let h = &self.durations[route_idx];
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                samples.push(Sample {
                    suffix: "_bucket".into(),
                    ..Sample::new(
                        "http_request_duration_seconds",
                        &[("route", route), ("le", &bound.to_string())],
                        cumulative as f64,
                    )
                });
            }
            samples.push(Sample {
                suffix: "_bucket".into(),
                ..Sample::new(
                    "http_request_duration_seconds",
                    &[("route", route), ("le", "+Inf")],
                    count as f64,
                )
            });
            samples.push(Sample {
                suffix: "_sum".into(),
                ..Sample::new(
                    "http_request_duration_seconds",
                    &[("route", route)],
                    h.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
                )
            });
            samples.push(Sample {
                suffix: "_count".into(),
                ..Sample::new(
                    "http_request_duration_seconds",
                    &[("route", route)],
                    count as f64,
                )
            });
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        samples.push(Sample::new(
            "boltlink_cache_hits_total",
            &[("layer", "local")],
            load(&self.cache_local_hits),
        ));
        samples.push(Sample::new(
            "boltlink_cache_hits_total",
            &[("layer", "redis")],
            load(&self.cache_redis_hits),
        ));
        samples.push(Sample::new(
            "boltlink_cache_misses_total",
            &[],
            load(&self.cache_misses),
        ));
        for (status, count) in EDGE_STATUSES.iter().zip(&self.edge_errors) {
            samples.push(Sample::new(
                "boltlink_http_edge_errors_total",
                &[("status", &status.to_string())],
                load(count),
            ));
        }
        if let Some(rss) = resident_memory_bytes() {
            samples.push(Sample::new(
                "process_resident_memory_bytes",
                &[],
                rss as f64,
            ));
        }
        samples.extend(extra);
        Snapshot {
            instance: instance.to_string(),
            samples,
        }
    }
}

/// Renders snapshots (one per instance) plus cluster-level samples as Prometheus text 0.0.4.
pub fn render(snapshots: &[Snapshot], cluster: &[Sample]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for (family, kind, help) in FAMILIES {
        let mut header_written = false;
        let per_instance = snapshots.iter().flat_map(|s| {
            s.samples
                .iter()
                .map(move |x| (Some(s.instance.as_str()), x))
        });
        let cluster_wide = cluster.iter().map(|x| (None, x));
        for (instance, sample) in per_instance.chain(cluster_wide) {
            if sample.family != *family {
                continue;
            }
            if !header_written {
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
                header_written = true;
            }
            out.push_str(family);
            out.push_str(&sample.suffix);
            let mut labels: Vec<(&str, &str)> = Vec::new();
            if let Some(i) = instance {
                labels.push(("instance", i));
            }
            labels.extend(sample.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if !labels.is_empty() {
                out.push('{');
                for (n, (k, v)) in labels.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", sample.value);
        }
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// RSS from `/proc/self/statm` (pages x page size, assumed 4 KiB as on x86_64/aarch64 Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    static ROUTES: &[&str] = &["redirect", "shorten"];

    #[test]
    fn snapshot_counts_requests_by_route_and_status() {
        let m = Metrics::new(ROUTES);
        m.observe_request(0, 302, Duration::from_micros(300));
        m.observe_request(0, 302, Duration::from_millis(3));
        m.observe_request(1, 201, Duration::from_millis(20));
        m.observe_request(1, 999, Duration::from_millis(20));
        assert_eq!(m.requests_total(), 4);
        let text = render(&[m.snapshot("a", vec![])], &[]);
        assert!(
            text.contains(
                "http_requests_total{instance=\"a\",route=\"redirect\",status=\"302\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("status=\"other\"} 1"));
        assert!(text.contains("http_request_duration_seconds_bucket{instance=\"a\",route=\"redirect\",le=\"0.0005\"} 1"));
        assert!(text
            .contains("http_request_duration_seconds_count{instance=\"a\",route=\"redirect\"} 2"));
        assert_eq!(
            text.matches("# TYPE http_requests_total counter").count(),
            1
        );
    }

    #[test]
    fn render_merges_instances_under_one_header() {
        let a = Metrics::new(ROUTES);
        let b = Metrics::new(ROUTES);
        a.observe_request(0, 302, Duration::from_millis(1));
        b.observe_request(0, 302, Duration::from_millis(1));
        let text = render(
            &[a.snapshot("a", vec![]), b.snapshot("b", vec![])],
            &[Sample::new("boltlink_click_stream_length", &[], 7.0)],
        );
        assert_eq!(text.matches("# HELP http_requests_total").count(), 1);
        assert!(text.contains("instance=\"a\",route=\"redirect\",status=\"302\"} 1"));
        assert!(text.contains("instance=\"b\",route=\"redirect\",status=\"302\"} 1"));
        assert!(text.contains("boltlink_click_stream_length 7"));
    }
}
