//! `replay payloads|people|run|report`: see `replay --help`.

use std::process::ExitCode;

use clap::Parser;
use replay::cli::{Cli, Command};
use replay::{payloads, printer, run};

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
        Command::Run { options, strict } => finish(run::run(&options), &options.out, strict),
        Command::Report {
            out,
            stack_json,
            strict,
        } => finish(run::rerender(&out, stack_json.as_deref()), &out, strict),
    }
}

/// Prints the summary, whose last line is the verdict; under `--strict` a failed verdict fails the process.
fn finish(
    result: Result<replay::summary::Summary, String>,
    out: &std::path::Path,
    strict: bool,
) -> ExitCode {
    match result {
        Ok(summary) => {
            eprintln!("report: {}", out.join("report.html").display());
            print!("{}", printer::render(&summary));
            if strict && !summary.verdict.pass {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
    }
}
