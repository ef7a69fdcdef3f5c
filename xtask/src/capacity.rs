//! `cargo xtask capacity [--scale S]`: the stress test at injection rates 1, 1.25, 1.5, … times
//! the contest's, each on a fresh native stack, until a run fails; the capacity is the largest
//! factor whose run had no KO, the expected count and an overall p99 of at most 10 ms.

use std::path::Path;

use anyhow::Result;
use xshell::Shell;

use crate::stress::{self, read_json};
use crate::{RunArgs, StressArgs};

const STEP: f64 = 0.25;
/// Bounds the search: four times the contest's load is far past what the limits allow.
const MAX_RATE: f64 = 4.0;
const P99_LIMIT_MS: f64 = 10.0;

pub fn capacity(sh: &Shell, scale: f64) -> Result<()> {
    let out = stress::out_dir(&RunArgs { scale, out: None, strict: false }, "capacity")?;
    let (mut rows, mut capacity, mut header) = (Vec::new(), None, String::new());
    let mut rate = 1.0;
    while rate <= MAX_RATE {
        let run = RunArgs { scale, out: Some(out.join(format!("rate-{rate}"))), strict: false };
        let report =
            stress::stress(sh, &StressArgs { run, preload: 0, fault: None, rate }, "capacity")?;
        let (passed, row, services) = step(&report, rate)?;
        rows.push(row);
        header = services;
        if !passed {
            break;
        }
        capacity = Some(rate);
        rate += STEP;
    }
    println!(
        "\n{:>6} {:>10} {:>9} {:>6} {:>8}{header}",
        "rate", "peak req/s", "p99 ms", "KO", "count"
    );
    for row in rows {
        println!("{row}");
    }
    let reports = format!("(scale {scale}, reports in {})", out.display());
    match capacity {
        Some(rate) => println!("capacity: {rate:.2} times the contest's rate {reports}"),
        None => println!("capacity: below the contest's rate {reports}"),
    }
    Ok(())
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
    let (p99_ms, kos) = (all["p99_ms"].as_f64().unwrap_or(f64::INFINITY), all["ko"].as_u64());
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
