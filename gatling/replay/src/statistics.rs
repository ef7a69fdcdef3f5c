//! What happened during a run: every request and every virtual user, then the numbers a Gatling user reads
//! (per request name and in total) and the per-second series the report charts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestName {
    Creation,
    Lookup,
    ValidSearch,
    InvalidSearch,
}

impl RequestName {
    pub const ALL: [Self; 4] = [
        Self::Creation,
        Self::Lookup,
        Self::ValidSearch,
        Self::InvalidSearch,
    ];

    /// The names the simulation gives its requests, which Gatling reports under.
    pub fn label(self) -> &'static str {
        match self {
            Self::Creation => "criação",
            Self::Lookup => "consulta",
            Self::ValidSearch => "busca válida",
            Self::InvalidSearch => "busca inválida",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub name: RequestName,
    /// Since the start of the run.
    pub started: Duration,
    pub elapsed: Duration,
    /// `None` when OK, else why it is a KO, worded like Gatling's error messages.
    pub failure: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct UserSpan {
    pub started: Duration,
    pub ended: Duration,
    /// How late the user started compared with its scheduled arrival.
    pub lag: Duration,
}

/// Everything one run observed, filled in by the virtual users as they finish.
#[derive(Debug, Default)]
pub struct Recorder {
    pub requests: Vec<RequestRecord>,
    pub users: Vec<UserSpan>,
    pub created_201: u64,
}

/// Gatling's per-request statistics, over OK and KO requests together like its "Total" column; the ranges
/// count OK requests only, KOs being "failed".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestStats {
    pub count: u64,
    pub ok: u64,
    pub ko: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub requests_per_second: f64,
    pub under_800_ms: u64,
    pub from_800_to_1200_ms: u64,
    pub over_1200_ms: u64,
}

impl RequestStats {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a RequestRecord>, run: Duration) -> Self {
        let mut elapsed_us: Vec<u64> = Vec::new();
        let mut stats = Self::default();
        for record in records {
            let micros = record.elapsed.as_micros() as u64;
            elapsed_us.push(micros);
            if record.failure.is_some() {
                stats.ko += 1;
            } else if micros < 800_000 {
                stats.under_800_ms += 1;
            } else if micros < 1_200_000 {
                stats.from_800_to_1200_ms += 1;
            } else {
                stats.over_1200_ms += 1;
            }
        }
        stats.count = elapsed_us.len() as u64;
        stats.ok = stats.count - stats.ko;
        if elapsed_us.is_empty() {
            return stats;
        }
        elapsed_us.sort_unstable();
        let as_ms = |micros: u64| micros as f64 / 1000.0;
        stats.min_ms = as_ms(elapsed_us[0]);
        stats.max_ms = as_ms(*elapsed_us.last().expect("not empty"));
        stats.mean_ms = as_ms(elapsed_us.iter().sum::<u64>()) / elapsed_us.len() as f64;
        stats.p50_ms = as_ms(percentile(&elapsed_us, 50.0));
        stats.p75_ms = as_ms(percentile(&elapsed_us, 75.0));
        stats.p95_ms = as_ms(percentile(&elapsed_us, 95.0));
        stats.p99_ms = as_ms(percentile(&elapsed_us, 99.0));
        stats.requests_per_second = stats.count as f64 / run.as_secs_f64().max(f64::EPSILON);
        stats
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p`% of values at or below.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Statistics per request name (by label, in the simulation's order) plus `"all"`.
pub fn request_stats(records: &[RequestRecord], run: Duration) -> BTreeMap<String, RequestStats> {
    let mut by_name: BTreeMap<String, RequestStats> = RequestName::ALL
        .iter()
        .map(|name| {
            let stats = RequestStats::of(records.iter().filter(|record| record.name == *name), run);
            (name.label().to_owned(), stats)
        })
        .collect();
    by_name.insert("all".to_owned(), RequestStats::of(records, run));
    by_name
}

/// KO messages and how often each occurred.
pub fn errors(records: &[RequestRecord]) -> BTreeMap<String, u64> {
    let mut errors = BTreeMap::new();
    for record in records {
        if let Some(failure) = &record.failure {
            *errors
                .entry(format!("{}: {failure}", record.name.label()))
                .or_insert(0) += 1;
        }
    }
    errors
}

/// Per-second series for the report's charts, one entry per second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Users alive at some point of each second, like Gatling's "active users" chart.
    pub active_users: Vec<u64>,
    /// Requests started in each second, by request label.
    pub requests_per_second: BTreeMap<String, Vec<u64>>,
    pub ok_per_second: Vec<u64>,
    pub ko_per_second: Vec<u64>,
    /// Response-time percentiles (ms) of the OK requests started in each second.
    pub p50_ms: Vec<f64>,
    pub p95_ms: Vec<f64>,
    pub p99_ms: Vec<f64>,
    pub max_ms: Vec<f64>,
}

impl Timeline {
    pub fn of(recorder: &Recorder, run: Duration) -> Self {
        let seconds = run.as_secs_f64().ceil().max(1.0) as usize;
        let second_of = |at: Duration| (at.as_secs() as usize).min(seconds - 1);
        let mut timeline = Self {
            active_users: vec![0; seconds],
            ok_per_second: vec![0; seconds],
            ko_per_second: vec![0; seconds],
            ..Self::default()
        };
        for user in &recorder.users {
            for active in
                &mut timeline.active_users[second_of(user.started)..=second_of(user.ended)]
            {
                *active += 1;
            }
        }
        let mut ok_elapsed_us: Vec<Vec<u64>> = vec![Vec::new(); seconds];
        for record in &recorder.requests {
            let second = second_of(record.started);
            timeline
                .requests_per_second
                .entry(record.name.label().to_owned())
                .or_insert_with(|| vec![0; seconds])[second] += 1;
            if record.failure.is_some() {
                timeline.ko_per_second[second] += 1;
            } else {
                timeline.ok_per_second[second] += 1;
                ok_elapsed_us[second].push(record.elapsed.as_micros() as u64);
            }
        }
        for mut elapsed in ok_elapsed_us {
            elapsed.sort_unstable();
            let at = |p: f64| {
                if elapsed.is_empty() {
                    0.0
                } else {
                    percentile(&elapsed, p) as f64 / 1000.0
                }
            };
            timeline.p50_ms.push(at(50.0));
            timeline.p95_ms.push(at(95.0));
            timeline.p99_ms.push(at(99.0));
            timeline.max_ms.push(at(100.0));
        }
        timeline
    }
}

/// How late users started compared with the schedule: a replay starved of CPU shows it here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InjectionLag {
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl InjectionLag {
    pub fn of(users: &[UserSpan]) -> Self {
        let mut lags: Vec<u64> = users
            .iter()
            .map(|user| user.lag.as_micros() as u64)
            .collect();
        if lags.is_empty() {
            return Self::default();
        }
        lags.sort_unstable();
        Self {
            p99_ms: percentile(&lags, 99.0) as f64 / 1000.0,
            max_ms: *lags.last().expect("not empty") as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: RequestName, started_ms: u64, elapsed_ms: u64, ok: bool) -> RequestRecord {
        RequestRecord {
            name,
            started: Duration::from_millis(started_ms),
            elapsed: Duration::from_millis(elapsed_ms),
            failure: (!ok).then(|| "status.find.is(400), but actually found 200".to_owned()),
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
    }

    #[test]
    fn stats_split_ok_ko_and_the_response_time_ranges() {
        let records = vec![
            record(RequestName::Creation, 0, 10, true),
            record(RequestName::Creation, 100, 900, true),
            record(RequestName::Creation, 200, 1500, true),
            record(RequestName::Creation, 300, 5, false),
        ];
        let stats = RequestStats::of(&records, Duration::from_secs(2));
        assert_eq!((stats.count, stats.ok, stats.ko), (4, 3, 1));
        assert_eq!(
            (
                stats.under_800_ms,
                stats.from_800_to_1200_ms,
                stats.over_1200_ms
            ),
            (1, 1, 1)
        );
        assert_eq!((stats.min_ms, stats.max_ms), (5.0, 1500.0));
        assert_eq!(stats.mean_ms, 603.75);
        assert_eq!(stats.requests_per_second, 2.0);
        let by_name = request_stats(&records, Duration::from_secs(2));
        assert_eq!(by_name["criação"], by_name["all"]);
        assert_eq!(by_name["consulta"].count, 0);
        assert_eq!(errors(&records).values().sum::<u64>(), 1);
    }

    #[test]
    fn the_timeline_counts_per_second() {
        let recorder = Recorder {
            requests: vec![
                record(RequestName::ValidSearch, 100, 3, true),
                record(RequestName::ValidSearch, 1100, 5, true),
                record(RequestName::InvalidSearch, 1200, 1, false),
            ],
            users: vec![
                UserSpan {
                    started: Duration::from_millis(100),
                    ended: Duration::from_millis(1105),
                    lag: Duration::ZERO,
                },
                UserSpan {
                    started: Duration::from_millis(1200),
                    ended: Duration::from_millis(1201),
                    lag: Duration::ZERO,
                },
            ],
            created_201: 0,
        };
        let timeline = Timeline::of(&recorder, Duration::from_millis(1900));
        assert_eq!(timeline.active_users, vec![1, 2]);
        assert_eq!(timeline.requests_per_second["busca válida"], vec![1, 1]);
        assert_eq!(timeline.requests_per_second["busca inválida"], vec![0, 1]);
        assert_eq!(
            (
                timeline.ok_per_second.clone(),
                timeline.ko_per_second.clone()
            ),
            (vec![1, 1], vec![0, 1])
        );
        assert_eq!(timeline.p99_ms, vec![3.0, 5.0]);
    }
}
