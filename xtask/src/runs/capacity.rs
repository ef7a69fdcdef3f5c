//! `cargo xtask capacity [--scale S]`: the stress test at increasing injection rates (times the
//! contest's), each on a fresh native stack; the capacity is the largest factor whose run had no
//! KO, the expected count and a p99 of OK requests of at most 10 ms. The rate doubles from 1 until a
//! run fails, then a bisection narrows it to a multiple of 0.25.

use std::path::Path;

use anyhow::Result;
use xshell::Shell;

use crate::runs::stress::{self, read_json};
use crate::runs::stress::{RunArgs, StressArgs};
use crate::stack::Layout;

const STEP: f64 = 0.25;
/// Bounds the search, so that it ends on a machine where every run passes.
const MAX_RATE: f64 = 16.0;
const P99_LIMIT_MS: f64 = 10.0;

pub fn capacity(sh: &Shell, scale: f64) -> Result<()> {
    // Each step is judged here, from its summary, so that a failed step ends the search rather
    // than the command.
    let run_args = |out| RunArgs { scale, out, strict: false, assertions: Vec::new(), junit: None };
    let out = stress::out_dir(&run_args(None), "capacity")?;
    let (mut rows, mut header) = (Vec::new(), String::new());
    let passed = search(|rate| {
        let run = run_args(Some(out.join(format!("rate-{rate}"))));
        let args = StressArgs { run, preload: 0, fault: None, layout: Layout::default(), rate };
        let (pass, row, services) = step(&stress::stress(sh, &args, "capacity")?, rate)?;
        rows.push((rate, row));
        header = services;
        Ok(pass)
    })?;
    println!(
        "\n{:>6} {:>10} {:>9} {:>6} {:>8}{header}",
        "rate", "peak req/s", "p99 ms", "KO", "count"
    );
    rows.sort_by(|(a, _), (b, _)| a.total_cmp(b));
    for (_, row) in rows {
        println!("{row}");
    }
    let reports = format!("(scale {scale}, reports in {})", out.display());
    match passed {
        Some(MAX_RATE) => println!(
            "capacity: at least {MAX_RATE:.2} times the contest's rate, the search's bound {reports}"
        ),
        Some(rate) => println!("capacity: {rate:.2} times the contest's rate {reports}"),
        None => println!("capacity: below the contest's rate {reports}"),
    }
    Ok(())
}

/// Runs `passes` at each rate the search picks, and returns the largest rate that passed.
fn search(mut passes: impl FnMut(f64) -> Result<bool>) -> Result<Option<f64>> {
    let (mut passed, mut failed, mut rate) = (None, None, Some(1.0));
    while let Some(now) = rate {
        *(if passes(now)? { &mut passed } else { &mut failed }) = Some(now);
        rate = next_rate(passed, failed);
    }
    Ok(passed)
}

/// The rate to run next, given the largest that passed and the smallest that failed so far:
/// double until a failure (up to the bound), then halve the gap, on multiples of the step, until
/// the two are one step apart. `None` ends the search; so does a failure at the contest's rate.
fn next_rate(passed: Option<f64>, failed: Option<f64>) -> Option<f64> {
    match (passed, failed) {
        (Some(passed), None) => (passed < MAX_RATE).then(|| (passed * 2.0).min(MAX_RATE)),
        (Some(passed), Some(failed)) if failed - passed > STEP => {
            let steps = ((failed - passed) / STEP / 2.0).floor();
            Some(passed + steps * STEP)
        }
        _ => None,
    }
}

/// Whether one run passed, its row of the table and the table's service columns, from its
/// `summary.json`, `series.json` and `stack.json`.
fn step(out: &Path, rate: f64) -> Result<(bool, String, String)> {
    let summary = read_json(&out.join("summary.json"))?;
    let series = read_json(&out.join("series.json"))?;
    let stack = read_json(&out.join("stack.json"))?;
    let all = &summary["requests"]["all"];
    let per_second = |key: &str| series["timeline"][key].as_array().cloned().unwrap_or_default();
    let (ok, ko) = (per_second("ok_per_second"), per_second("ko_per_second"));
    let peak =
        ok.iter().zip(&ko).map(|(ok, ko)| ok.as_u64().unwrap_or(0) + ko.as_u64().unwrap_or(0));
    let stored = summary["count_after"]
        .as_u64()
        .zip(summary["count_before"].as_u64())
        .map(|(after, before)| after - before);
    let count_matches = stored.is_some() && stored == summary["expected_count"].as_u64();
    // The contest's figure: the p99 of the OK requests.
    let p99_ms = all["times"]["ok"]["p99_ms"].as_f64().unwrap_or(f64::INFINITY);
    let kos = all["ko"].as_u64();
    let (mut header, mut usage, mut stack_cpu) = (String::new(), String::new(), 0.0);
    for (name, service) in stack["services"].as_object().into_iter().flatten() {
        let cpu = service["cpu_seconds"].as_f64().unwrap_or(0.0);
        let throttled = service["cpu_throttled_periods"].as_u64().unwrap_or(0);
        header += &format!(" {:>16}", format!("{name} CPU s/thr"));
        usage += &format!(" {:>16}", format!("{cpu:.1} / {throttled}"));
        stack_cpu += cpu;
    }
    // What a request cost the whole stack: its CPU seconds over every request sent.
    let requests = all["count"].as_u64().unwrap_or(0).max(1) as f64;
    header += &format!(" {:>12}", "stack µs/req");
    usage += &format!(" {:>12.0}", stack_cpu * 1e6 / requests);
    let row = format!(
        "{rate:>6.2} {:>10} {p99_ms:>9.2} {:>6} {:>8}{usage}",
        peak.max().unwrap_or(0),
        kos.unwrap_or(u64::MAX),
        if count_matches { "=" } else { "wrong" }
    );
    Ok((kos == Some(0) && count_matches && p99_ms <= P99_LIMIT_MS, row, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rates a search runs, and its result, on a stack that passes up to `limit`.
    fn search_up_to(limit: f64) -> (Vec<f64>, Option<f64>) {
        let mut runs = Vec::new();
        let passed = search(|rate| {
            runs.push(rate);
            Ok(rate <= limit)
        });
        (runs, passed.unwrap())
    }

    #[test]
    fn the_rate_doubles_until_a_failure_then_bisects_to_a_step() {
        assert_eq!(search_up_to(5.3), (vec![1.0, 2.0, 4.0, 8.0, 6.0, 5.0, 5.5, 5.25], Some(5.25)));
        assert_eq!(search_up_to(2.0), (vec![1.0, 2.0, 4.0, 3.0, 2.5, 2.25], Some(2.0)));
        assert_eq!(search_up_to(1.1), (vec![1.0, 2.0, 1.5, 1.25], Some(1.0)));
        assert_eq!(search_up_to(100.0), (vec![1.0, 2.0, 4.0, 8.0, 16.0], Some(MAX_RATE)));
        assert_eq!(search_up_to(0.5), (vec![1.0], None));
    }
}
