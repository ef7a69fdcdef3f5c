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
    let mut steps = Vec::new();
    let mut rate = 1.0;
    while rate <= MAX_RATE {
        let run = RunArgs { scale, out: Some(out.join(format!("rate-{rate}"))), strict: false };
        let report =
            stress::stress(sh, &StressArgs { run, preload: 0, fault: None, rate }, "capacity")?;
        let step = Step::read(&report, rate)?;
        let passed = step.passes();
        steps.push(step);
        if !passed {
            break;
        }
        rate += STEP;
    }
    let services: Vec<String> = steps[0].services.iter().map(|(name, _, _)| name.clone()).collect();
    let columns: String =
        services.iter().map(|name| format!(" {:>16}", format!("{name} CPU s/thr"))).collect();
    println!(
        "\n{:>6} {:>10} {:>9} {:>6} {:>8}{columns}",
        "rate", "peak req/s", "p99 ms", "KO", "count"
    );
    for step in &steps {
        let usage: String = step
            .services
            .iter()
            .map(|(_, cpu, throttled)| format!(" {:>16}", format!("{cpu:.1} / {throttled}")))
            .collect();
        let count = if step.count_matches { "=" } else { "wrong" };
        println!(
            "{:>6.2} {:>10} {:>9.2} {:>6} {count:>8}{usage}",
            step.rate, step.peak_requests_per_second, step.p99_ms, step.ko
        );
    }
    let capacity = steps.iter().take_while(|step| step.passes()).last();
    match capacity {
        Some(step) => println!(
            "capacity: {:.2} times the contest's rate (scale {scale}, reports in {})",
            step.rate,
            out.display()
        ),
        None => println!(
            "capacity: below the contest's rate (scale {scale}, reports in {})",
            out.display()
        ),
    }
    Ok(())
}

/// One run's figures, from its `summary.json`, `series.json` and `stack.json`.
struct Step {
    rate: f64,
    peak_requests_per_second: u64,
    p99_ms: f64,
    ko: u64,
    count_matches: bool,
    /// Name, CPU seconds and throttled periods.
    services: Vec<(String, f64, u64)>,
}

impl Step {
    fn read(out: &Path, rate: f64) -> Result<Step> {
        let summary = read_json(&out.join("summary.json"))?;
        let series = read_json(&out.join("series.json"))?;
        let stack = read_json(&out.join("stack.json"))?;
        let all = &summary["requests"]["all"];
        let per_second =
            |key: &str| series["timeline"][key].as_array().cloned().unwrap_or_default();
        let (ok, ko) = (per_second("ok_per_second"), per_second("ko_per_second"));
        let peak = ok
            .iter()
            .zip(&ko)
            .map(|(ok, ko)| ok.as_u64().unwrap_or(0) + ko.as_u64().unwrap_or(0))
            .max();
        let stored = summary["count_after"]
            .as_u64()
            .zip(summary["count_before"].as_u64())
            .map(|(after, before)| after - before);
        let services = stack["services"].as_object().into_iter().flatten();
        Ok(Step {
            rate,
            peak_requests_per_second: peak.unwrap_or(0),
            p99_ms: all["p99_ms"].as_f64().unwrap_or(f64::INFINITY),
            ko: all["ko"].as_u64().unwrap_or(u64::MAX),
            count_matches: stored.is_some() && stored == summary["expected_count"].as_u64(),
            services: services
                .map(|(name, usage)| {
                    let cpu = usage["cpu_seconds"].as_f64().unwrap_or(0.0);
                    (name.clone(), cpu, usage["cpu_throttled_periods"].as_u64().unwrap_or(0))
                })
                .collect(),
        })
    }

    fn passes(&self) -> bool {
        self.ko == 0 && self.count_matches && self.p99_ms <= P99_LIMIT_MS
    }
}
