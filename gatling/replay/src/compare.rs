//! `replay compare A B`: two runs' figures side by side with B's over A's, for before-and-after work.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::statistics::{RequestName, TimeFigure};
use crate::summary::Summary;

/// A run's directory, or its `summary.json` itself.
pub fn read(path: &Path) -> Result<Summary, String> {
    let file: PathBuf = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_owned()
    };
    let text =
        std::fs::read_to_string(&file).map_err(|error| format!("{}: {error}", file.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{}: {error}", file.display()))
}

/// One figure of both runs; `None` where a run does not have it.
struct Line {
    label: String,
    before: Option<f64>,
    after: Option<f64>,
    decimals: usize,
}

pub fn render(before: &Summary, after: &Summary) -> String {
    let mut lines = Vec::new();
    let mut line = |label: &str, figure: &dyn Fn(&Summary) -> Option<f64>, decimals: usize| {
        lines.push(Line {
            label: label.to_owned(),
            before: figure(before),
            after: figure(after),
            decimals,
        });
    };
    let all = |summary: &Summary| summary.requests.get("all").cloned().unwrap_or_default();
    line("duration s", &|run| Some(run.duration_seconds), 1);
    line("requests", &|run| Some(all(run).count as f64), 0);
    line("KO", &|run| Some(all(run).ko as f64), 0);
    line("requests/s", &|run| Some(all(run).requests_per_second), 1);
    line(
        "people stored",
        &|run| run.figures().stored.map(|count| count as f64),
        0,
    );
    line("expected", &|run| Some(run.expected_count as f64), 0);
    for figure in [
        TimeFigure::Mean,
        TimeFigure::P50,
        TimeFigure::P75,
        TimeFigure::P95,
        TimeFigure::P99,
        TimeFigure::P999,
        TimeFigure::Max,
    ] {
        line(
            &format!("{} of OK, ms", figure.label()),
            &|run| all(run).times.ok?.get(figure),
            2,
        );
    }
    for request in RequestName::ALL {
        line(
            &format!("{}: p99 of OK, ms", request.label()),
            &|run| {
                let times = run.requests.get(request.label())?.times.ok?;
                Some(times.p99_ms)
            },
            2,
        );
    }
    line("replay CPU s", &|run| Some(run.replay_cpu_seconds), 1);
    let services: Vec<String> = [before, after]
        .iter()
        .filter_map(|run| run.stack.as_ref())
        .flat_map(|stack| stack.services.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for service in &services {
        let usage = |run: &Summary| run.stack.as_ref()?.services.get(service).cloned();
        line(
            &format!("{service} CPU s"),
            &|run| usage(run)?.cpu_seconds,
            1,
        );
        line(
            &format!("{service} peak MiB"),
            &|run| Some(usage(run)?.peak_memory_bytes? as f64 / (1024.0 * 1024.0)),
            1,
        );
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "A: {} at scale {} and rate {}, seed {}",
        before.base_url, before.scale, before.rate, before.seed
    );
    let _ = writeln!(
        out,
        "B: {} at scale {} and rate {}, seed {}",
        after.base_url, after.scale, after.rate, after.seed
    );
    let _ = writeln!(out, "{:<32}{:>14}{:>14}{:>8}", "", "A", "B", "B/A");
    for line in lines {
        let shown = |value: Option<f64>| {
            value.map_or_else(
                || "-".to_owned(),
                |value| format!("{value:.*}", line.decimals),
            )
        };
        let ratio = match (line.before, line.after) {
            (Some(before), Some(after)) if before != 0.0 => format!("{:.2}", after / before),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<32}{:>14}{:>14}{ratio:>8}",
            line.label,
            shown(line.before),
            shown(line.after)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::summary;

    #[test]
    fn figures_sit_side_by_side_with_their_ratio() {
        let before = summary();
        let mut after = summary();
        let all = after.requests.get_mut("all").unwrap();
        all.times.ok.as_mut().unwrap().p99_ms = 2.1;
        after.duration_seconds = 6.0;
        let table = render(&before, &after);
        let row = |label: &str| {
            table
                .lines()
                .find(|line| line.starts_with(label))
                .unwrap_or_else(|| panic!("{label} in {table}"))
                .split_whitespace()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
        };
        assert_eq!(row("p99 of OK, ms"), ["0.50", "2.10", "4.20"]);
        assert_eq!(row("duration s"), ["2.00", "6.0", "3.0"]);
        // No KO in either: no ratio.
        assert_eq!(row("KO"), ["-", "0", "0"]);
        assert!(table.contains("busca válida: p99 of OK, ms"));
        assert!(
            row("busca válida: p99 of OK, ms")
                .iter()
                .all(|cell| *cell == "-")
        );
    }

    #[test]
    fn a_run_is_read_from_its_directory_or_its_file() {
        let directory = std::env::temp_dir().join(format!("replay-compare-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let file = directory.join("summary.json");
        std::fs::write(&file, serde_json::to_string(&summary()).unwrap()).unwrap();
        assert_eq!(read(&directory).unwrap(), summary());
        assert_eq!(read(&file).unwrap(), summary());
        assert!(read(&directory.join("missing")).is_err());
        std::fs::remove_dir_all(directory).unwrap();
    }
}
