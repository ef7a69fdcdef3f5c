//! The console summary, laid out like Gatling's end-of-run statistics; the verdict is its last line.

use std::fmt::Write as _;

use crate::statistics::{RequestName, RequestStats};
use crate::summary::Summary;

const WIDTH: usize = 104;
/// Beyond this, the load no longer follows the simulation's schedule closely enough to compare runs.
const LATE_START_WARNING_MS: f64 = 1000.0;

pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let rule = "=".repeat(WIDTH);
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(
        out,
        "{} at scale {}: {:.1} s, {} + {} + {} sessions (creation, valid search, invalid search)",
        summary.base_url,
        summary.scale,
        summary.duration_seconds,
        summary.creation_sessions,
        summary.valid_search_sessions,
        summary.invalid_search_sessions
    );
    section(&mut out, "Requests (response times in ms)");
    let _ = writeln!(
        out,
        "{:<16}{:>8}{:>8}{:>6}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}{:>10}",
        "request", "count", "OK", "KO", "min", "mean", "p50", "p75", "p95", "p99", "max", "req/s"
    );
    let names = RequestName::ALL
        .iter()
        .map(|name| name.label())
        .chain(["all"]);
    for name in names {
        if let Some(stats) = summary.requests.get(name) {
            let _ = writeln!(out, "{}", stats_row(name, stats));
        }
    }

    let all = summary.requests.get("all").cloned().unwrap_or_default();
    section(&mut out, "Response Time Distribution");
    let share = |count: u64| {
        if all.count == 0 {
            0.0
        } else {
            100.0 * count as f64 / all.count as f64
        }
    };
    for (label, count) in [
        ("t < 800 ms", all.under_800_ms),
        ("800 ms <= t < 1200 ms", all.from_800_to_1200_ms),
        ("t >= 1200 ms", all.over_1200_ms),
        ("failed", all.ko),
    ] {
        let _ = writeln!(out, "> {label:<40}{count:>10} ({:>5.1}%)", share(count));
    }

    if !summary.errors.is_empty() {
        section(&mut out, "Errors");
        for (message, count) in &summary.errors {
            let _ = writeln!(out, "> {message:<80}{count:>10} ({:>5.1}%)", share(*count));
        }
    }

    section(&mut out, "People");
    let optional =
        |count: Option<u64>| count.map_or_else(|| "?".to_owned(), |count| count.to_string());
    let _ = writeln!(
        out,
        "> created (201) {}, count before {}, count after {}, expected {}",
        summary.created_201,
        optional(summary.count_before),
        optional(summary.count_after),
        summary.expected_count
    );

    if let Some(stack) = &summary.stack {
        section(&mut out, "Stack");
        let _ = writeln!(
            out,
            "{:<16}{:>12}{:>12}{:>16}{:>16}",
            "service", "CPU s", "CPU limit", "peak memory", "memory limit"
        );
        for (service, usage) in &stack.services {
            let _ = writeln!(
                out,
                "{service:<16}{:>12}{:>12}{:>16}{:>16}",
                usage
                    .cpu_seconds
                    .map_or_else(|| "-".to_owned(), |seconds| format!("{seconds:.1}")),
                usage
                    .cpu_limit
                    .map_or_else(|| "-".to_owned(), |limit| format!("{limit}")),
                usage
                    .peak_memory_bytes
                    .map_or_else(|| "-".to_owned(), mebibytes),
                usage
                    .memory_limit_bytes
                    .map_or_else(|| "-".to_owned(), mebibytes),
            );
        }
    }

    section(&mut out, "Replay");
    let _ = writeln!(
        out,
        "> CPU {:.1} s, peak RSS {}, injection lag p99 {:.1} ms / max {:.1} ms",
        summary.replay_cpu_seconds,
        mebibytes(summary.replay_peak_rss_bytes),
        summary.injection_lag.p99_ms,
        summary.injection_lag.max_ms
    );
    if summary.injection_lag.max_ms > LATE_START_WARNING_MS {
        let _ = writeln!(
            out,
            "> warning: users started up to {:.1} s late; this machine could not keep to the injection schedule",
            summary.injection_lag.max_ms / 1000.0
        );
    }
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, "{}", summary.verdict.line);
    out
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "---- {title} {}",
        "-".repeat(WIDTH.saturating_sub(title.chars().count() + 6))
    );
}

fn stats_row(name: &str, stats: &RequestStats) -> String {
    format!(
        "{name:<16}{:>8}{:>8}{:>6}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>10.2}{:>10.1}",
        stats.count,
        stats.ok,
        stats.ko,
        stats.min_ms,
        stats.mean_ms,
        stats.p50_ms,
        stats.p75_ms,
        stats.p95_ms,
        stats.p99_ms,
        stats.max_ms,
        stats.requests_per_second
    )
}

pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_whatever_the_accents() {
        let stats = RequestStats {
            count: 12,
            ok: 11,
            ko: 1,
            p99_ms: 1.5,
            ..RequestStats::default()
        };
        let creation = stats_row("criação", &stats);
        let all = stats_row("all", &stats);
        assert_eq!(creation.chars().count(), all.chars().count());
        assert!(creation.starts_with("criação         "));
    }
}
