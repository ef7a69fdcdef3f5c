//! Development automation: `cargo xtask <command>`. Every program is run through `xshell`;
//! the topology (services, ports, limits, environment) comes from `docker/compose.yml`.

mod capacity;
mod cgroup;
mod containers;
mod delivery;
mod fault;
mod http_fuzz;
mod images;
mod instructions;
mod kubernetes;
mod netns;
mod nginx;
mod postgres;
mod stack;
mod stress;
mod topology;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::{Args, Parser};
use xshell::{Cmd, Shell};

use crate::fault::Fault;
use crate::stack::Layout;

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
}

/// The options every stress run takes.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Shorten every phase by this factor.
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive)]
    pub scale: f64,
    /// Where the report goes; by default target/<command>/<seconds since 1970>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Fail on any KO or any count that differs from the expected one (the replay's ko=0,
    /// count=expected and count=created).
    #[arg(long)]
    pub strict: bool,
    /// A condition the run must meet, passed to the replay (`p99.ok<5ms`, `ko=0`,
    /// `count=expected`; see gatling/README.md); repeat for each. A failed one fails the command.
    #[arg(long = "assert", value_name = "CONDITION")]
    pub assertions: Vec<String>,
    /// Write the conditions' results as a JUnit XML report into FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct StressArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Fill the table with N generated people before the replicas start.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preload: u64,
    /// Inject one fault during the replay: restart-replicas, kill-replica, restart-db,
    /// pause-db, or with --netns partition-replica or slow-link, at S seconds (by default the
    /// middle of the run).
    #[arg(long, value_name = "KIND[@S]", value_parser = Fault::parse)]
    pub fault: Option<Fault>,
    #[command(flatten)]
    pub layout: Layout,
    /// Multiply every injection rate by F, durations kept.
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive)]
    pub rate: f64,
}

pub fn positive(text: &str) -> Result<f64> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => bail!("{text:?} is not a positive number"),
    }
}

pub fn replica_count(text: &str) -> Result<usize> {
    match text.parse::<usize>() {
        Ok(count) if (1..=topology::MAX_REPLICAS).contains(&count) => Ok(count),
        _ => bail!("{text:?} is not a number of replicas from 1 to {}", topology::MAX_REPLICAS),
    }
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
        Command::Stress(args) => stress::stress(&sh, &args, "stress").map(drop),
        Command::Capacity { scale } => capacity::capacity(&sh, scale),
        Command::Images { rebuild } => {
            images::prepare(&sh, containers::Engine::detect(&sh)?, rebuild)
        }
        Command::ComposeUp => containers::compose_up(&sh),
        Command::ComposeDown => containers::compose_down(&sh),
        Command::ComposeStress(args) => containers::compose_stress(&sh, &args),
        Command::CheckDelivery => delivery::check_delivery(&sh),
        Command::HttpFuzz { cases, seed } => http_fuzz::http_fuzz(&sh, cases, seed),
        Command::Instructions { requests } => instructions::instructions(&sh, requests as usize),
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository")
        .to_path_buf()
}

/// A release binary of this workspace, in `CARGO_TARGET_DIR` when it is set.
pub fn release_binary(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    repo_root().join(target).join("release").join(name)
}

/// Builds the service and the replay in release mode, together: built apart, Cargo unifies
/// their dependencies' features differently and each build relinks the other's binary.
pub fn build_release(sh: &Shell) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    xshell::cmd!(sh, "{cargo} build --release --package rinha --package replay").run()?;
    Ok(())
}

/// Silenced: for commands whose success is all that counts.
pub fn quietly(command: Cmd<'_>) -> Cmd<'_> {
    command.quiet().ignore_stdout().ignore_stderr()
}

/// Runs a setup step or a checker quietly; what it printed (on either stream) becomes the error
/// when it fails.
pub fn run_quietly(command: Cmd<'_>) -> Result<()> {
    let shown = command.to_string();
    let output = command.quiet().ignore_status().output()?;
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{shown} ({}):\n{stdout}{}", output.status, stderr.trim_end());
    }
    Ok(())
}

/// Fails unless every one of `ports` is free on loopback, which `stack` (a native or compose
/// stack) needs.
pub fn ensure_ports_free(ports: &[u16], stack: &str) -> Result<()> {
    for port in ports {
        anyhow::ensure!(
            std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok(),
            "port {port} is in use on 127.0.0.1: another stack or server is up (cargo xtask down, cargo xtask compose-down?); the {stack} needs {ports:?}"
        );
    }
    Ok(())
}

/// Seconds since 1970, to the microsecond.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is past 1970").as_secs_f64()
}
