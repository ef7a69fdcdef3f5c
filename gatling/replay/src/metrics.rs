//! The service replicas' own view of the run: `/metrics` (Prometheus text format) scraped every second, and
//! the series the report charts from it. Metric names are matched loosely so the charts follow the
//! service as its metrics evolve: request counters, anything about batches or pools, and resident memory.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::client::{Target, UserConnection};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub types: HashMap<String, MetricType>,
    pub samples: Vec<Sample>,
}

/// Parses the Prometheus text exposition format; lines it cannot read are skipped.
pub fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    for line in text.lines().map(str::trim) {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut words = declaration.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                let kind = match kind {
                    "counter" => MetricType::Counter,
                    "gauge" => MetricType::Gauge,
                    "histogram" => MetricType::Histogram,
                    "summary" => MetricType::Summary,
                    _ => MetricType::Untyped,
                };
                exposition.types.insert(name.to_owned(), kind);
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            exposition.samples.extend(parse_sample(line));
        }
    }
    exposition
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `name="value",...}` with `\\`, `\"` and `\n` escapes; returns the labels and the text after `}`.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after_name) = text.split_once('=')?;
        let mut chars = after_name.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (index, '"') => break index,
                (_, other) => value.push(other),
            }
        };
        labels.push((name.trim().to_owned(), value));
        text = &after_name[1 + end + 1..];
    }
}

/// One scrape of one replica.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub at_seconds: f64,
    pub replica: String,
    pub exposition: Exposition,
}

/// Scrapes every URL once a second until `stop` flips, keeping each replica's connection alive between
/// scrapes. A replica that does not answer simply leaves a gap.
pub async fn scrape_until(
    urls: &[String],
    started: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<Scrape> {
    let mut targets = Vec::new();
    for url in urls {
        match Target::resolve(url).await {
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
                let exposition = parse(&String::from_utf8_lossy(&response.body));
                scrapes.push(Scrape {
                    at_seconds,
                    replica: replica.clone(),
                    exposition,
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
/// and summaries as the mean observation over each scrape interval.
pub fn charts(scrapes: &[Scrape]) -> Vec<MetricChart> {
    let mut families: BTreeMap<String, MetricType> = BTreeMap::new();
    for scrape in scrapes {
        for (name, kind) in &scrape.exposition.types {
            if CHARTED_NAME_PARTS.iter().any(|part| name.contains(part)) {
                families.insert(name.clone(), *kind);
            }
        }
    }
    families
        .into_iter()
        .filter_map(|(family, kind)| {
            let (unit, series) = match kind {
                MetricType::Counter => (
                    "per second",
                    rates(&sum_by_series(scrapes, &family, &family, true)),
                ),
                MetricType::Gauge | MetricType::Untyped => {
                    ("value", sum_by_series(scrapes, &family, &family, false))
                }
                MetricType::Histogram | MetricType::Summary => {
                    let sums = sum_by_series(scrapes, &family, &format!("{family}_sum"), false);
                    let counts = sum_by_series(scrapes, &family, &format!("{family}_count"), false);
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
                title: family,
                unit: unit.to_owned(),
                series,
            })
        })
        .collect()
}

type SeriesPoints = BTreeMap<String, Vec<(f64, f64)>>;

/// The samples named `sample_name` in each scrape, summed per series: replica plus labels (only the route
/// label for request counters, and never histogram bucket bounds).
fn sum_by_series(
    scrapes: &[Scrape],
    family: &str,
    sample_name: &str,
    route_only: bool,
) -> SeriesPoints {
    let mut series: SeriesPoints = BTreeMap::new();
    for scrape in scrapes {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for sample in scrape
            .exposition
            .samples
            .iter()
            .filter(|sample| sample.name == sample_name)
        {
            let route = sample
                .labels
                .iter()
                .find(|(name, _)| ROUTE_LABELS.contains(&name.as_str()));
            let shown: Vec<String> = match route {
                Some((name, value)) if route_only && family.contains("http_requests_total") => {
                    vec![format!("{name}={value}")]
                }
                _ => sample
                    .labels
                    .iter()
                    .filter(|(name, _)| name != "le" && name != "quantile")
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
            };
            let label = std::iter::once(scrape.replica.clone())
                .chain(shown)
                .collect::<Vec<_>>()
                .join(" ");
            *sums.entry(label).or_insert(0.0) += sample.value;
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
odd_metric{note="a \"quoted\", comma\\"} 1.5 1700000000
"#;

    fn scrape(at_seconds: f64, text: &str) -> Scrape {
        Scrape {
            at_seconds,
            replica: "127.0.0.1:8081".to_owned(),
            exposition: parse(text),
        }
    }

    #[test]
    fn parses_types_labels_escapes_and_exponents() {
        let exposition = parse(TEXT);
        assert_eq!(exposition.types["writer_batch_size"], MetricType::Histogram);
        assert_eq!(exposition.samples.len(), 10);
        assert_eq!(
            exposition.samples[0].labels[0],
            ("route".to_owned(), "/pessoas".to_owned())
        );
        assert_eq!(exposition.samples[4].labels[0].1, "+Inf");
        assert_eq!(exposition.samples[8].value, 2.5e7);
        let odd = &exposition.samples[9];
        assert_eq!(
            (odd.labels[0].1.as_str(), odd.value),
            ("a \"quoted\", comma\\", 1.5)
        );
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
