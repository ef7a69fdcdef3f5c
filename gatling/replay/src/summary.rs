//! `summary.json`: the run's figures in one document, and the verdict drawn from them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::assertion::{Assertion, Check, Figures, judge_all};
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

/// The run judged by its assertions; the line closes the console output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    /// Each assertion, in the order given, with the figure it was judged on.
    pub checks: Vec<Check>,
    pub line: String,
}

impl Summary {
    /// What assertions are judged on; the count is the people stored during the run (the count after
    /// less the count before).
    pub fn figures(&self) -> Figures<'_> {
        Figures {
            requests: &self.requests,
            stored: self
                .count_after
                .map(|after| after.saturating_sub(self.count_before.unwrap_or(0))),
            expected: Some(self.expected_count),
            created: Some(self.created_201),
        }
    }

    /// Judges the run by `assertions` and keeps the verdict.
    pub fn judge(&mut self, assertions: &[Assertion]) {
        let figures = self.figures();
        let checks = judge_all(assertions, &figures);
        let pass = checks.iter().all(|check| check.pass);
        let stored = figures.stored;
        let all = self.requests.get("all").cloned().unwrap_or_default();
        let p99_ok = all
            .times
            .ok
            .map_or_else(|| "-".to_owned(), |times| format!("{:.2} ms", times.p99_ms));
        let failed: Vec<String> = checks
            .iter()
            .filter(|check| !check.pass)
            .map(|check| format!("{}: {}", check.assertion, check.actual))
            .collect();
        let line = format!(
            "{}: count {} {} expected {}, {} created (201), {} KO, p99 of OK {p99_ok}{}",
            if pass { "PASS" } else { "FAIL" },
            stored.map_or_else(|| "?".to_owned(), |count| count.to_string()),
            if stored == Some(self.expected_count) {
                "="
            } else {
                "vs"
            },
            self.expected_count,
            self.created_201,
            all.ko,
            if failed.is_empty() {
                String::new()
            } else {
                format!(" (failed {})", failed.join("; "))
            },
        );
        self.verdict = Verdict { pass, checks, line };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertion::defaults;
    use crate::report::tests::summary;

    fn judged(ko: u64, created: u64, before: Option<u64>, after: Option<u64>) -> Summary {
        let mut summary = summary();
        let all = summary.requests.get_mut("all").unwrap();
        all.ko = ko;
        all.ok = all.count - ko;
        (
            summary.created_201,
            summary.count_before,
            summary.count_after,
        ) = (created, before, after);
        summary.expected_count = 3;
        summary.judge(&defaults());
        summary
    }

    #[test]
    fn a_clean_run_passes() {
        let verdict = judged(0, 3, Some(0), Some(3)).verdict;
        assert!(verdict.pass);
        assert_eq!(
            verdict.line,
            "PASS: count 3 = expected 3, 3 created (201), 0 KO, p99 of OK 4.20 ms"
        );
        assert_eq!(verdict.checks.len(), 3);
    }

    #[test]
    fn kos_missing_people_and_extra_201s_fail() {
        assert!(!judged(1, 3, Some(0), Some(3)).verdict.pass);
        let short = judged(0, 3, Some(0), Some(2)).verdict;
        assert!(
            short.line.starts_with("FAIL: count 2 vs expected 3"),
            "{}",
            short.line
        );
        assert!(short.line.ends_with(
            "(failed count=expected: count 2, expected 3, created 3; count=created: count 2, expected 3, created 3)"
        ));
        let extra_201 = judged(0, 4, Some(0), Some(3)).verdict;
        let failed: Vec<&str> = extra_201
            .checks
            .iter()
            .filter(|check| !check.pass)
            .map(|check| check.assertion.as_str())
            .collect();
        assert_eq!(failed, ["count=created"]);
        assert!(!judged(0, 3, Some(0), None).verdict.pass);
        assert!(!judged(0, 3, Some(1), Some(3)).verdict.pass);
    }

    #[test]
    fn people_stored_before_the_run_are_not_counted() {
        let verdict = judged(0, 3, Some(1000), Some(1003)).verdict;
        assert!(verdict.pass, "{:?}", verdict.checks);
        assert!(verdict.line.starts_with("PASS: count 3 = expected 3"));
        assert!(!judged(0, 3, Some(1000), Some(1002)).verdict.pass);
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
