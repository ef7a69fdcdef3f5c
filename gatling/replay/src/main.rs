//! `replay payloads|people|run|report|judge|compare`: see `replay --help`.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use replay::assertion::{Figures, judge_all};
use replay::cli::{CheckOptions, Cli, Command};
use replay::{compare, gatling, junit, payloads, printer, run};

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Payloads { out, count, seed } => {
            match payloads::write_payload_file(&out, count, seed) {
                Ok(()) => {
                    println!(
                        "{count} payloads (seed {seed}) written to {}",
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{}: {error}", out.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::People { count, seed } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match payloads::write_people(&mut out, count, seed) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("writing people: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { options, checks } => {
            finish(run::run(&options, &checks.judged()), &options.out, &checks)
        }
        Command::Report {
            out,
            stack_json,
            checks,
        } => finish(
            run::rerender(&out, stack_json.as_deref(), &checks.judged()),
            &out,
            &checks,
        ),
        Command::Judge {
            report,
            count,
            checks,
        } => judge(&report, count, &checks),
        Command::Compare { before, after } => {
            match compare::read(&before).and_then(|a| Ok((a, compare::read(&after)?))) {
                Ok((before, after)) => {
                    print!("{}", compare::render(&before, &after));
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{error}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Prints the summary, whose last line is the verdict, and writes the JUnit report when asked; a failed
/// verdict fails the process when conditions were asked for.
fn finish(
    result: Result<replay::summary::Summary, String>,
    out: &std::path::Path,
    checks: &CheckOptions,
) -> ExitCode {
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let suite = format!("stress test against {}", summary.base_url);
    if let Some(path) = &checks.junit
        && let Err(error) = junit::write(
            path,
            &suite,
            Some(summary.duration_seconds),
            &summary.verdict.checks,
        )
    {
        eprintln!("{error}");
        return ExitCode::from(2);
    }
    eprintln!("report: {}", out.join("report.html").display());
    print!("{}", printer::render(&summary));
    if checks.enforced() && !summary.verdict.pass {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints each condition judged on a Gatling report, then the verdict; any failure fails the process.
fn judge(report: &Path, count: Option<u64>, checks: &CheckOptions) -> ExitCode {
    let stats = match gatling::read(&report.join("js/stats.json")) {
        Ok(stats) => stats,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let requests = gatling::requests(&stats);
    let figures = Figures {
        requests: &requests,
        stored: count,
        expected: None,
        created: None,
    };
    let judged = judge_all(&checks.judged(), &figures);
    if let Some(path) = &checks.junit
        && let Err(error) = junit::write(
            path,
            &format!("Gatling report {}", report.display()),
            None,
            &judged,
        )
    {
        eprintln!("{error}");
        return ExitCode::from(2);
    }
    for check in &judged {
        let verdict = if check.pass { "ok  " } else { "FAIL" };
        println!("{verdict} {}: {}", check.assertion, check.actual);
    }
    let failed = judged.iter().filter(|check| !check.pass).count();
    if failed == 0 {
        println!("PASS: {} conditions hold", judged.len());
        ExitCode::SUCCESS
    } else {
        println!("FAIL: {failed} of {} conditions do not hold", judged.len());
        ExitCode::FAILURE
    }
}
