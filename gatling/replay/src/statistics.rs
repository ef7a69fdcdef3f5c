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

/// Gatling's per-request statistics: the counts, the response-time ranges (which count OK requests only,
/// KOs being "failed"), and the response times of all requests, of the OK ones and of the KO ones apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestStats {
    pub count: u64,
    pub ok: u64,
    pub ko: u64,
    pub requests_per_second: f64,
    pub under_800_ms: u64,
    pub from_800_to_1200_ms: u64,
    pub over_1200_ms: u64,
    pub times: ByOutcome<Option<ResponseTimes>>,
}

/// One figure for all requests, for the OK ones and for the KO ones, like the columns of Gatling's
/// statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ByOutcome<T> {
    pub all: T,
    pub ok: T,
    pub ko: T,
}

/// Which requests a figure is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    All,
    Ok,
    Ko,
}

impl Outcome {
    pub const ALL: [Self; 3] = [Self::All, Self::Ok, Self::Ko];

    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Ok => "ok",
            Self::Ko => "ko",
        }
    }
}

impl<T> ByOutcome<T> {
    pub fn get(&self, outcome: Outcome) -> &T {
        match outcome {
            Outcome::All => &self.all,
            Outcome::Ok => &self.ok,
            Outcome::Ko => &self.ko,
        }
    }
}

/// Response times of a set of requests in milliseconds, exact over microsecond timings: the percentiles are
/// nearest-rank over every request, not estimates from buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseTimes {
    pub min_ms: f64,
    pub mean_ms: f64,
    /// The population standard deviation, as Gatling reports it.
    pub std_dev_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// `None` when read from a Gatling report, which has no p99.9.
    pub p999_ms: Option<f64>,
    pub max_ms: f64,
}

/// One of the response-time figures, by the name the tables and the assertions give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFigure {
    Min,
    Mean,
    StdDev,
    P50,
    P75,
    P95,
    P99,
    P999,
    Max,
}

impl TimeFigure {
    pub const ALL: [Self; 9] = [
        Self::Min,
        Self::Mean,
        Self::StdDev,
        Self::P50,
        Self::P75,
        Self::P95,
        Self::P99,
        Self::P999,
        Self::Max,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::Mean => "mean",
            Self::StdDev => "stddev",
            Self::P50 => "p50",
            Self::P75 => "p75",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::P999 => "p99.9",
            Self::Max => "max",
        }
    }
}

impl ResponseTimes {
    /// `None` for no requests, where Gatling shows nothing.
    pub fn of(sorted_us: &[u64]) -> Option<Self> {
        let (first, last) = (sorted_us.first()?, sorted_us.last()?);
        let as_ms = |micros: u64| micros as f64 / 1000.0;
        let n = sorted_us.len() as f64;
        let mean_us = sorted_us.iter().sum::<u64>() as f64 / n;
        let variance_us = sorted_us
            .iter()
            .map(|&micros| (micros as f64 - mean_us).powi(2))
            .sum::<f64>()
            / n;
        Some(Self {
            min_ms: as_ms(*first),
            mean_ms: mean_us / 1000.0,
            std_dev_ms: variance_us.sqrt() / 1000.0,
            p50_ms: as_ms(percentile(sorted_us, 500)),
            p75_ms: as_ms(percentile(sorted_us, 750)),
            p95_ms: as_ms(percentile(sorted_us, 950)),
            p99_ms: as_ms(percentile(sorted_us, 990)),
            p999_ms: Some(as_ms(percentile(sorted_us, 999))),
            max_ms: as_ms(*last),
        })
    }
}

impl ResponseTimes {
    pub fn get(&self, figure: TimeFigure) -> Option<f64> {
        match figure {
            TimeFigure::Min => Some(self.min_ms),
            TimeFigure::Mean => Some(self.mean_ms),
            TimeFigure::StdDev => Some(self.std_dev_ms),
            TimeFigure::P50 => Some(self.p50_ms),
            TimeFigure::P75 => Some(self.p75_ms),
            TimeFigure::P95 => Some(self.p95_ms),
            TimeFigure::P99 => Some(self.p99_ms),
            TimeFigure::P999 => self.p999_ms,
            TimeFigure::Max => Some(self.max_ms),
        }
    }
}

impl RequestStats {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a RequestRecord>, run: Duration) -> Self {
        let mut elapsed_us = ByOutcome::<Vec<u64>>::default();
        let mut stats = Self::default();
        for record in records {
            let micros = record.elapsed.as_micros() as u64;
            elapsed_us.all.push(micros);
            if record.failure.is_some() {
                elapsed_us.ko.push(micros);
            } else {
                elapsed_us.ok.push(micros);
                if micros < 800_000 {
                    stats.under_800_ms += 1;
                } else if micros < 1_200_000 {
                    stats.from_800_to_1200_ms += 1;
                } else {
                    stats.over_1200_ms += 1;
                }
            }
        }
        stats.count = elapsed_us.all.len() as u64;
        stats.ok = elapsed_us.ok.len() as u64;
        stats.ko = elapsed_us.ko.len() as u64;
        stats.requests_per_second = stats.count as f64 / run.as_secs_f64().max(f64::EPSILON);
        let times = |mut elapsed: Vec<u64>| {
            elapsed.sort_unstable();
            ResponseTimes::of(&elapsed)
        };
        stats.times = ByOutcome {
            all: times(elapsed_us.all),
            ok: times(elapsed_us.ok),
            ko: times(elapsed_us.ko),
        };
        stats
    }

    /// How many of the requests a figure is over.
    pub fn count_of(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::All => self.count,
            Outcome::Ok => self.ok,
            Outcome::Ko => self.ko,
        }
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `per_mille`‰ of values at
/// or below. In thousandths, so that p99.9 is exact: in floating point 99.9% of 1000 is a hair above 999.
pub fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    let rank = (per_mille * sorted.len()).div_ceil(1000);
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
            let at = |per_mille: usize| {
                if elapsed.is_empty() {
                    0.0
                } else {
                    percentile(&elapsed, per_mille) as f64 / 1000.0
                }
            };
            timeline.p50_ms.push(at(500));
            timeline.p95_ms.push(at(950));
            timeline.p99_ms.push(at(990));
            timeline.max_ms.push(at(1000));
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
            p99_ms: percentile(&lags, 990) as f64 / 1000.0,
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
        assert_eq!(percentile(&values, 500), 50);
        assert_eq!(percentile(&values, 990), 99);
        assert_eq!(percentile(&values, 1000), 100);
        assert_eq!(percentile(&[7], 990), 7);
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 999), 999);
        assert_eq!(percentile(&thousand, 990), 990);
    }

    #[test]
    fn response_times_are_exact_with_the_population_deviation() {
        let times = ResponseTimes::of(&[1_000, 2_000, 3_000, 4_000, 10_000]).unwrap();
        assert_eq!(
            (times.min_ms, times.mean_ms, times.max_ms),
            (1.0, 4.0, 10.0)
        );
        // Deviations from 4 ms: -3, -2, -1, 0, 6; their squares sum to 50 over five values.
        assert_eq!(times.std_dev_ms, 10f64.sqrt());
        assert_eq!(
            (times.p50_ms, times.p75_ms, times.p99_ms, times.p999_ms),
            (3.0, 4.0, 10.0, Some(10.0))
        );
        assert_eq!(ResponseTimes::of(&[]), None);
    }

    #[test]
    fn a_set_without_kos_has_no_ko_times() {
        let records = vec![record(RequestName::Lookup, 0, 2, true)];
        let stats = RequestStats::of(&records, Duration::from_secs(1));
        assert_eq!(stats.times.ko, None);
        assert_eq!(stats.times.ok, stats.times.all);
        assert_eq!(stats.count_of(Outcome::Ko), 0);
        assert_eq!(*stats.times.get(Outcome::Ok), stats.times.ok);
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
        let all = stats.times.all.unwrap();
        assert_eq!((all.min_ms, all.max_ms), (5.0, 1500.0));
        assert_eq!(all.mean_ms, 603.75);
        let ok = stats.times.ok.unwrap();
        assert_eq!((ok.min_ms, ok.p50_ms, ok.max_ms), (10.0, 900.0, 1500.0));
        let ko = stats.times.ko.unwrap();
        assert_eq!((ko.min_ms, ko.p99_ms, ko.std_dev_ms), (5.0, 5.0, 0.0));
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
