//! `cargo xtask stress [--scale F] [--out DIR] [--strict]`: the contest's stress test, replayed
//! against a fresh native stack, with each service's CPU time and peak memory from its cgroup.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::stack::{self, NGINX_PORT, REPLICAS, Stack};

const PAYLOADS: &str = "gatling/resources/pessoas-payloads.tsv";
const TERMS: &str = "gatling/resources/termos-busca.tsv";

#[derive(Debug, PartialEq)]
struct Options {
    scale: String,
    out: Option<PathBuf>,
    /// Fail on any KO or any count that differs from the expected one (for CI).
    strict: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            scale: "1".to_owned(),
            out: None,
            strict: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--scale" => {
                    let scale = value("--scale")?;
                    match scale.parse::<f64>() {
                        Ok(factor) if factor > 0.0 && factor.is_finite() => options.scale = scale,
                        _ => return Err(format!("--scale {scale:?} is not a positive number")),
                    }
                }
                "--out" => options.out = Some(PathBuf::from(value("--out")?)),
                "--strict" => options.strict = true,
                other => {
                    return Err(format!(
                        "unknown stress option {other:?}; usage: cargo xtask stress \
                         [--scale F] [--out DIR] [--strict]"
                    ));
                }
            }
        }
        Ok(options)
    }
}

pub fn stress(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args)?;
    // Every run starts from a fresh stack: an empty database for the counts, new cgroups for the
    // CPU and peak-memory figures, and the limits as the compose file has them now.
    let was_up = match Stack::load()? {
        Some(previous) => {
            let running = previous.is_running()?;
            if running {
                println!("restarting the stack so that the run starts from an empty database");
            }
            previous.stop()?;
            running
        }
        None => false,
    };
    let stack = Stack::start()?;
    let outcome = run(&stack, &options);
    if was_up {
        println!("the stack stays up, as it was before; stop it with: cargo xtask down");
    } else {
        stack.stop()?;
    }
    outcome
}

fn run(stack: &Stack, options: &Options) -> Result<(), String> {
    let root = stack::repo_root();
    let payloads = root.join(PAYLOADS);
    if !payloads.exists() {
        println!("generating {PAYLOADS}");
        run_replay(
            Command::new(stack::release_binary("replay"))
                .args(["payloads", "--out"])
                .arg(&payloads),
        )?;
    }
    let out = match &options.out {
        Some(out) => out.clone(),
        None => {
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("the clock is past 1970")
                .as_secs();
            root.join("target/stress").join(stamp.to_string())
        }
    };

    let cpu_before = cpu_seconds(stack)?;
    let started = Instant::now();
    let mut replay = Command::new(stack::release_binary("replay"));
    replay
        .arg("run")
        .arg("--payloads")
        .arg(&payloads)
        .arg("--terms")
        .arg(root.join(TERMS))
        .arg("--base-url")
        .arg(format!("http://127.0.0.1:{NGINX_PORT}"))
        .args(["--scale", &options.scale])
        .arg("--out")
        .arg(&out);
    for (_, port) in REPLICAS {
        replay
            .arg("--metrics")
            .arg(format!("http://127.0.0.1:{port}/metrics"));
    }
    run_replay(&mut replay)?;
    let elapsed = started.elapsed().as_secs_f64();

    let usage = measure(stack, &cpu_before)?;
    print_usage(&usage, elapsed);
    let summary_path = out.join("summary.json");
    let mut summary = read_summary(&summary_path)?;
    summary["stack"] = usage;
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary).expect("JSON values serialise"),
    )
    .map_err(|error| format!("cannot write {}: {error}", summary_path.display()))?;

    let verdict = Verdict::from_summary(&summary)?;
    println!("{}", verdict.describe());
    println!("report: {}", out.join("report.html").display());
    if options.strict && !verdict.passed() {
        return Err("the stress run failed its checks (--strict)".to_owned());
    }
    Ok(())
}

fn run_replay(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|error| {
        format!(
            "cannot run {}: {error}",
            command.get_program().to_string_lossy()
        )
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the replay failed ({status})"))
    }
}

fn cpu_seconds(stack: &Stack) -> Result<Vec<f64>, String> {
    stack
        .services
        .iter()
        .map(|service| service.cgroup.cpu_seconds())
        .collect()
}

/// `{"services": {name: {cpu_seconds, peak_memory_bytes, cpu_limit, memory_limit_bytes}}}`, with
/// CPU seconds counted from `cpu_before` and peak memory over the stack's life (it was started
/// for this run, so that is the run's peak).
fn measure(stack: &Stack, cpu_before: &[f64]) -> Result<Value, String> {
    let mut services = serde_json::Map::new();
    for (service, before) in stack.services.iter().zip(cpu_before) {
        services.insert(
            service.name.clone(),
            json!({
                "cpu_seconds": service.cgroup.cpu_seconds()? - before,
                "peak_memory_bytes": service.cgroup.peak_memory_bytes()?,
                "cpu_limit": service.limits.cpus,
                "memory_limit_bytes": service.limits.memory_bytes,
            }),
        );
    }
    Ok(json!({ "services": services }))
}

fn print_usage(usage: &Value, elapsed_seconds: f64) {
    const MIB: f64 = (1 << 20) as f64;
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>12} {:>12}",
        "service", "CPU limit", "CPU s", "of quota", "peak MiB", "limit MiB"
    );
    let services = usage["services"].as_object().expect("built by measure");
    for (name, service) in services {
        let number = |key: &str| service[key].as_f64().expect("built by measure");
        let allowed = number("cpu_limit") * elapsed_seconds;
        println!(
            "{name:<8} {:>9.2} {:>9.1} {:>8.0}% {:>12.1} {:>12.0}",
            number("cpu_limit"),
            number("cpu_seconds"),
            100.0 * number("cpu_seconds") / allowed,
            number("peak_memory_bytes") / MIB,
            number("memory_limit_bytes") / MIB
        );
    }
}

fn read_summary(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// What a run must show: no KO, and every valid payload persisted exactly once.
#[derive(Debug, PartialEq)]
struct Verdict {
    ko: u64,
    created: u64,
    count_after: u64,
    expected_count: u64,
    /// p99 in milliseconds, by request name, with "all" last.
    p99_ms: Vec<(String, f64)>,
}

impl Verdict {
    fn from_summary(summary: &Value) -> Result<Verdict, String> {
        let number = |value: &Value, what: &str| {
            value
                .as_u64()
                .ok_or_else(|| format!("summary.json has no whole number {what}"))
        };
        let requests = summary["requests"]
            .as_object()
            .ok_or("summary.json has no requests object")?;
        let mut p99_ms = requests
            .iter()
            .map(|(name, stats)| {
                let p99 = stats["p99_ms"]
                    .as_f64()
                    .ok_or_else(|| format!("summary.json has no requests.{name}.p99_ms"))?;
                Ok((name.clone(), p99))
            })
            .collect::<Result<Vec<_>, String>>()?;
        p99_ms.sort_by_key(|(name, _)| name == "all");
        Ok(Verdict {
            ko: number(&summary["requests"]["all"]["ko"], "requests.all.ko")?,
            created: number(&summary["created_201"], "created_201")?,
            count_after: number(&summary["count_after"], "count_after")?,
            expected_count: number(&summary["expected_count"], "expected_count")?,
            p99_ms,
        })
    }

    fn passed(&self) -> bool {
        self.ko == 0 && self.count_after == self.expected_count && self.created == self.count_after
    }

    fn describe(&self) -> String {
        let p99: Vec<String> = self
            .p99_ms
            .iter()
            .map(|(name, p99)| format!("{name} {p99:.1} ms"))
            .collect();
        format!(
            "{}: KO {}, count {} of {} expected, {} created (201); p99: {}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.ko,
            self.count_after,
            self.expected_count,
            self.created,
            p99.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn options_default_to_the_full_run() {
        let options = Options::parse(&[]).unwrap();
        assert_eq!(
            options,
            Options {
                scale: "1".to_owned(),
                out: None,
                strict: false
            }
        );
        let options = Options::parse(&args(&["--scale", "0.2", "--strict", "--out", "x"])).unwrap();
        assert_eq!(
            options,
            Options {
                scale: "0.2".to_owned(),
                out: Some(PathBuf::from("x")),
                strict: true
            }
        );
        for bad in [
            &["--scale"][..],
            &["--scale", "0"],
            &["--scale", "fast"],
            &["--quick"],
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    fn summary(ko: u64, created: u64, count_after: u64, expected: u64) -> Value {
        json!({
            "requests": {
                "all": {"count": 10, "ok": 10 - ko, "ko": ko, "p99_ms": 4.5},
                "criação": {"count": 5, "ok": 5, "ko": 0, "p99_ms": 6.31},
            },
            "created_201": created,
            "count_after": count_after,
            "expected_count": expected,
        })
    }

    #[test]
    fn the_verdict_requires_no_ko_and_exact_counts() {
        let pass = Verdict::from_summary(&summary(0, 40, 40, 40)).unwrap();
        assert!(pass.passed());
        assert_eq!(
            pass.describe(),
            "PASS: KO 0, count 40 of 40 expected, 40 created (201); p99: criação 6.3 ms, all 4.5 ms"
        );
        assert!(
            !Verdict::from_summary(&summary(1, 40, 40, 40))
                .unwrap()
                .passed()
        );
        assert!(
            !Verdict::from_summary(&summary(0, 40, 39, 40))
                .unwrap()
                .passed()
        );
        assert!(
            !Verdict::from_summary(&summary(0, 41, 40, 40))
                .unwrap()
                .passed()
        );
    }

    #[test]
    fn a_summary_missing_a_count_is_an_error() {
        let mut incomplete = summary(0, 1, 1, 1);
        incomplete.as_object_mut().unwrap().remove("count_after");
        let error = Verdict::from_summary(&incomplete).unwrap_err();
        assert!(error.contains("count_after"), "{error}");
    }
}
