//! Prometheus metrics, served as text on `GET /metrics` of each replica's own port.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use warp::http::{Method, StatusCode};

/// Bucket bounds, in seconds, of the duration histograms: from half a millisecond, under the
/// contest's typical answer, to five seconds, past the database timeout.
const DURATION_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Panics of the process, counted from its panic hook, which no replica's state reaches.
static PANICS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "panics_total",
        "Panics contained in a connection's task since the process started.",
    )
    .expect("valid metric")
});

/// Counts one contained panic.
pub(crate) fn count_panic() {
    PANICS.inc();
}

pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub(crate) batch_size: Histogram,
    pool_connections: IntGaugeVec,
    mirrored_people: IntGauge,
    mirror_bytes: IntGauge,
    mirror_budget_bytes: IntGauge,
    mirror_full: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status.",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response, by route.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "group_commit_batch_size",
                "People written per INSERT by the group-commit writer.",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
        )
        .expect("valid metric");
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database connections of this replica's pool, by state (in_use, idle, waiting requests).",
            ),
            &["state"],
        )
        .expect("valid metric");
        let mirrored_people = IntGauge::new(
            "mirror_people",
            "People held in this replica's in-memory mirror of the table.",
        )
        .expect("valid metric");

        let mirror_bytes = IntGauge::new(
            "mirror_bytes",
            "Bytes of memory the in-memory mirror holds, as it counts them.",
        )
        .expect("valid metric");
        let mirror_budget_bytes = IntGauge::new(
            "mirror_budget_bytes",
            "The in-memory mirror's memory budget: three quarters of the replica's.",
        )
        .expect("valid metric");
        let mirror_full = IntGauge::new(
            "mirror_full",
            "1 once the mirror has reached its budget: searches then also read the newer rows \
             from the database.",
        )
        .expect("valid metric");

        let registry = Registry::new();
        let collectors: [Box<dyn Collector>; 10] = [
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(batch_size.clone()),
            Box::new(pool_connections.clone()),
            Box::new(mirrored_people.clone()),
            Box::new(mirror_bytes.clone()),
            Box::new(mirror_budget_bytes.clone()),
            Box::new(mirror_full.clone()),
            Box::new(PANICS.clone()),
            // CPU seconds, resident memory, open files of this process.
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            registry.register(collector).expect("registered once");
        }

        Metrics {
            registry,
            requests,
            latency,
            batch_size,
            pool_connections,
            mirrored_people,
            mirror_bytes,
            mirror_budget_bytes,
            mirror_full,
        }
    }

    /// Counts one answered request; called for every response, including rejections.
    pub(crate) fn observe(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let route = route_label(method, path);
        self.requests
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition, with the gauges set from `readings`, taken at this moment.
    pub(crate) fn render(&self, readings: Readings) -> String {
        self.mirrored_people.set(readings.mirror_people as i64);
        self.mirror_bytes.set(readings.mirror_bytes as i64);
        self.mirror_budget_bytes
            .set(i64::try_from(readings.mirror_budget_bytes).unwrap_or(i64::MAX));
        self.mirror_full.set(i64::from(readings.mirror_full));
        let pool = readings.pool;
        let in_use = pool.size.saturating_sub(pool.available);
        self.pool_connections
            .with_label_values(&["in_use"])
            .set(in_use as i64);
        self.pool_connections
            .with_label_values(&["idle"])
            .set(pool.available as i64);
        self.pool_connections
            .with_label_values(&["waiting"])
            .set(pool.waiting as i64);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(
                &[self.registry.gather(), readings.families].concat(),
                &mut text,
            )
            .expect("text encoding into memory");
        String::from_utf8(text).expect("the text encoder writes UTF-8")
    }
}

/// What the replica's parts report at a scrape, read from them by whoever serves it: this
/// module takes numbers and families, and knows none of the parts.
pub(crate) struct Readings {
    pub(crate) mirror_people: usize,
    pub(crate) mirror_bytes: usize,
    pub(crate) mirror_budget_bytes: usize,
    pub(crate) mirror_full: bool,
    pub(crate) pool: deadpool_postgres::Status,
    /// Families that a part keeps in a registry of its own.
    pub(crate) families: Vec<prometheus::proto::MetricFamily>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A fixed set of labels, so that no request can grow the number of series. A HEAD does a
/// GET's work, so it counts as one.
fn route_label(method: &Method, path: &str) -> &'static str {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    match (method, path) {
        (&Method::POST, "/pessoas") => "POST /pessoas",
        (&Method::GET, "/pessoas") => "GET /pessoas",
        (&Method::GET, p) if p.starts_with("/pessoas/") => "GET /pessoas/:id",
        (&Method::GET, "/contagem-pessoas") => "GET /contagem-pessoas",
        (&Method::GET, "/metrics") => "GET /metrics",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_have_fixed_labels() {
        assert_eq!(route_label(&Method::POST, "/pessoas"), "POST /pessoas");
        assert_eq!(
            route_label(
                &Method::GET,
                "/pessoas/0190c8a0-0000-7000-8000-000000000000"
            ),
            "GET /pessoas/:id"
        );
        assert_eq!(route_label(&Method::HEAD, "/pessoas"), "GET /pessoas");
        assert_eq!(route_label(&Method::DELETE, "/pessoas"), "other");
        assert_eq!(route_label(&Method::GET, "/anything"), "other");
    }
}
