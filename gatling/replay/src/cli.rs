//! Command-line arguments: each subcommand accepts exactly its own flags, and a mistake exits with 2.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::assertion::{self, Assertion};
use crate::client::PrivateNetwork;
use crate::{payloads, simulation};

#[derive(Debug, Parser)]
#[command(
    name = "replay",
    about = "The contest's Gatling stress test replayed in Rust",
    arg_required_else_help = true,
    after_help = "A run is judged by its --assert conditions, with --strict's (ko=0, count=expected, \
                  count=created) added; by --strict's alone when none is given. Either makes the exit \
                  status 1 when one fails. Errors exit with 2."
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
        #[command(flatten)]
        checks: CheckOptions,
    },
    /// Render an earlier run's summary and report again, adding the stack's resource figures.
    Report {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Each service's CPU seconds, peak memory and limits, as `cargo xtask stress` writes them.
        #[arg(long, value_name = "FILE")]
        stack_json: Option<PathBuf>,
        #[command(flatten)]
        checks: CheckOptions,
    },
    /// Judge a Gatling report, a run of the Gatling simulation itself, by the same conditions.
    ///
    /// Its figures are Gatling's: whole milliseconds and no p99.9. It has no people counts: `count`
    /// is the one given, and `expected` and `created` are unknown, so conditions on them fail. The exit
    /// status is 1 when a condition fails.
    Judge {
        /// The report's directory, which holds js/stats.json.
        #[arg(value_name = "DIR")]
        report: PathBuf,
        /// The people stored during the run, for `count` conditions.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        checks: CheckOptions,
    },
    /// Two runs' summaries side by side, with B's figures over A's.
    Compare {
        /// A run's directory (or its summary.json): the one before.
        #[arg(value_name = "A")]
        before: PathBuf,
        /// The one after.
        #[arg(value_name = "B")]
        after: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// The creation payloads' feeder (`replay payloads` writes one).
    #[arg(long, value_name = "FILE")]
    pub payloads: PathBuf,
    /// The search terms' feeder.
    #[arg(long, value_name = "FILE")]
    pub terms: PathBuf,
    /// The service, on a loopback address (or in --private-network).
    #[arg(long, value_name = "URL", default_value = "http://localhost:9999")]
    pub base_url: String,
    /// Also accept targets (the base URL, the metrics URLs) in this private IPv4 network, which
    /// must be on this machine's own links: the native stack's namespaces, 10.231.0.0/24.
    #[arg(long, value_name = "CIDR")]
    pub private_network: Option<PrivateNetwork>,
    /// Connect from each of these local addresses in turn (repeat for each), for more than
    /// about 470 new connections a second to a target beyond loopback.
    #[arg(long = "source-address", value_name = "IP")]
    pub source_addresses: Vec<std::net::IpAddr>,
    /// Every injection duration multiplied by F (rounded to whole seconds), the rates kept.
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive_factor)]
    pub scale: f64,
    /// Every injection rate multiplied by F (to thousandths of a user per second), the durations kept.
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive_factor)]
    pub rate: f64,
    /// Where summary.json, series.json, report.html and js/stats.json are written.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A replica's /metrics, scraped every second; repeat for each replica.
    #[arg(long, value_name = "URL")]
    pub metrics: Vec<String>,
    /// Each service's CPU seconds, peak memory and limits, added to the summary and the report.
    #[arg(long, value_name = "FILE")]
    pub stack_json: Option<PathBuf>,
    /// Seeds the randomized injection step and the pauses.
    #[arg(long, value_name = "S", default_value_t = simulation::DEFAULT_SEED, allow_negative_numbers = true)]
    pub seed: i64,
}

/// How a run is judged, and what its judgement fails.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckOptions {
    /// A condition the run must meet, like `p99.ok<5ms`, `ko=0` or `count=expected` (see
    /// gatling/README.md); repeat for each.
    #[arg(long = "assert", value_name = "CONDITION", value_parser = Assertion::parse)]
    pub assertions: Vec<Assertion>,
    /// Add ko=0, count=expected and count=created to the conditions.
    #[arg(long)]
    pub strict: bool,
    /// Write each condition as a JUnit XML test case into FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

impl CheckOptions {
    /// The conditions judged: those given, with `--strict`'s; `--strict`'s alone when none is given, so
    /// that every verdict says whether the run stored what it should have.
    pub fn judged(&self) -> Vec<Assertion> {
        let mut judged = self.assertions.clone();
        if self.strict || judged.is_empty() {
            judged.extend(assertion::defaults());
        }
        judged
    }

    /// Whether a failed verdict fails the process: only when asked, by a condition or `--strict`.
    pub fn enforced(&self) -> bool {
        self.strict || !self.assertions.is_empty()
    }
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

    fn parse_words(line: &str) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("replay").chain(line.split_whitespace()))
            .map(|cli| cli.command)
    }

    #[test]
    fn run_takes_defaults_and_repeated_metrics() {
        let Command::Run { options, checks } =
            parse_words("run --payloads p.tsv --terms t.tsv --out out --metrics http://127.0.0.1:8081/metrics --metrics http://127.0.0.1:8082/metrics --strict").unwrap()
        else {
            panic!("not a run");
        };
        assert!(checks.strict && checks.enforced());
        assert_eq!(options.base_url, "http://localhost:9999");
        assert_eq!((options.scale, options.rate), (1.0, 1.0));
        assert_eq!(options.seed, simulation::DEFAULT_SEED);
        assert_eq!(options.metrics.len(), 2);
        assert_eq!(options.stack_json, None);
    }

    #[test]
    fn run_takes_scale_rate_seed_and_stack_figures() {
        let Command::Run { options, checks } = parse_words(
            "run --payloads p --terms t --out o --base-url http://127.0.0.1:9999 --scale 0.2 --rate 3 --seed -4 --stack-json s.json",
        )
        .unwrap() else {
            panic!("not a run");
        };
        assert!(!checks.enforced());
        assert_eq!(checks.judged().len(), assertion::DEFAULTS.len());
        assert_eq!(options.base_url, "http://127.0.0.1:9999");
        assert_eq!((options.scale, options.rate, options.seed), (0.2, 3.0, -4));
        assert_eq!(options.stack_json, Some(PathBuf::from("s.json")));
    }

    #[test]
    fn assertions_are_repeated_and_strict_adds_the_defaults() {
        let Command::Report { checks, .. } =
            parse_words("report --out o --assert p99.ok<5ms --assert ko%<1 --junit j.xml").unwrap()
        else {
            panic!("not a report");
        };
        let texts = |checks: &CheckOptions| {
            checks
                .judged()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&checks), ["p99.ok<5ms", "ko%<1"]);
        assert!(checks.enforced());
        assert_eq!(checks.junit, Some(PathBuf::from("j.xml")));
        let Command::Report { checks, .. } =
            parse_words("report --out o --assert p99.ok<5ms --strict").unwrap()
        else {
            panic!("not a report");
        };
        assert_eq!(
            texts(&checks),
            ["p99.ok<5ms", "ko=0", "count=expected", "count=created"]
        );
    }

    #[test]
    fn judge_takes_a_report_and_a_count() {
        let Command::Judge {
            report,
            count,
            checks,
        } = parse_words("judge target/gatling/run --count 46300 --assert ko=0").unwrap()
        else {
            panic!("not judge");
        };
        assert_eq!(report, PathBuf::from("target/gatling/run"));
        assert_eq!(count, Some(46300));
        assert_eq!(checks.judged().len(), 1);
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
            "report --out o --assert p99<fast",
            "compare a",
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
