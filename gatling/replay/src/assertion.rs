//! Conditions a run must meet, in the spirit of Gatling's assertions, written `[REQUEST:]METRIC OP VALUE`:
//!
//! - response times in ms, `min`, `mean`, `stddev`, `p50`, `p75`, `p95`, `p99`, `p99.9` or `max`, over all
//!   requests or, with `.ok` or `.ko`, the OK or the KO ones: `p99.ok<5ms`, `max<2s`;
//! - request counts, `requests`, `ok` and `ko`, and the share of KOs in percent, `ko%`: `ko=0`, `ko%<1`;
//! - `count`, the people stored during the run, against a number, `expected` (the distinct valid payloads
//!   sent) or `created` (the 201s): `count=expected`.
//!
//! OP is one of `<`, `<=`, `=`, `>=`, `>`. REQUEST, a request's name (`criação:p99.ok<5ms`), narrows a
//! request metric to that request; without it, the metric is over every request.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::statistics::{Outcome, RequestName, RequestStats, TimeFigure};

/// What `--strict` asks, and the verdict judges when no assertion is given: no KO, and as many people
/// stored as expected and as answered 201.
pub const DEFAULTS: [&str; 3] = ["ko=0", "count=expected", "count=created"];

/// [`DEFAULTS`], parsed.
pub fn defaults() -> Vec<Assertion> {
    DEFAULTS
        .iter()
        .map(|text| Assertion::parse(text).expect("the defaults parse"))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    text: String,
    request: Option<&'static str>,
    metric: Metric,
    op: Op,
    bound: Bound,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Time(TimeFigure, Outcome),
    Requests(Outcome),
    KoPercent,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

/// Two-character operators first, so that `<=` is not read as `<` and a value starting with `=`.
const OPS: [(&str, Op); 5] = [
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("<", Op::Lt),
    (">", Op::Gt),
    ("=", Op::Eq),
];

impl Op {
    fn holds(self, actual: f64, bound: f64) -> bool {
        match self {
            Self::Lt => actual < bound,
            Self::Le => actual <= bound,
            Self::Eq => actual == bound,
            Self::Ge => actual >= bound,
            Self::Gt => actual > bound,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    /// In the metric's unit: milliseconds, requests, percent or people.
    Value(f64),
    Expected,
    Created,
}

/// The figures an assertion is judged on.
pub struct Figures<'a> {
    /// By request name, plus `"all"`.
    pub requests: &'a BTreeMap<String, RequestStats>,
    /// People stored during the run, when the count after it is known.
    pub stored: Option<u64>,
    /// The distinct valid payloads sent and the 201s: known to the replay, not to a Gatling report.
    pub expected: Option<u64>,
    pub created: Option<u64>,
}

/// Judges each assertion, in order.
pub fn judge_all(assertions: &[Assertion], figures: &Figures) -> Vec<Check> {
    assertions
        .iter()
        .map(|assertion| assertion.judge(figures))
        .collect()
}

/// One assertion judged: its text, whether it held and the figure it was judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub assertion: String,
    pub pass: bool,
    pub actual: String,
}

impl Assertion {
    /// Reads one assertion; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        // Spaces may stand around the parts, but a request's name keeps its own.
        let compact = |part: &str| {
            part.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
        };
        let (at, (symbol, op)) = OPS
            .iter()
            .filter_map(|&(symbol, op)| Some((text.find(symbol)?, (symbol, op))))
            .min_by_key(|(at, (symbol, _))| (*at, std::cmp::Reverse(symbol.len())))
            .ok_or_else(|| format!("{text:?}: no comparison (<, <=, =, >=, >)"))?;
        let (subject, value) = (&text[..at], compact(&text[at + symbol.len()..]));
        let (request, metric_text) = match subject.split_once(':') {
            Some((name, metric)) => {
                let (name, metric) = (name.trim(), compact(metric));
                let label = RequestName::ALL
                    .iter()
                    .map(|name| name.label())
                    .find(|label| *label == name)
                    .ok_or_else(|| {
                        format!("{text:?}: no request is called {name:?} (criação, consulta, busca válida, busca inválida)")
                    })?;
                (Some(label), metric)
            }
            None => (None, compact(subject)),
        };
        let metric = parse_metric(&metric_text)
            .ok_or_else(|| format!("{text:?}: unknown metric {metric_text:?}"))?;
        if request.is_some() && metric == Metric::Count {
            return Err(format!(
                "{text:?}: count is the whole run's, not a request's"
            ));
        }
        let bound = parse_bound(metric, &value)
            .ok_or_else(|| format!("{text:?}: {value:?} is not a value for {metric_text}"))?;
        Ok(Self {
            text: text.trim().to_owned(),
            request,
            metric,
            op,
            bound,
        })
    }

    pub fn judge(&self, figures: &Figures) -> Check {
        let (actual, shown) = self.actual(figures);
        let bound = match self.bound {
            Bound::Value(value) => Some(value),
            Bound::Expected => figures.expected.map(|count| count as f64),
            Bound::Created => figures.created.map(|count| count as f64),
        };
        let pass = actual
            .zip(bound)
            .is_some_and(|(actual, bound)| self.op.holds(actual, bound));
        Check {
            assertion: self.text.clone(),
            pass,
            actual: shown,
        }
    }

    /// The figure judged, `None` when the run does not have it, and how it reads.
    fn actual(&self, figures: &Figures) -> (Option<f64>, String) {
        let scope = self.request.unwrap_or("all");
        let name = self
            .request
            .map_or_else(String::new, |request| format!("{request}: "));
        let stats = figures.requests.get(scope);
        match self.metric {
            Metric::Count => {
                let known = |count: Option<u64>| {
                    count.map_or_else(|| "unknown".to_owned(), |count| count.to_string())
                };
                let shown = format!(
                    "count {}, expected {}, created {}",
                    known(figures.stored),
                    known(figures.expected),
                    known(figures.created)
                );
                (figures.stored.map(|count| count as f64), shown)
            }
            Metric::Requests(outcome) => {
                let count = stats.map(|stats| stats.count_of(outcome));
                let label = match outcome {
                    Outcome::All => "requests",
                    Outcome::Ok => "ok",
                    Outcome::Ko => "ko",
                };
                let shown = format!("{name}{label} {}", Shown(count.map(|count| count as f64)));
                (count.map(|count| count as f64), shown)
            }
            Metric::KoPercent => {
                let share = stats
                    .filter(|stats| stats.count > 0)
                    .map(|stats| 100.0 * stats.ko as f64 / stats.count as f64);
                (share, format!("{name}ko% {}", Shown(share)))
            }
            Metric::Time(stat, outcome) => {
                let times = stats.and_then(|stats| stats.times.get(outcome).as_ref());
                let value = times.and_then(|times| times.get(stat));
                let label = self.text.split(|c| "<=>".contains(c)).next().unwrap_or("");
                let label = label.rsplit(':').next().unwrap_or(label).trim();
                let shown = match (times, value) {
                    (_, Some(ms)) => format!("{name}{label} {ms:.3} ms"),
                    (None, _) => match outcome {
                        Outcome::All => format!("{name}{label}: no requests"),
                        Outcome::Ok | Outcome::Ko => format!(
                            "{name}{label}: no {} requests",
                            outcome.label().to_uppercase()
                        ),
                    },
                    // Only a Gatling report lacks a figure of a set that has requests: its p99.9.
                    (Some(_), None) => format!("{name}{label}: not in a Gatling report"),
                };
                (value, shown)
            }
        }
    }
}

impl fmt::Display for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A figure, or "unknown".
struct Shown(Option<f64>);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value}"),
            None => f.write_str("unknown"),
        }
    }
}

fn parse_metric(text: &str) -> Option<Metric> {
    match text {
        "count" => return Some(Metric::Count),
        "requests" => return Some(Metric::Requests(Outcome::All)),
        "ok" => return Some(Metric::Requests(Outcome::Ok)),
        "ko" => return Some(Metric::Requests(Outcome::Ko)),
        "ko%" => return Some(Metric::KoPercent),
        _ => {}
    }
    // The longest name that fits, so that `p99.9` is not read as `p99` over a set called `9`.
    let stat = TimeFigure::ALL
        .into_iter()
        .filter(|stat| text.starts_with(stat.label()))
        .max_by_key(|stat| stat.label().len())?;
    let outcome = match &text[stat.label().len()..] {
        "" | ".all" => Outcome::All,
        ".ok" => Outcome::Ok,
        ".ko" => Outcome::Ko,
        _ => return None,
    };
    Some(Metric::Time(stat, outcome))
}

fn parse_bound(metric: Metric, text: &str) -> Option<Bound> {
    let number = |text: &str| text.parse::<f64>().ok().filter(|value| value.is_finite());
    match metric {
        Metric::Count => match text {
            "expected" => Some(Bound::Expected),
            "created" => Some(Bound::Created),
            _ => number(text).map(Bound::Value),
        },
        Metric::Time(..) => {
            let (digits, scale) = if let Some(ms) = text.strip_suffix("ms") {
                (ms, 1.0)
            } else if let Some(seconds) = text.strip_suffix('s') {
                (seconds, 1000.0)
            } else {
                (text, 1.0)
            };
            number(digits).map(|value| Bound::Value(value * scale))
        }
        Metric::Requests(_) | Metric::KoPercent => number(text).map(Bound::Value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statistics::{ByOutcome, ResponseTimes};

    fn requests() -> BTreeMap<String, RequestStats> {
        let times = |p99_ms: f64| ResponseTimes {
            p99_ms,
            p999_ms: Some(p99_ms * 2.0),
            ..ResponseTimes::default()
        };
        let all = RequestStats {
            count: 200,
            ok: 198,
            ko: 2,
            times: ByOutcome {
                all: Some(times(30.0)),
                ok: Some(times(4.5)),
                ko: Some(times(60.0)),
            },
            ..RequestStats::default()
        };
        let lookup = RequestStats {
            count: 50,
            ok: 50,
            times: ByOutcome {
                all: Some(times(1.0)),
                ok: Some(times(1.0)),
                ko: None,
            },
            ..RequestStats::default()
        };
        BTreeMap::from([("all".to_owned(), all), ("consulta".to_owned(), lookup)])
    }

    fn judge(text: &str, stored: Option<u64>) -> Check {
        let requests = requests();
        let figures = Figures {
            requests: &requests,
            stored,
            expected: Some(7),
            created: Some(8),
        };
        Assertion::parse(text).unwrap().judge(&figures)
    }

    #[test]
    fn response_times_are_judged_per_outcome_and_unit() {
        assert!(judge("p99.ok<5ms", Some(7)).pass);
        assert!(!judge("p99<5ms", Some(7)).pass);
        assert!(judge("p99.ko <= 0.06s", Some(7)).pass);
        assert!(judge("p99.9.ok=9", Some(7)).pass);
        assert!(!judge("p99.9.ok<9", Some(7)).pass);
        assert_eq!(judge("p99.ok<5ms", None).actual, "p99.ok 4.500 ms");
    }

    #[test]
    fn counts_and_people_are_judged() {
        assert!(!judge("ko=0", Some(7)).pass);
        assert_eq!(judge("ko=0", Some(7)).actual, "ko 2");
        assert!(judge("ko%<=1", Some(7)).pass);
        assert!(judge("requests>=200", Some(7)).pass);
        assert!(judge("count=expected", Some(7)).pass);
        assert!(!judge("count=created", Some(7)).pass);
        assert!(judge("count>6", Some(7)).pass);
        let unknown = judge("count=expected", None);
        assert!(!unknown.pass);
        assert_eq!(unknown.actual, "count unknown, expected 7, created 8");
        let requests = requests();
        let gatling = Figures {
            requests: &requests,
            stored: Some(7),
            expected: None,
            created: None,
        };
        let checks = judge_all(
            &[
                Assertion::parse("count=expected").unwrap(),
                Assertion::parse("count>=7").unwrap(),
            ],
            &gatling,
        );
        assert_eq!(
            checks.iter().map(|check| check.pass).collect::<Vec<_>>(),
            [false, true],
            "a bound the run cannot know fails"
        );
    }

    #[test]
    fn a_request_narrows_the_metric_and_a_missing_figure_fails() {
        assert!(judge("consulta:p99.ok<2ms", Some(7)).pass);
        assert!(judge("consulta:ko=0", Some(7)).pass);
        assert!(judge(" consulta : p99 . ok < 2 ms", Some(7)).pass);
        let no_ko = judge("consulta:p99.ko<2ms", Some(7));
        assert!(!no_ko.pass);
        assert_eq!(no_ko.actual, "consulta: p99.ko: no KO requests");
        assert!(
            !judge("criação:requests>0", Some(7)).pass,
            "no figures for it"
        );
        let mut gatling = requests();
        let all = gatling.get_mut("all").unwrap();
        all.times.ok.as_mut().unwrap().p999_ms = None;
        let figures = Figures {
            requests: &gatling,
            stored: None,
            expected: None,
            created: None,
        };
        let unknown = Assertion::parse("p99.9.ok<1s").unwrap().judge(&figures);
        assert!(!unknown.pass);
        assert_eq!(unknown.actual, "p99.9.ok: not in a Gatling report");
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        for text in [
            "p99.ok",
            "p98<5",
            "p99.fast<5",
            "ko=none",
            "count=many",
            "p99<5h",
            "pessoas:ko=0",
            "consulta:count=expected",
            "ko=inf",
        ] {
            let error = Assertion::parse(text).unwrap_err();
            assert!(error.starts_with(&format!("{text:?}")), "{error}");
        }
    }
}
