//! The console summary, laid out like Gatling's end-of-run statistics; the verdict is its last line.

use std::fmt::{Display, Write as _};

use crate::statistics::{Outcome, RequestName, RequestStats, TimeFigure};
use crate::summary::{ServiceUsage, Summary};

const WIDTH: usize = 111;
/// The tables' first column, the request's or the service's name.
const NAME_WIDTH: usize = 16;
/// The requests table's columns after the name: which requests a row is over (all, OK or KO), how many,
/// their response times in ms and how many a second, with their widths. The standard deviation is in
/// `summary.json` and `js/stats.json`.
const REQUEST_COLUMNS: [(&str, usize); 11] = [
    ("set", 4),
    ("count", 9),
    ("min", 9),
    ("mean", 9),
    ("p50", 9),
    ("p75", 9),
    ("p95", 9),
    ("p99", 9),
    ("p99.9", 9),
    ("max", 10),
    ("req/s", 9),
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
    for (name, outcome, stats) in request_rows(summary) {
        let shown = if outcome == Outcome::All { name } else { "" };
        let cells = request_cells(stats, outcome, summary.duration_seconds);
        let _ = writeln!(out, "{}", row(shown, &cells, &REQUEST_COLUMNS));
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

/// The requests tables' rows: each request in the simulation's order, then all of them together; for
/// each, a row over all its requests, one over the OK ones and, when there are any, one over the KO ones.
pub fn request_rows(summary: &Summary) -> impl Iterator<Item = (&str, Outcome, &RequestStats)> {
    RequestName::ALL
        .iter()
        .map(|name| name.label())
        .chain(["all"])
        .filter_map(|name| Some((name, summary.requests.get(name)?)))
        .flat_map(|(name, stats)| {
            Outcome::ALL
                .into_iter()
                .filter(|outcome| *outcome != Outcome::Ko || stats.ko > 0)
                .map(move |outcome| (name, outcome, stats))
        })
}

/// A requests table's figures after the request's name, in the order of [`REQUEST_COLUMNS`]: "-" for
/// times where the row has no requests.
pub fn request_cells(
    stats: &RequestStats,
    outcome: Outcome,
    duration_seconds: f64,
) -> [String; 11] {
    let count = stats.count_of(outcome);
    let times = stats.times.get(outcome);
    let time = |figure: TimeFigure| {
        let value = times.as_ref().and_then(|times| times.get(figure));
        value.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"))
    };
    [
        match outcome {
            Outcome::All => "all",
            Outcome::Ok => "OK",
            Outcome::Ko => "KO",
        }
        .to_owned(),
        count.to_string(),
        time(TimeFigure::Min),
        time(TimeFigure::Mean),
        time(TimeFigure::P50),
        time(TimeFigure::P75),
        time(TimeFigure::P95),
        time(TimeFigure::P99),
        time(TimeFigure::P999),
        time(TimeFigure::Max),
        format!("{:.1}", count as f64 / duration_seconds.max(f64::EPSILON)),
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
            ..RequestStats::default()
        };
        let cells = request_cells(&stats, Outcome::All, 1.0);
        let creation = row("criação", &cells, &REQUEST_COLUMNS);
        let all = row("all", &cells, &REQUEST_COLUMNS);
        assert_eq!(creation.chars().count(), all.chars().count());
        assert_eq!(creation.chars().count(), WIDTH);
        assert!(creation.starts_with("criação          all"));
    }

    #[test]
    fn each_request_has_all_and_ok_rows_and_a_ko_row_when_it_failed() {
        let mut summary = crate::report::tests::summary();
        let creation = summary.requests.get_mut("criação").unwrap();
        (creation.ok, creation.ko) = (2, 1);
        let rows: Vec<(&str, Outcome)> = request_rows(&summary)
            .map(|(name, outcome, _)| (name, outcome))
            .collect();
        assert_eq!(
            rows,
            [
                ("criação", Outcome::All),
                ("criação", Outcome::Ok),
                ("criação", Outcome::Ko),
                ("all", Outcome::All),
                ("all", Outcome::Ok)
            ]
        );
        let printed = render(&summary);
        assert!(printed.contains("p99.9"), "{printed}");
        let ok_row = printed
            .lines()
            .find(|line| line.trim_start().starts_with("OK"))
            .unwrap();
        assert!(ok_row.contains("4.20"), "{ok_row}");
        let ko_row = printed
            .lines()
            .find(|line| line.trim_start().starts_with("KO"))
            .unwrap();
        assert!(
            ko_row
                .split_whitespace()
                .skip(2)
                .all(|cell| cell == "-" || cell.parse::<f64>().is_ok())
        );
    }
}
