//! Command-line arguments: each subcommand accepts exactly its own flags, and a mistake exits with 2.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::payloads;
use crate::run::RunOptions;

#[derive(Debug, Parser)]
#[command(
    name = "replay",
    about = "The contest's Gatling stress test replayed in Rust",
    arg_required_else_help = true,
    after_help = "--strict makes the exit status 1 when the run has a KO, a count after the run \
                  different from the expected one, or a count different from the number of 201s. \
                  Errors exit with 2."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write N creation payloads as a Gatling TSV feeder, seeded by S.
    Payloads {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long, value_name = "N", default_value_t = payloads::DEFAULT_COUNT)]
        count: usize,
        #[arg(long, value_name = "S", default_value_t = payloads::DEFAULT_SEED)]
        seed: u64,
    },
    /// Write N people shaped like valid payloads to standard output as PostgreSQL COPY text.
    ///
    /// The rows are for `COPY pessoas (id, apelido, nome, nascimento, stack) FROM STDIN`; their
    /// apelidos hold a digit, so no payload's can equal them.
    People {
        #[arg(long, value_name = "N")]
        count: usize,
        #[arg(long, value_name = "S", default_value_t = payloads::DEFAULT_SEED)]
        seed: u64,
    },
    /// Replay the simulation against the service.
    Run {
        #[command(flatten)]
        options: RunOptions,
        /// Exit with 1 when the verdict fails.
        #[arg(long)]
        strict: bool,
    },
    /// Render an earlier run's summary and report again, adding the stack's resource figures.
    Report {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Each service's CPU seconds, peak memory and limits, as `cargo xtask stress` writes them.
        #[arg(long, value_name = "FILE")]
        stack_json: Option<PathBuf>,
        /// Exit with 1 when the verdict fails.
        #[arg(long)]
        strict: bool,
    },
}

/// A multiplier given on the command line: a finite number above zero.
pub fn positive_factor(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(factor) if factor > 0.0 && factor.is_finite() => Ok(factor),
        _ => Err(format!("{text} is not a positive number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulation;

    fn parse_words(line: &str) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("replay").chain(line.split_whitespace()))
            .map(|cli| cli.command)
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
        assert_eq!((options.scale, options.rate), (1.0, 1.0));
        assert_eq!(options.seed, simulation::DEFAULT_SEED);
        assert_eq!(options.metrics.len(), 2);
        assert_eq!(options.stack_json, None);
    }

    #[test]
    fn run_takes_scale_rate_seed_and_stack_figures() {
        let Command::Run { options, strict } = parse_words(
            "run --payloads p --terms t --out o --base-url http://127.0.0.1:9999 --scale 0.2 --rate 3 --seed -4 --stack-json s.json",
        )
        .unwrap() else {
            panic!("not a run");
        };
        assert!(!strict);
        assert_eq!(options.base_url, "http://127.0.0.1:9999");
        assert_eq!((options.scale, options.rate, options.seed), (0.2, 3.0, -4));
        assert_eq!(options.stack_json, Some(PathBuf::from("s.json")));
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
        for line in [
            "run --payloads p.tsv --terms t.tsv",
            "run --payloads p.tsv --terms t.tsv --out o --scale 0",
            "run --payloads p.tsv --terms t.tsv --out o --rate -1",
            "run --payloads p.tsv --terms t.tsv --out o --rate inf",
            "payloads --out x --count many",
            "payloads --out",
            "people",
            "fly",
            "",
        ] {
            assert!(parse_words(line).is_err(), "{line}");
        }
    }

    #[test]
    fn each_subcommand_refuses_the_others_flags() {
        for line in [
            "payloads --out x --terms t.tsv",
            "payloads --out x --strict",
            "people --count 3 --out x",
            "run --payloads p --terms t --out o --count 3",
            "report --out o --scale 2",
            "report --out o --rate 2",
        ] {
            let error = parse_words(line).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{line}"
            );
        }
    }
}
