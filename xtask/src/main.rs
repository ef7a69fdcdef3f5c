//! Development automation: `cargo xtask <command>`.

mod cgroup;
mod compose;
mod containers;
mod delivery;
mod engine;
mod fault;
mod images;
mod nginx;
mod postgres;
mod stack;
mod stress;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>
commands:
  up      start the native stack (PostgreSQL, two replicas, nginx on :9999) under the
          compose file's limits
  down    stop the native stack and remove its cgroups and files
  stress [--scale F] [--out DIR] [--strict]
          replay the contest's stress test against a fresh native stack
  images [--rebuild]
          build the compose files' images with podman or docker, without Nix or a registry
  compose-up | compose-down
          start (images built, health awaited, cgroup limits checked) or stop the
          host-network compose stack, docker/compose.host.yml, with podman or docker
  compose-stress [--scale F] [--out DIR] [--strict]
          replay the stress test against a fresh compose stack, then tear it down
  check-delivery
          check the flake, compose files, workflows and nginx config by static means";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let outcome = match command.as_str() {
        "up" => stack::up(rest),
        "down" => stack::down(rest),
        "stress" => stress::stress(rest),
        "images" => images::images(rest),
        "compose-up" => containers::compose_up(rest),
        "compose-down" => containers::compose_down(rest),
        "compose-stress" => containers::compose_stress(rest),
        "check-delivery" => delivery::check_delivery(rest),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
