//! `summary.json`: the run's figures in one document, and the verdict drawn from them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::statistics::{InjectionLag, RequestStats};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub base_url: String,
    pub payloads_file: String,
    pub terms_file: String,
    pub scale: f64,
    /// `--rate`: every injection rate was multiplied by it (1 in summaries written before it existed).
    #[serde(default = "unscaled")]
    pub rate: f64,
    pub seed: i64,
    /// To the microsecond, so that a fault's window can be placed in the run's seconds.
    pub started_at_unix_seconds: f64,
    pub duration_seconds: f64,
    pub creation_sessions: u64,
    pub valid_search_sessions: u64,
    pub invalid_search_sessions: u64,
    /// By request name, plus `"all"`.
    pub requests: BTreeMap<String, RequestStats>,
    /// KO messages and their counts.
    pub errors: BTreeMap<String, u64>,
    /// Creation requests answered 201.
    pub created_201: u64,
    /// `GET /contagem-pessoas` before the first and after the last request.
    pub count_before: Option<u64>,
    pub count_after: Option<u64>,
    /// Distinct apelidos the contract accepts among the payloads this run sent.
    pub expected_count: u64,
    /// Per service, from the stack's own accounting (`--stack-json`).
    pub stack: Option<StackUsage>,
    pub replay_cpu_seconds: f64,
    pub replay_peak_rss_bytes: u64,
    pub injection_lag: InjectionLag,
    pub verdict: Verdict,
}

fn unscaled() -> f64 {
    1.0
}

/// The stack tooling's figures: `{"services": {"<name>": {cpu_seconds, peak_memory_bytes, cpu_limit,
/// memory_limit_bytes}}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackUsage {
    pub services: BTreeMap<String, ServiceUsage>,
}

/// One service's resource use over the run and its limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceUsage {
    pub cpu_seconds: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    pub cpu_limit: Option<f64>,
    pub memory_limit_bytes: Option<u64>,
}

pub fn read_stack(path: &Path) -> Result<StackUsage, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    pub problems: Vec<String>,
    /// The one line that closes the console output.
    pub line: String,
}

impl Verdict {
    /// A run passes with no KO, as many people stored during the run (the count after less the
    /// count before) as expected, and one 201 per person stored.
    pub fn judge(
        requests: &BTreeMap<String, RequestStats>,
        created_201: u64,
        count_before: Option<u64>,
        count_after: Option<u64>,
        expected_count: u64,
    ) -> Self {
        let all = requests.get("all").cloned().unwrap_or_default();
        let mut problems = Vec::new();
        if all.ko > 0 {
            problems.push(format!("{} KO", all.ko));
        }
        let before = count_before.unwrap_or(0);
        let stored = count_after.map(|after| after.saturating_sub(before));
        match stored {
            None => problems.push("no count after the run".to_owned()),
            Some(count) if count != expected_count => {
                problems.push(format!("count {count} != expected {expected_count}"))
            }
            Some(count) if count != created_201 => {
                problems.push(format!("count {count} != {created_201} created (201)"))
            }
            Some(_) => {}
        }
        let pass = problems.is_empty();
        let count = stored.map_or_else(|| "?".to_owned(), |count| count.to_string());
        let line = format!(
            "{}: count {count} {} expected {expected_count}, {created_201} created (201), {} KO, p99 {:.2} ms{}",
            if pass { "PASS" } else { "FAIL" },
            if stored == Some(expected_count) {
                "="
            } else {
                "vs"
            },
            all.ko,
            all.p99_ms,
            if pass {
                String::new()
            } else {
                format!(" ({})", problems.join("; "))
            },
        );
        Self {
            pass,
            problems,
            line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(ko: u64) -> BTreeMap<String, RequestStats> {
        let all = RequestStats {
            count: 10,
            ok: 10 - ko,
            ko,
            p99_ms: 3.456,
            ..RequestStats::default()
        };
        BTreeMap::from([("all".to_owned(), all)])
    }

    #[test]
    fn a_clean_run_passes() {
        let verdict = Verdict::judge(&requests(0), 7, Some(0), Some(7), 7);
        assert!(verdict.pass);
        assert_eq!(
            verdict.line,
            "PASS: count 7 = expected 7, 7 created (201), 0 KO, p99 3.46 ms"
        );
    }

    #[test]
    fn kos_missing_people_and_extra_201s_fail() {
        assert!(!Verdict::judge(&requests(1), 7, Some(0), Some(7), 7).pass);
        let short = Verdict::judge(&requests(0), 7, Some(0), Some(6), 7);
        assert_eq!(short.problems, ["count 6 != expected 7"]);
        assert!(short.line.starts_with("FAIL: count 6 vs expected 7"));
        let extra_201 = Verdict::judge(&requests(0), 8, Some(0), Some(7), 7);
        assert_eq!(extra_201.problems, ["count 7 != 8 created (201)"]);
        assert!(!Verdict::judge(&requests(0), 7, Some(0), None, 7).pass);
        assert!(!Verdict::judge(&requests(0), 7, Some(3), Some(7), 7).pass);
    }

    #[test]
    fn people_stored_before_the_run_are_not_counted() {
        let verdict = Verdict::judge(&requests(0), 7, Some(1000), Some(1007), 7);
        assert!(verdict.pass, "{:?}", verdict.problems);
        assert!(verdict.line.starts_with("PASS: count 7 = expected 7"));
        let short = Verdict::judge(&requests(0), 7, Some(1000), Some(1006), 7);
        assert_eq!(short.problems, ["count 6 != expected 7"]);
    }

    #[test]
    fn the_stack_file_is_read_by_service() {
        let path = std::env::temp_dir().join(format!("replay-stack-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"services": {"api1": {"cpu_seconds": 12.5, "peak_memory_bytes": 1000, "cpu_limit": 0.25}}}"#,
        )
        .unwrap();
        let stack = read_stack(&path).unwrap();
        assert_eq!(stack.services["api1"].cpu_seconds, Some(12.5));
        assert_eq!(stack.services["api1"].memory_limit_bytes, None);
        std::fs::remove_file(path).unwrap();
    }
}
