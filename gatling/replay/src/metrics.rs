//! The service replicas' own view of the run: `/metrics` (Prometheus text format) scraped every second, and
//! the series the report charts from it. Metric names are matched loosely so the charts follow the
//! service as its metrics evolve: request counters, anything about batches or pools, and resident memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::client::{PrivateNetwork, Target, UserConnection};

pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
const CHARTED_NAME_PARTS: &[&str] = &[
    "http_requests_total",
    "batch",
    "pool",
    "process_resident_memory_bytes",
];
/// Labels that name what a request counter counts; other labels (method, status) are summed over.
const ROUTE_LABELS: &[&str] = &["route", "path", "handler", "endpoint", "uri"];
const MAX_SERIES_PER_CHART: usize = 10;

/// How a metric family is charted, from its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chart {
    /// Counters, as rates per second.
    Rate,
    /// Gauges, as they are.
    Value,
    /// Histograms and summaries, as the mean observation over each scrape interval.
    IntervalMean,
}

/// Parses the Prometheus text exposition format; lines it cannot read are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .expect("lines of a string read without error")
        .samples
}

/// One scrape of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaScrape {
    pub at_seconds: f64,
    pub replica: String,
    pub samples: Vec<Sample>,
}

/// Scrapes every URL once a second until `stop` flips, keeping each replica's connection alive between
/// scrapes. A replica that does not answer simply leaves a gap.
pub async fn scrape_until(
    urls: &[String],
    also: Option<PrivateNetwork>,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<ReplicaScrape> {
    let mut targets = Vec::new();
    for url in urls {
        match Target::resolve(url, also).await {
            Ok(target) => targets.push((url.clone(), target)),
            Err(error) => eprintln!("metrics: {error}"),
        }
    }
    let mut connections: Vec<(String, String, UserConnection)> = targets
        .iter()
        .map(|(url, target)| {
            (
                replica_name(url),
                target.path(""),
                UserConnection::new(target),
            )
        })
        .collect();
    let mut scrapes = Vec::new();
    let mut ticker = tokio::time::interval(SCRAPE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !*stop.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        for (replica, path, connection) in &mut connections {
            let at_seconds = started.elapsed().as_secs_f64();
            if let Ok(Ok(response)) =
                tokio::time::timeout(SCRAPE_TIMEOUT, connection.get(path)).await
                && response.status == 200
            {
                scrapes.push(ReplicaScrape {
                    at_seconds,
                    replica: replica.clone(),
                    samples: parse(&String::from_utf8_lossy(&response.body)),
                });
            }
        }
    }
    scrapes
}

/// `http://127.0.0.1:8081/metrics` is called `127.0.0.1:8081`.
fn replica_name(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricChart {
    pub title: String,
    pub unit: String,
    pub series: Vec<MetricSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    pub label: String,
    /// (seconds since the start of the run, value)
    pub points: Vec<(f64, f64)>,
}

/// One chart per charted metric family: counters as rates per second, gauges as they are, histograms
/// and summaries as the mean observation over each scrape interval. Untyped samples are not charted: they
/// include every histogram's and summary's `_sum` and `_count`.
pub fn charts(scrapes: &[ReplicaScrape]) -> Vec<MetricChart> {
    let mut families: BTreeMap<&str, Chart> = BTreeMap::new();
    for sample in scrapes.iter().flat_map(|scrape| &scrape.samples) {
        let chart = match sample.value {
            Value::Counter(_) => Chart::Rate,
            Value::Gauge(_) => Chart::Value,
            Value::Histogram(_) | Value::Summary(_) => Chart::IntervalMean,
            Value::Untyped(_) => continue,
        };
        if CHARTED_NAME_PARTS
            .iter()
            .any(|part| sample.metric.contains(part))
        {
            families.insert(&sample.metric, chart);
        }
    }
    families
        .into_iter()
        .filter_map(|(family, chart)| {
            let (unit, series) = match chart {
                Chart::Rate => ("per second", rates(&sum_by_series(scrapes, family, true))),
                Chart::Value => ("value", sum_by_series(scrapes, family, false)),
                Chart::IntervalMean => {
                    let sums = sum_by_series(scrapes, &format!("{family}_sum"), false);
                    let counts = sum_by_series(scrapes, &format!("{family}_count"), false);
                    ("mean per interval", interval_means(&sums, &counts))
                }
            };
            let mut series: Vec<MetricSeries> = series
                .into_iter()
                .filter(|(_, points)| !points.is_empty())
                .map(|(label, points)| MetricSeries { label, points })
                .collect();
            let peak = |series: &MetricSeries| {
                series
                    .points
                    .iter()
                    .map(|point| point.1)
                    .fold(0.0, f64::max)
            };
            series.sort_by(|a, b| peak(b).total_cmp(&peak(a)));
            series.truncate(MAX_SERIES_PER_CHART);
            series.sort_by(|a, b| a.label.cmp(&b.label));
            (!series.is_empty()).then(|| MetricChart {
                title: family.to_owned(),
                unit: unit.to_owned(),
                series,
            })
        })
        .collect()
}

type SeriesPoints = BTreeMap<String, Vec<(f64, f64)>>;

/// The samples named `sample_name` in each scrape, summed per series: replica plus labels in name order
/// (only the route label for request counters).
fn sum_by_series(scrapes: &[ReplicaScrape], sample_name: &str, route_only: bool) -> SeriesPoints {
    let mut series: SeriesPoints = BTreeMap::new();
    for scrape in scrapes {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for sample in scrape
            .samples
            .iter()
            .filter(|sample| sample.metric == sample_name)
        {
            let (Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value)) =
                sample.value
            else {
                continue;
            };
            let route = ROUTE_LABELS
                .iter()
                .find_map(|name| Some((*name, sample.labels.get(name)?)));
            let shown: Vec<String> = match route {
                Some((name, value))
                    if route_only && sample_name.contains("http_requests_total") =>
                {
                    vec![format!("{name}={value}")]
                }
                _ => sample
                    .labels
                    .iter()
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
            };
            let label = std::iter::once(scrape.replica.clone())
                .chain(shown)
                .collect::<Vec<_>>()
                .join(" ");
            *sums.entry(label).or_insert(0.0) += value;
        }
        for (label, value) in sums {
            series
                .entry(label)
                .or_default()
                .push((scrape.at_seconds, value));
        }
    }
    series
}

fn rates(totals: &SeriesPoints) -> SeriesPoints {
    totals
        .iter()
        .map(|(label, points)| {
            let rates = points
                .windows(2)
                .filter(|pair| pair[1].0 > pair[0].0)
                // A counter that went down means a restarted replica; its new value is the increase.
                .map(|pair| {
                    let increase = if pair[1].1 >= pair[0].1 {
                        pair[1].1 - pair[0].1
                    } else {
                        pair[1].1
                    };
                    (pair[1].0, increase / (pair[1].0 - pair[0].0))
                })
                .collect();
            (label.clone(), rates)
        })
        .collect()
}

fn interval_means(sums: &SeriesPoints, counts: &SeriesPoints) -> SeriesPoints {
    sums.iter()
        .filter_map(|(label, sum_points)| {
            let count_points = counts.get(label)?;
            let means = sum_points
                .windows(2)
                .zip(count_points.windows(2))
                .filter_map(|(sums, counts)| {
                    let observations = counts[1].1 - counts[0].1;
                    (observations > 0.0)
                        .then(|| (sums[1].0, (sums[1].1 - sums[0].1) / observations))
                })
                .collect();
            Some((label.clone(), means))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{route="/pessoas",method="POST",status="201"} 10
http_requests_total{route="/pessoas",method="POST",status="422"} 2
http_requests_total{method="GET",route="/contagem-pessoas",status="200"} 1
# TYPE writer_batch_size histogram
writer_batch_size_bucket{le="1"} 1
writer_batch_size_bucket{le="+Inf"} 3
writer_batch_size_sum 12
writer_batch_size_count 3
# TYPE db_pool_in_use gauge
db_pool_in_use 4
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.5e7
# TYPE writer_batch_size_untyped untyped
writer_batch_size_untyped 1 1700000000
"#;

    fn scrape(at_seconds: f64, text: &str) -> ReplicaScrape {
        ReplicaScrape {
            at_seconds,
            replica: "127.0.0.1:8081".to_owned(),
            samples: parse(text),
        }
    }

    #[test]
    fn charts_rates_gauges_and_histogram_means() {
        let later = TEXT
            .replace("status=\"201\"} 10", "status=\"201\"} 30")
            .replace("writer_batch_size_sum 12", "writer_batch_size_sum 52")
            .replace("writer_batch_size_count 3", "writer_batch_size_count 8");
        let charts = charts(&[scrape(1.0, TEXT), scrape(3.0, &later)]);
        let titles: Vec<&str> = charts.iter().map(|chart| chart.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "db_pool_in_use",
                "http_requests_total",
                "process_resident_memory_bytes",
                "writer_batch_size"
            ]
        );

        let requests = &charts[1];
        assert_eq!(requests.unit, "per second");
        let pessoas = requests
            .series
            .iter()
            .find(|series| series.label.ends_with("route=/pessoas"))
            .unwrap();
        assert_eq!(pessoas.points, vec![(3.0, 10.0)]);

        let batch = &charts[3];
        assert_eq!(batch.series[0].points, vec![(3.0, 8.0)]);
        assert_eq!(charts[0].series[0].points, vec![(1.0, 4.0), (3.0, 4.0)]);
    }
}
