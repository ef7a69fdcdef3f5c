//! Command-line arguments, parsed by hand: a handful of flags does not call for a parser crate.

use std::path::PathBuf;

use crate::payloads;
use crate::run::RunOptions;
use crate::simulation;

pub const USAGE: &str = "\
usage:
  replay payloads --out FILE [--count N] [--seed S]
      Write N creation payloads (default 100000) as a Gatling TSV feeder, seeded by S (default 2023).
  replay people --count N [--seed S]
      Write N people shaped like valid payloads, with apelidos that hold a digit (so no payload's
      can equal them), to standard output as PostgreSQL COPY text for
      `COPY pessoas (id, apelido, nome, nascimento, stack) FROM STDIN`.
  replay run --payloads FILE --terms FILE --out DIR [--base-url URL] [--scale F] [--seed S]
             [--metrics URL]... [--stack-json FILE] [--strict]
      Replay the simulation against URL (default http://localhost:9999), with every injection duration
      multiplied by F (default 1, rounded to whole seconds). S seeds the randomized injection step and the
      pauses. Each --metrics URL (a replica's /metrics) is scraped every second. Writes summary.json,
      series.json and report.html into DIR.
  replay report --out DIR [--stack-json FILE] [--strict]
      Render DIR's summary and report again, adding the stack's resource figures from FILE.
  --strict makes the exit status 1 when the run has a KO, a count after the run different from the
  expected one, or a count different from the number of 201s. Errors exit with 2.";

#[derive(Debug, Clone)]
pub enum Command {
    Help,
    Payloads {
        out: PathBuf,
        count: usize,
        seed: u64,
    },
    People {
        count: usize,
        seed: u64,
    },
    Run {
        options: RunOptions,
        strict: bool,
    },
    Report {
        out: PathBuf,
        stack_json: Option<PathBuf>,
        strict: bool,
    },
}

pub fn parse(arguments: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut arguments = arguments.into_iter();
    let subcommand = arguments.next().unwrap_or_default();
    let mut flags = Flags::default();
    while let Some(flag) = arguments.next() {
        if flag == "--strict" {
            flags.strict = true;
            continue;
        }
        let value = arguments
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => flags.out = Some(PathBuf::from(value)),
            "--count" => flags.count = Some(number(&flag, &value)?),
            "--seed" => flags.seed = Some(number(&flag, &value)?),
            "--payloads" => flags.payloads = Some(PathBuf::from(value)),
            "--terms" => flags.terms = Some(PathBuf::from(value)),
            "--base-url" => flags.base_url = Some(value),
            "--scale" => flags.scale = Some(number(&flag, &value)?),
            "--metrics" => flags.metrics.push(value),
            "--stack-json" => flags.stack_json = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let required = |value: Option<PathBuf>, flag: &str| {
        value.ok_or_else(|| format!("{subcommand} needs {flag}"))
    };
    match subcommand.as_str() {
        "" | "help" | "--help" | "-h" => Ok(Command::Help),
        "payloads" => Ok(Command::Payloads {
            out: required(flags.out, "--out")?,
            count: flags
                .count
                .unwrap_or(payloads::DEFAULT_COUNT as i64)
                .try_into()
                .map_err(|_| "--count must not be negative")?,
            seed: flags
                .seed
                .map_or(payloads::DEFAULT_SEED, |seed| seed as u64),
        }),
        "people" => Ok(Command::People {
            count: flags
                .count
                .ok_or("people needs --count")?
                .try_into()
                .map_err(|_| "--count must not be negative")?,
            seed: flags
                .seed
                .map_or(payloads::DEFAULT_SEED, |seed| seed as u64),
        }),
        "run" => {
            let scale = flags.scale.unwrap_or(1.0);
            if !(scale > 0.0 && scale.is_finite()) {
                return Err("--scale must be a positive number".to_owned());
            }
            Ok(Command::Run {
                options: RunOptions {
                    payloads: required(flags.payloads, "--payloads")?,
                    terms: required(flags.terms, "--terms")?,
                    base_url: flags
                        .base_url
                        .unwrap_or_else(|| "http://localhost:9999".to_owned()),
                    scale,
                    out: required(flags.out, "--out")?,
                    metrics: flags.metrics,
                    stack_json: flags.stack_json,
                    seed: flags.seed.unwrap_or(simulation::DEFAULT_SEED),
                },
                strict: flags.strict,
            })
        }
        "report" => Ok(Command::Report {
            out: required(flags.out, "--out")?,
            stack_json: flags.stack_json,
            strict: flags.strict,
        }),
        other => Err(format!("unknown command {other}")),
    }
}

#[derive(Default)]
struct Flags {
    out: Option<PathBuf>,
    count: Option<i64>,
    seed: Option<i64>,
    payloads: Option<PathBuf>,
    terms: Option<PathBuf>,
    base_url: Option<String>,
    scale: Option<f64>,
    metrics: Vec<String>,
    stack_json: Option<PathBuf>,
    strict: bool,
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn run_takes_defaults_and_repeated_metrics() {
        let Command::Run { options, strict } =
            parse_words("run --payloads p.tsv --terms t.tsv --out out --metrics http://127.0.0.1:8081/metrics --metrics http://127.0.0.1:8082/metrics --strict").unwrap()
        else {
            panic!("not a run");
        };
        assert!(strict);
        assert_eq!(options.base_url, "http://localhost:9999");
        assert_eq!(options.scale, 1.0);
        assert_eq!(options.seed, simulation::DEFAULT_SEED);
        assert_eq!(options.metrics.len(), 2);
    }

    #[test]
    fn payloads_defaults_to_the_contest_size() {
        let Command::Payloads { count, seed, .. } = parse_words("payloads --out x.tsv").unwrap()
        else {
            panic!("not payloads");
        };
        assert_eq!((count, seed), (100_000, payloads::DEFAULT_SEED));
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(parse_words("run --payloads p.tsv --terms t.tsv").is_err());
        assert!(parse_words("run --payloads p.tsv --terms t.tsv --out o --scale 0").is_err());
        assert!(parse_words("payloads --out x --count many").is_err());
        assert!(parse_words("payloads --out").is_err());
        assert!(parse_words("fly").is_err());
        assert!(matches!(parse_words("").unwrap(), Command::Help));
    }
}
