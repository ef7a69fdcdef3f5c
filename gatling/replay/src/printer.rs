//! The console summary, laid out like Gatling's end-of-run statistics; the verdict is its last line.

use std::fmt::{Display, Write as _};

use crate::statistics::{RequestName, RequestStats};
use crate::summary::{ServiceUsage, Summary};

const WIDTH: usize = 104;
/// The tables' first column, the request's or the service's name.
const NAME_WIDTH: usize = 16;
/// The requests table's columns after the name (response times in ms), with their widths.
const REQUEST_COLUMNS: [(&str, usize); 11] = [
    ("count", 8),
    ("OK", 8),
    ("KO", 6),
    ("min", 9),
    ("mean", 9),
    ("p50", 9),
    ("p75", 9),
    ("p95", 9),
    ("p99", 9),
    ("max", 10),
    ("req/s", 10),
];
/// The stack table's columns after the service's name, with their widths.
const SERVICE_COLUMNS: [(&str, usize); 4] = [
    ("CPU s", 12),
    ("CPU limit", 12),
    ("peak memory", 16),
    ("memory limit", 16),
];
/// Beyond this, the load no longer follows the simulation's schedule closely enough to compare runs.
const LATE_START_WARNING_MS: f64 = 1000.0;

pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let rule = "=".repeat(WIDTH);
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(
        out,
        "{} at scale {} and rate {}: {:.1} s, {} + {} + {} sessions (creation, valid search, invalid search)",
        summary.base_url,
        summary.scale,
        summary.rate,
        summary.duration_seconds,
        summary.creation_sessions,
        summary.valid_search_sessions,
        summary.invalid_search_sessions
    );
    section(&mut out, "Requests (response times in ms)");
    let _ = writeln!(
        out,
        "{}",
        row(
            "request",
            &REQUEST_COLUMNS.map(|(label, _)| label),
            &REQUEST_COLUMNS
        )
    );
    for (name, stats) in request_rows(summary) {
        let _ = writeln!(
            out,
            "{}",
            row(name, &request_cells(stats), &REQUEST_COLUMNS)
        );
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
            "{}",
            row(
                "service",
                &SERVICE_COLUMNS.map(|(label, _)| label),
                &SERVICE_COLUMNS
            )
        );
        for (service, usage) in &stack.services {
            let _ = writeln!(
                out,
                "{}",
                row(service, &service_cells(usage), &SERVICE_COLUMNS)
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

/// A table row: the name left-aligned, then each cell right-aligned in its column's width.
fn row(name: &str, cells: &[impl Display], columns: &[(&str, usize)]) -> String {
    let mut row = format!("{name:<NAME_WIDTH$}");
    for (cell, (_, width)) in cells.iter().zip(columns) {
        let _ = write!(row, "{cell:>width$}");
    }
    row
}

/// The requests tables' rows: each request in the simulation's order, then all of them together.
pub fn request_rows(summary: &Summary) -> impl Iterator<Item = (&str, &RequestStats)> {
    RequestName::ALL
        .iter()
        .map(|name| name.label())
        .chain(["all"])
        .filter_map(|name| Some((name, summary.requests.get(name)?)))
}

/// A requests table's figures after the request's name, in the order of [`REQUEST_COLUMNS`].
pub fn request_cells(stats: &RequestStats) -> [String; 11] {
    [
        stats.count.to_string(),
        stats.ok.to_string(),
        stats.ko.to_string(),
        format!("{:.2}", stats.min_ms),
        format!("{:.2}", stats.mean_ms),
        format!("{:.2}", stats.p50_ms),
        format!("{:.2}", stats.p75_ms),
        format!("{:.2}", stats.p95_ms),
        format!("{:.2}", stats.p99_ms),
        format!("{:.2}", stats.max_ms),
        format!("{:.1}", stats.requests_per_second),
    ]
}

/// A stack table's figures after the service's name, in the order of [`SERVICE_COLUMNS`]; "-"
/// where the stack gave none.
pub fn service_cells(usage: &ServiceUsage) -> [String; 4] {
    let unknown = || "-".to_owned();
    [
        usage
            .cpu_seconds
            .map_or_else(unknown, |seconds| format!("{seconds:.1}")),
        usage
            .cpu_limit
            .map_or_else(unknown, |limit| limit.to_string()),
        usage.peak_memory_bytes.map_or_else(unknown, mebibytes),
        usage.memory_limit_bytes.map_or_else(unknown, mebibytes),
    ]
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
        let creation = row("criação", &request_cells(&stats), &REQUEST_COLUMNS);
        let all = row("all", &request_cells(&stats), &REQUEST_COLUMNS);
        assert_eq!(creation.chars().count(), all.chars().count());
        assert!(creation.starts_with("criação         "));
    }
}
