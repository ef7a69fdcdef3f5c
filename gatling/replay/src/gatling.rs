//! `js/stats.json` and `js/stats.js` in the layout Gatling 3.9 and 3.10 write them, so that scripts written
//! for Gatling reports (the contest's `jq '.stats.percentiles4.ok'` among them) read a replay's run
//! unchanged; and the reader that takes either a Gatling report's or a replay's back.
//!
//! Rounding: every response time (min, max, mean, standard deviation, percentiles) is the exact
//! microsecond figure rounded to the nearest whole millisecond, Gatling's unit; a range's percentage is
//! rounded to a whole percent on its own, as Gatling does (so the four may sum to 99 or 101); requests a
//! second are the count over the run's duration, unrounded in `stats.json` and to thousandths in
//! `stats.js`. Where a column has no requests, `stats.json` holds 0 and `stats.js` holds "-", as Gatling's
//! own files do.

use std::collections::BTreeMap;
use std::path::Path;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::statistics::{ByOutcome, Outcome, RequestName, RequestStats, ResponseTimes, TimeFigure};
use crate::summary::Summary;

/// The root group's name and key in Gatling's reports.
const ALL_REQUESTS: &str = "All Requests";
const ALL_REQUESTS_KEY: &str = "group_missing-name-b06d1";
/// Gatling keeps this many characters of a name's slug in its key.
const SLUG_LENGTH: usize = 15;

/// A group or a request of the report, with its statistics and, for the group, its requests by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub path: String,
    pub path_formatted: String,
    pub stats: Stats,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contents: BTreeMap<String, Node>,
}

/// Gatling's figures for one group or request; each value a number, or a string in `stats.js`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub name: String,
    pub number_of_requests: Columns,
    pub min_response_time: Columns,
    pub max_response_time: Columns,
    pub mean_response_time: Columns,
    pub standard_deviation: Columns,
    /// p50, p75, p95 and p99, Gatling's default percentiles.
    pub percentiles1: Columns,
    pub percentiles2: Columns,
    pub percentiles3: Columns,
    pub percentiles4: Columns,
    pub group1: Group,
    pub group2: Group,
    pub group3: Group,
    pub group4: Group,
    pub mean_number_of_requests_per_second: Columns,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Columns {
    pub total: Value,
    pub ok: Value,
    pub ko: Value,
}

/// A response-time range: OK requests under 800 ms, from 800 to 1200, from 1200 on; and the failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub html_name: String,
    pub count: u64,
    pub percentage: u64,
}

/// How figures are written: numbers with 0 for nothing (`stats.json`), or strings with "-" for nothing
/// (`stats.js`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Json,
    Script,
}

/// Writes `js/stats.json` and `js/stats.js` into `out`.
pub fn write(out: &Path, summary: &Summary) -> Result<(), String> {
    let js = out.join("js");
    std::fs::create_dir_all(&js).map_err(|error| format!("{}: {error}", js.display()))?;
    let write = |name: &str, contents: String| {
        let path = js.join(name);
        std::fs::write(&path, contents).map_err(|error| format!("{}: {error}", path.display()))
    };
    let text = |style| serde_json::to_string_pretty(&report(summary, style)).expect("plain data");
    write("stats.json", text(Style::Json) + "\n")?;
    // The report page's own data file: the same object, assigned to the variable its scripts read.
    write(
        "stats.js",
        format!("var stats = {};\n", text(Style::Script)),
    )
}

fn report(summary: &Summary, style: Style) -> Node {
    let duration = summary.duration_seconds;
    let all = summary.requests.get("all").cloned().unwrap_or_default();
    let contents = RequestName::ALL
        .iter()
        .filter_map(|name| {
            let stats = summary.requests.get(name.label())?;
            let key = path_formatted("req_", name.label());
            let node = Node {
                kind: "REQUEST".to_owned(),
                name: name.label().to_owned(),
                path: name.label().to_owned(),
                path_formatted: key.clone(),
                stats: stats_of(name.label(), stats, duration, style),
                contents: BTreeMap::new(),
            };
            Some((key, node))
        })
        .collect();
    Node {
        kind: "GROUP".to_owned(),
        name: ALL_REQUESTS.to_owned(),
        path: String::new(),
        path_formatted: ALL_REQUESTS_KEY.to_owned(),
        stats: stats_of(ALL_REQUESTS, &all, duration, style),
        contents,
    }
}

/// Gatling's key for a request: a prefix, the name decomposed and lowercased with every character but
/// ASCII letters and digits made a dash, cut to 15 characters, and the first five hex digits of the
/// name's MD5 (`criação` is `req_criac-a-o-ce502`).
fn path_formatted(prefix: &str, name: &str) -> String {
    let slug: String = name
        .nfd()
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(SLUG_LENGTH)
        .collect();
    let digest = Md5::digest(name.as_bytes());
    let hash: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}{slug}-{}", &hash[..5])
}

fn stats_of(name: &str, stats: &RequestStats, duration_seconds: f64, style: Style) -> Stats {
    let counts = ByOutcome {
        all: stats.count,
        ok: stats.ok,
        ko: stats.ko,
    };
    let nothing = || match style {
        Style::Json => Value::from(0),
        Style::Script => Value::from("-"),
    };
    let number = |value: Value| match style {
        Style::Json => value,
        Style::Script => Value::from(value.to_string()),
    };
    let columns = |figure: &dyn Fn(Outcome) -> Option<Value>| {
        let column = |outcome| figure(outcome).unwrap_or_else(nothing);
        Columns {
            total: column(Outcome::All),
            ok: column(Outcome::Ok),
            ko: column(Outcome::Ko),
        }
    };
    let time = |figure: TimeFigure| {
        columns(&|outcome| {
            let value = stats.times.get(outcome).as_ref()?.get(figure)?;
            Some(number(Value::from(value.round() as u64)))
        })
    };
    let group = |name: &str, html_name: &str, count: u64| Group {
        name: name.to_owned(),
        html_name: html_name.to_owned(),
        count,
        percentage: if stats.count == 0 {
            0
        } else {
            (100.0 * count as f64 / stats.count as f64).round() as u64
        },
    };
    Stats {
        name: name.to_owned(),
        // A count is a number even when zero.
        number_of_requests: Columns {
            total: number(Value::from(counts.all)),
            ok: number(Value::from(counts.ok)),
            ko: number(Value::from(counts.ko)),
        },
        min_response_time: time(TimeFigure::Min),
        max_response_time: time(TimeFigure::Max),
        mean_response_time: time(TimeFigure::Mean),
        standard_deviation: time(TimeFigure::StdDev),
        percentiles1: time(TimeFigure::P50),
        percentiles2: time(TimeFigure::P75),
        percentiles3: time(TimeFigure::P95),
        percentiles4: time(TimeFigure::P99),
        group1: group("t < 800 ms", "t < 800 ms", stats.under_800_ms),
        group2: group(
            "800 ms <= t < 1200 ms",
            "t >= 800 ms <br> t < 1200 ms",
            stats.from_800_to_1200_ms,
        ),
        group3: group("t >= 1200 ms", "t >= 1200 ms", stats.over_1200_ms),
        group4: group("failed", "failed", stats.ko),
        mean_number_of_requests_per_second: columns(&|outcome| {
            let count = *counts.get(outcome);
            (count > 0).then(|| {
                let per_second = count as f64 / duration_seconds.max(f64::EPSILON);
                match style {
                    Style::Json => Value::from(per_second),
                    // Display, unlike JSON, writes 1.0 as "1", as Gatling does.
                    Style::Script => {
                        Value::from(format!("{}", (per_second * 1000.0).round() / 1000.0))
                    }
                }
            })
        }),
    }
}

/// Reads a `stats.json`, Gatling's or a replay's.
pub fn read(path: &Path) -> Result<Node, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// A figure of a column as a number: `None` for "-" and for a column without requests, where Gatling 3.9
/// and later write 0.
pub fn figure(stats: &Stats, columns: &Columns, outcome: Outcome) -> Option<f64> {
    let pick = |columns: &Columns| match outcome {
        Outcome::All => columns.total.clone(),
        Outcome::Ok => columns.ok.clone(),
        Outcome::Ko => columns.ko.clone(),
    };
    let number = |value: Value| match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    };
    let requests = number(pick(&stats.number_of_requests))?;
    (requests > 0.0).then(|| number(pick(columns))).flatten()
}

/// A report's figures as the replay keeps them, by request name plus `"all"`, so that a Gatling run is
/// judged by the same assertions: response times in Gatling's whole milliseconds, and no p99.9.
pub fn requests(report: &Node) -> BTreeMap<String, RequestStats> {
    std::iter::once(("all".to_owned(), &report.stats))
        .chain(
            report
                .contents
                .values()
                .map(|node| (node.name.clone(), &node.stats)),
        )
        .map(|(name, stats)| (name, request_stats(stats)))
        .collect()
}

fn request_stats(stats: &Stats) -> RequestStats {
    let count = |outcome| figure(stats, &stats.number_of_requests, outcome).unwrap_or(0.0) as u64;
    let times = |outcome| {
        let get = |columns: &Columns| figure(stats, columns, outcome);
        Some(ResponseTimes {
            min_ms: get(&stats.min_response_time)?,
            mean_ms: get(&stats.mean_response_time)?,
            std_dev_ms: get(&stats.standard_deviation)?,
            p50_ms: get(&stats.percentiles1)?,
            p75_ms: get(&stats.percentiles2)?,
            p95_ms: get(&stats.percentiles3)?,
            p99_ms: get(&stats.percentiles4)?,
            p999_ms: None,
            max_ms: get(&stats.max_response_time)?,
        })
    };
    RequestStats {
        count: count(Outcome::All),
        ok: count(Outcome::Ok),
        ko: count(Outcome::Ko),
        requests_per_second: figure(
            stats,
            &stats.mean_number_of_requests_per_second,
            Outcome::All,
        )
        .unwrap_or(0.0),
        under_800_ms: stats.group1.count,
        from_800_to_1200_ms: stats.group2.count,
        over_1200_ms: stats.group3.count,
        times: ByOutcome {
            all: times(Outcome::All),
            ok: times(Outcome::Ok),
            ko: times(Outcome::Ko),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::summary;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gatling-3.9-stats.json"
    );

    fn scratch(name: &str) -> std::path::PathBuf {
        let directory =
            std::env::temp_dir().join(format!("replay-gatling-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        directory
    }

    /// What the contest's results script reads, `jq '.stats.percentiles4.ok'`, as a JSON path.
    fn jq<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
        path.iter().fold(value, |value, key| &value[key])
    }

    #[test]
    fn the_keys_are_gatlings() {
        // As in the fixture, a report of the contest's own simulation.
        assert_eq!(path_formatted("req_", "criação"), "req_criac-a-o-ce502");
        assert_eq!(
            path_formatted("req_", "busca inválida"),
            "req_busca-inva-lida-b5618"
        );
        assert_eq!(path_formatted("req_", "consulta"), "req_consulta-5d76b");
    }

    #[test]
    fn the_same_reader_reads_gatlings_file_and_ours() {
        let gatling = read(Path::new(FIXTURE)).unwrap();
        assert_eq!(gatling.name, ALL_REQUESTS);
        assert_eq!(
            figure(&gatling.stats, &gatling.stats.percentiles4, Outcome::Ok),
            Some(17418.0)
        );
        let lookup = &gatling.contents["req_consulta-5d76b"].stats;
        assert_eq!(
            figure(lookup, &lookup.percentiles4, Outcome::Ko),
            None,
            "written 0, no KO"
        );
        assert_eq!(lookup.group4.count, 0);

        let directory = scratch("ours");
        let summary = summary();
        write(&directory, &summary).unwrap();
        let ours = read(&directory.join("js/stats.json")).unwrap();
        let keys = |node: &Node| node.contents.keys().cloned().collect::<Vec<_>>();
        assert!(keys(&gatling).iter().all(|key| key.starts_with("req_")));
        assert_eq!(keys(&ours), ["req_criac-a-o-ce502"]);
        let exact = summary.requests["all"].times.ok.unwrap().p99_ms;
        assert_eq!(
            figure(&ours.stats, &ours.stats.percentiles4, Outcome::Ok),
            Some(exact.round())
        );
        assert_eq!(
            figure(&ours.stats, &ours.stats.percentiles4, Outcome::Ko),
            None
        );
        std::fs::remove_dir_all(directory).unwrap();
    }

    #[test]
    fn a_report_reads_back_as_the_replays_figures() {
        let gatling = requests(&read(Path::new(FIXTURE)).unwrap());
        let all = &gatling["all"];
        assert_eq!((all.count, all.ok, all.ko), (112_833, 109_693, 3140));
        assert_eq!(all.times.ok.unwrap().p99_ms, 17418.0);
        assert_eq!(all.times.ok.unwrap().p999_ms, None);
        assert_eq!(all.times.ko.unwrap().mean_ms, 9759.0);
        assert_eq!(gatling["consulta"].times.ko, None);
        assert_eq!(gatling["busca válida"].count, 9590);

        // The replay's own figures come back rounded to whole milliseconds.
        let directory = scratch("round-trip");
        let summary = summary();
        write(&directory, &summary).unwrap();
        let ours = requests(&read(&directory.join("js/stats.json")).unwrap());
        let exact = summary.requests["all"].times.all.unwrap();
        let read = ours["all"].times.all.unwrap();
        assert_eq!(
            (read.min_ms, read.p50_ms, read.p95_ms, read.max_ms),
            (
                exact.min_ms.round(),
                exact.p50_ms.round(),
                exact.p95_ms.round(),
                exact.max_ms.round()
            )
        );
        assert_eq!(ours["criação"].count, 3);
        std::fs::remove_dir_all(directory).unwrap();
    }

    #[test]
    fn the_json_holds_numbers_and_the_script_strings_as_gatling_writes_them() {
        let directory = scratch("styles");
        write(&directory, &summary()).unwrap();
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(directory.join("js/stats.json")).unwrap(),
        )
        .unwrap();
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
        // The same fields at every level, in both files.
        let fields = |value: &Value| {
            value
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&json), fields(&fixture));
        assert_eq!(fields(&json["stats"]), fields(&fixture["stats"]));
        assert_eq!(
            fields(&json["stats"]["group2"]),
            fields(&fixture["stats"]["group2"])
        );
        assert_eq!(json["stats"]["group2"], {
            let mut group = fixture["stats"]["group2"].clone();
            group["count"] = 0.into();
            group["percentage"] = 0.into();
            group
        });
        assert_eq!(jq(&json, &["stats", "percentiles4", "ok"]), &Value::from(4));
        assert_eq!(jq(&json, &["stats", "percentiles4", "ko"]), &Value::from(0));
        assert_eq!(
            jq(&json, &["stats", "numberOfRequests", "total"]),
            &Value::from(3)
        );
        assert_eq!(
            jq(&json, &["stats", "group1", "percentage"]),
            &Value::from(100)
        );

        let script = std::fs::read_to_string(directory.join("js/stats.js")).unwrap();
        let object = script
            .strip_prefix("var stats = ")
            .and_then(|rest| rest.strip_suffix(";\n"))
            .unwrap();
        let script: Value = serde_json::from_str(object).unwrap();
        assert_eq!(
            jq(&script, &["stats", "percentiles4", "ok"]),
            &Value::from("4")
        );
        assert_eq!(
            jq(&script, &["stats", "percentiles4", "ko"]),
            &Value::from("-")
        );
        assert_eq!(
            jq(
                &script,
                &["stats", "meanNumberOfRequestsPerSecond", "total"]
            ),
            &Value::from("1")
        );
        std::fs::remove_dir_all(directory).unwrap();
    }
}
