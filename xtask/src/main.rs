//! Development automation: `cargo xtask <command>`. Every program is run through `xshell`;
//! the topology (services, ports, limits, environment) comes from `docker/compose.yml`.

mod args;
mod cgroup;
mod containers;
#[cfg(test)]
mod module_graph;
mod runs;
mod stack;
mod topology;
mod workspace;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use xshell::Shell;

use crate::args::positive;
use crate::containers::{delivery, engine, images};
use crate::runs::stress::{RunArgs, StressArgs};
use crate::runs::{capacity, http_fuzz, instructions, search_probe, stress};
use crate::stack::{Layout, relay};
use crate::workspace::repo_root;

#[derive(Parser)]
#[command(bin_name = "cargo xtask", about = "Development automation for rinha")]
enum Command {
    /// Start the native stack (PostgreSQL, two replicas, nginx on :9999) under the compose
    /// file's limits.
    Up {
        /// Fill the table with N generated people before the replicas start.
        #[arg(long, value_name = "N", default_value_t = 0)]
        preload: u64,
        #[command(flatten)]
        layout: Layout,
    },
    /// Stop the native stack and remove its cgroups and files.
    Down,
    /// Start again every replica of the native stack that exits (run by `up`).
    #[command(hide = true)]
    Supervise,
    /// Relay connections to PostgreSQL, holding what it sends (run by `up --netns`).
    #[command(hide = true)]
    RelayDatabase(relay::RelayArgs),
    /// Replay the contest's stress test against a fresh native stack.
    Stress(StressArgs),
    /// Find the largest injection rate factor the native stack passes at (0 KO, count =
    /// expected, p99 at most 10 ms), one fresh stack a step.
    Capacity {
        /// Shorten every phase by this factor.
        #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = positive)]
        scale: f64,
    },
    /// Build the compose files' images with podman or docker, without Nix or a registry.
    Images {
        /// Build every image, even those whose inputs have not changed.
        #[arg(long)]
        rebuild: bool,
    },
    /// Start the host-network compose stack (images built, health awaited, cgroup limits
    /// checked).
    ComposeUp,
    /// Stop the host-network compose stack and delete its database volume.
    ComposeDown,
    /// Replay the stress test against a fresh compose stack, then tear it down.
    ComposeStress(RunArgs),
    /// Check the flake, compose files, workflows and configurations by static means.
    CheckDelivery,
    /// Send generated requests, well-formed or not, to each replica's port and through nginx
    /// (the native stack, started if it is not up), failing if a replica's process ends or an
    /// answer is a server error.
    HttpFuzz {
        /// Generated cases, after the fixed regression lines.
        #[arg(long, value_name = "N", default_value_t = 3000)]
        cases: usize,
        /// The generator's seed: the same seed sends the same cases.
        #[arg(long, value_name = "S", default_value_t = 2023)]
        seed: u64,
    },
    /// Count the instructions one replica, and nginx in front of it, execute per request of
    /// each kind, under callgrind (the counts repeat run to run, unlike CPU time).
    Instructions {
        /// Requests of each kind.
        #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        requests: u64,
    },
    /// Time single searches for random terms on one replica of the running native stack (up
    /// with `--preload N --search-index`, say), those that matched nobody and the others apart.
    SearchProbe {
        /// Searches of each kind of term.
        #[arg(long, value_name = "N", default_value_t = 100)]
        rounds: usize,
        /// The generator's seed: the same seed searches the same terms.
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// How long after one search starts the next one does (at least once the one before is
        /// answered): 0 sends them back to back.
        #[arg(long, value_name = "MS", default_value_t = 50)]
        interval_ms: u64,
    },
}

fn main() -> ExitCode {
    match run(Command::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(repo_root());
    match command {
        Command::Up { preload, layout } => stack::up(&sh, preload, &layout),
        Command::Down => stack::down(),
        Command::Supervise => stack::supervise(),
        Command::RelayDatabase(args) => relay::relay(&args),
        Command::Stress(args) => stress::stress(&sh, &args, "stress").map(drop),
        Command::Capacity { scale } => capacity::capacity(&sh, scale),
        Command::Images { rebuild } => images::prepare(&sh, engine::Engine::detect(&sh)?, rebuild),
        Command::ComposeUp => containers::compose_up(&sh),
        Command::ComposeDown => containers::compose_down(&sh),
        Command::ComposeStress(args) => containers::compose_stress(&sh, &args),
        Command::CheckDelivery => delivery::check_delivery(&sh),
        Command::HttpFuzz { cases, seed } => http_fuzz::http_fuzz(&sh, cases, seed),
        Command::Instructions { requests } => instructions::instructions(&sh, requests as usize),
        Command::SearchProbe { rounds, seed, interval_ms } => {
            search_probe::search_probe(rounds, seed, std::time::Duration::from_millis(interval_ms))
        }
    }
}
