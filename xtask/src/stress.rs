//! `cargo xtask stress [--scale F] [--preload N] [--fault KIND[@S]] [--out DIR] [--strict]`: the
//! contest's stress test, replayed against a fresh native stack (its table first filled with N
//! generated people, one fault injected during the run), with each service's CPU time and peak
//! memory from its cgroup.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::cgroup::{Cgroup, Throttling};
use crate::compose::Limits;
use crate::fault::Fault;
use crate::stack::{self, NGINX_PORT, REPLICAS, Stack};

const PAYLOADS: &str = "gatling/resources/pessoas-payloads.tsv";
const TERMS: &str = "gatling/resources/termos-busca.tsv";

/// The options of the stress runs, shared by every stack.
#[derive(Debug, PartialEq)]
pub struct Options {
    pub scale: String,
    /// People generated into the table before the replicas start.
    pub preload: u64,
    /// One fault injected into the stack during the replay.
    pub fault: Option<Fault>,
    pub out: PathBuf,
    /// Fail on any KO or any count that differs from the expected one (for CI).
    pub strict: bool,
}

impl Options {
    /// Parses the options of `cargo xtask COMMAND`; without `--out`, the run goes to
    /// `target/COMMAND/<seconds since 1970>`.
    pub fn parse(command: &str, args: &[String]) -> Result<Options, String> {
        let usage = format!(
            "usage: cargo xtask {command} [--scale F] [--preload N] [--out DIR] [--strict]"
        );
        let mut scale = "1".to_owned();
        let mut preload = 0;
        let mut fault = None;
        let mut out = None;
        let mut strict = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value; {usage}"))
            };
            match arg.as_str() {
                "--scale" => {
                    scale = value()?;
                    if !scale
                        .parse::<f64>()
                        .is_ok_and(|factor| factor > 0.0 && factor.is_finite())
                    {
                        return Err(format!("--scale {scale:?} is not a positive number"));
                    }
                }
                "--preload" => {
                    let count = value()?;
                    preload = count
                        .parse()
                        .map_err(|_| format!("--preload {count:?} is not a whole number"))?;
                }
                "--fault" => fault = Some(Fault::parse(&value()?)?),
                "--out" => out = Some(PathBuf::from(value()?)),
                "--strict" => strict = true,
                other => return Err(format!("unknown {command} option {other:?}; {usage}")),
            }
        }
        let out = out.unwrap_or_else(|| {
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("the clock is past 1970")
                .as_secs();
            stack::repo_root()
                .join("target")
                .join(command)
                .join(stamp.to_string())
        });
        Ok(Options {
            scale,
            preload,
            fault,
            out,
            strict,
        })
    }
}

pub fn stress(args: &[String]) -> Result<(), String> {
    let options = Options::parse("stress", args)?;
    // Every run starts from a fresh stack: an empty database for the counts, new cgroups for the
    // CPU and peak-memory figures, and the limits as the compose file has them now.
    let was_up = match Stack::load()? {
        Some(previous) => {
            let running = previous.is_running()?;
            if running {
                println!(
                    "restarting the stack so that the run starts from an empty database; it \
                     stays up afterwards"
                );
            }
            previous.stop()?;
            running
        }
        None => false,
    };
    let mut stack = Stack::start(options.preload)?;
    let services: Vec<Measured> = stack
        .services
        .iter()
        .map(|service| Measured {
            name: service.name.clone(),
            cgroup: service.cgroup.clone(),
            limits: service.limits,
        })
        .collect();
    let fault = options.fault.map(|fault| (fault, &mut stack));
    let outcome = replay_and_report(&services, &options, fault);
    // The stack is left as it was found, so that the verdict stays the last line.
    if !was_up {
        stack.stop()?;
    }
    outcome
}

/// A service whose cgroup a run measures.
pub struct Measured {
    pub name: String,
    pub cgroup: Cgroup,
    pub limits: Limits,
}

/// Replays the stress test against nginx on :9999 at the options' scale into their output
/// directory, then has the replay report it again with each service's CPU time, CPU throttling
/// and peak memory over the run (the services were started for it, so their peaks are the
/// run's). With a fault, it strikes `stack` during the replay and the run is judged by the
/// fault's own target (see `fault.rs`), recorded as `fault` in `summary.json`. Under `--strict`
/// a failed verdict is an error.
pub fn replay_and_report(
    services: &[Measured],
    options: &Options,
    fault: Option<(Fault, &mut Stack)>,
) -> Result<(), String> {
    let Options {
        scale, out, strict, ..
    } = options;
    let root = stack::repo_root();
    let payloads = root.join(PAYLOADS);
    if !payloads.exists() {
        println!("generating {PAYLOADS}");
        let mut generate = replay();
        generate.args(["payloads", "--out"]).arg(&payloads);
        run_replay(&mut generate)?;
    }

    let before = cpu_figures(services)?;
    let mut load = replay();
    load.arg("run")
        .arg("--payloads")
        .arg(&payloads)
        .arg("--terms")
        .arg(root.join(TERMS))
        .arg("--base-url")
        .arg(format!("http://127.0.0.1:{NGINX_PORT}"))
        .args(["--scale", scale.as_str()])
        .arg("--out")
        .arg(out)
        // The summary is printed once, below, when it has the stack's figures too; progress
        // still shows on stderr.
        .stdout(Stdio::null());
    for (_, port) in REPLICAS {
        load.arg("--metrics")
            .arg(format!("http://127.0.0.1:{port}/metrics"));
    }
    let window = match fault {
        None => {
            run_replay(&mut load)?;
            None
        }
        Some((fault, stack)) => {
            let mut replay = load
                .spawn()
                .map_err(|error| format!("cannot run the replay: {error}"))?;
            let scale: f64 = scale.parse().expect("checked by Options::parse");
            std::thread::sleep(fault.delay(scale));
            println!("injecting {}", fault.name());
            let struck = fault.inject(stack);
            let status = replay.wait().map_err(|error| error.to_string())?;
            let window = struck?;
            println!(
                "{} took {:.1} s to repair",
                fault.name(),
                window.1 - window.0
            );
            if !status.success() {
                return Err(format!("the replay failed ({status})"));
            }
            Some((fault, window))
        }
    };
    let after = cpu_figures(services)?;

    let mut figures = serde_json::Map::new();
    let mut throttling = Vec::new();
    for ((service, (cpu_before, throttled_before)), (cpu_after, throttled_after)) in
        services.iter().zip(before).zip(after)
    {
        let throttled = throttled_after - throttled_before;
        throttling.push(format!(
            "{} {} of {} ({:.2} s)",
            service.name,
            throttled.throttled_periods,
            throttled.periods,
            throttled.throttled_seconds
        ));
        figures.insert(
            service.name.to_owned(),
            json!({
                "cpu_seconds": cpu_after - cpu_before,
                "peak_memory_bytes": service.cgroup.peak_memory_bytes()?,
                "cpu_limit": service.limits.cpus,
                "memory_limit_bytes": service.limits.memory_bytes,
                "cpu_periods": throttled.periods,
                "cpu_throttled_periods": throttled.throttled_periods,
                "cpu_throttled_seconds": throttled.throttled_seconds,
            }),
        );
    }
    println!(
        "CPU periods throttled by the quota during the run: {}",
        throttling.join(", ")
    );
    let stack_json = out.join("stack.json");
    std::fs::write(
        &stack_json,
        serde_json::to_string_pretty(&json!({ "services": figures }))
            .expect("JSON values serialise"),
    )
    .map_err(|error| format!("cannot write {}: {error}", stack_json.display()))?;
    let mut report = replay();
    report
        .args(["report", "--out"])
        .arg(out)
        .arg("--stack-json")
        .arg(&stack_json);
    let Some((fault, window)) = window else {
        if *strict {
            report.arg("--strict");
        }
        return run_replay(&mut report);
    };
    run_replay(&mut report)?;
    let read = |name: &str| -> Result<serde_json::Value, String> {
        let path = out.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
    };
    let mut summary = read("summary.json")?;
    let (figures, problems) = fault.judge(window, &summary, &read("series.json")?);
    println!(
        "fault {}: injected at {} s, repaired at {} s; KO before {}, during {}, after {}",
        fault.name(),
        figures["injected_at_s"],
        figures["restored_at_s"],
        figures["ko_before"],
        figures["ko_during"],
        figures["ko_after"]
    );
    summary["fault"] = figures;
    let path = out.join("summary.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&summary).expect("JSON values serialise"),
    )
    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    if problems.is_empty() {
        println!("FAULT PASS: {}", fault.name());
        Ok(())
    } else {
        println!("FAULT FAIL: {}: {}", fault.name(), problems.join("; "));
        if *strict {
            Err("the run failed its fault target (see above)".to_owned())
        } else {
            Ok(())
        }
    }
}

fn replay() -> Command {
    Command::new(stack::release_binary("replay"))
}

/// Runs the replay; with `--strict`, its exit status 1 means the verdict failed.
fn run_replay(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|error| format!("cannot run the replay: {error}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(1) => Err("the run failed its checks (see the verdict above)".to_owned()),
        _ => Err(format!("the replay failed ({status})")),
    }
}

fn cpu_figures(services: &[Measured]) -> Result<Vec<(f64, Throttling)>, String> {
    services
        .iter()
        .map(|service| Ok((service.cgroup.cpu_seconds()?, service.cgroup.throttling()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn options_parse_and_reject() {
        let options = Options::parse("stress", &[]).unwrap();
        assert_eq!(options.scale, "1");
        assert!(!options.strict);
        assert_eq!(options.preload, 0);
        let options = Options::parse("stress", &args(&["--preload", "200000"])).unwrap();
        assert_eq!(options.preload, 200_000);
        let options = Options::parse("stress", &args(&["--fault", "pause-db@20"])).unwrap();
        assert_eq!(options.fault, Some(Fault::parse("pause-db@20").unwrap()));
        assert!(
            options
                .out
                .starts_with(stack::repo_root().join("target/stress"))
        );
        let options = Options::parse(
            "compose-stress",
            &args(&["--scale", "0.2", "--strict", "--out", "x"]),
        )
        .unwrap();
        assert_eq!(
            options,
            Options {
                scale: "0.2".to_owned(),
                preload: 0,
                fault: None,
                out: PathBuf::from("x"),
                strict: true
            }
        );
        for bad in [
            &["--scale"][..],
            &["--scale", "0"],
            &["--scale", "fast"],
            &["--quick"],
            &["--preload", "-1"],
            &["--fault", "reboot"],
        ] {
            assert!(
                Options::parse("stress", &args(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
