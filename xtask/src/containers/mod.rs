//! `cargo xtask compose-up`, `compose-down` and `compose-stress`: `docker/compose.host.yml` as
//! containers, with Docker where its daemon answers and podman (through podman-compose)
//! otherwise; `CONTAINER_ENGINE=docker|podman` chooses.
//!
//! The host-network file puts no bridge between the services: they meet on loopback ports, and
//! the load goes to 127.0.0.1 only. After start, each container's cgroup must hold exactly the
//! CPU and memory limits the compose file gives its service: a compose front end that dropped
//! `deploy.resources.limits` would otherwise go unnoticed and the run would measure an
//! unlimited stack.

pub mod delivery;
pub mod engine;
pub mod images;
pub mod kubernetes;

use std::net::TcpStream;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

use crate::cgroup::Cgroup;
use crate::runs::stress::RunArgs;
use crate::runs::stress::{self, Measured};
use crate::topology::{COMPOSE_FILE, HOST_COMPOSE_FILE, Topology};
use crate::workspace::{build_release, ensure_ports_free, quietly, repo_root, run_quietly};
use engine::Engine;

/// Creating the cluster, then the replicas' 30 s wait for it, on a loaded machine.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(180);
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The lines of each container's log shown when something fails (all of it is kept on disk).
const LOG_TAIL_LINES: usize = 40;

pub fn compose_up(sh: &Shell) -> Result<()> {
    let stack = ContainerStack::start(sh, Engine::detect(sh)?)?;
    stack.print();
    let port = Topology::load(&repo_root())?.load_balancer_port;
    println!("the API answers on http://127.0.0.1:{port}; stop it with: cargo xtask compose-down");
    Ok(())
}

pub fn compose_down(sh: &Shell) -> Result<()> {
    stop(sh, Engine::detect(sh)?)?;
    println!("the compose stack is down, its database volume removed");
    Ok(())
}

/// The replay against a fresh compose stack, which is torn down afterwards; on failure the
/// containers' logs are kept in OUT/logs. The replay is built along with the API's image.
pub fn compose_stress(sh: &Shell, args: &RunArgs) -> Result<()> {
    let engine = Engine::detect(sh)?;
    let out = stress::out_dir(args, "compose-stress")?;
    // The replay runs on the host.
    build_release(sh)?;
    // A fresh stack: an empty database for the counts, new cgroups for the figures.
    stop(sh, engine)?;
    let outcome = ContainerStack::start(sh, engine).and_then(|stack| {
        stack.print();
        let topology = Topology::load(&repo_root())?;
        let outcome = stress::replay_and_report(
            sh,
            &topology,
            &Default::default(),
            &stack.containers,
            args,
            &out,
            1.0,
            None,
        );
        if outcome.is_err() {
            let names = stack.containers.iter().map(|container| container.name.clone());
            show_logs(sh, engine, &names.zip(stack.ids).collect::<Vec<_>>(), Some(&out));
        }
        outcome
    });
    if let Err(error) = &outcome {
        eprintln!("error: {error:#}");
    }
    stop(sh, engine)?;
    outcome.context("the compose stress run failed (see above)")
}

/// The compose stack's containers, running and healthy.
struct ContainerStack {
    containers: Vec<Measured>,
    ids: Vec<String>,
}

impl ContainerStack {
    /// Builds the images (kept when unchanged), starts the stack, waits until it is healthy and
    /// checks every container's limits; on failure it shows the logs and stops what it started.
    fn start(sh: &Shell, engine: Engine) -> Result<ContainerStack> {
        let resolved = engine.resolved(sh, HOST_COMPOSE_FILE)?;
        let project = resolved.name.context("the resolved compose model has no name")?;
        for service in resolved.services.keys() {
            if engine.service_container(sh, &project, service)?.is_some() {
                bail!(
                    "the compose stack is already up ({service} exists); stop it first with: cargo xtask compose-down"
                );
            }
        }
        images::prepare(sh, engine, false)?;
        // Checked last, as building the images can take minutes.
        let topology = Topology::load(&repo_root())?;
        ensure_ports_free(&topology.ports(), "compose stack")?;
        let launched =
            engine.compose(sh, HOST_COMPOSE_FILE).args(["up", "--detach", "--no-build"]).run();
        let mut started = Vec::new();
        for service in resolved.services.keys() {
            if let Some(id) = engine.service_container(sh, &project, service)? {
                started.push((service.clone(), id));
            }
        }
        let checked = || -> Result<Vec<Measured>> {
            launched?;
            ensure!(
                started.len() == resolved.services.len(),
                "compose started {} of {} services",
                started.len(),
                resolved.services.len()
            );
            wait_until_healthy(sh, engine, &started, topology.load_balancer_port)?;
            started
                .iter()
                .map(|(service, id)| {
                    let limits = topology.limits(service)?;
                    let pid = engine.inspect(sh, id, "{{.State.Pid}}")?;
                    let membership = sh.read_file(format!("/proc/{pid}/cgroup"))?;
                    let cgroup = Cgroup::of_process(&membership, Path::new("/sys/fs/cgroup"));
                    cgroup.check_limits(&limits).context(service.clone())?;
                    Ok(Measured { name: service.clone(), cgroup, limits })
                })
                .collect()
        };
        match checked() {
            Ok(containers) => Ok(ContainerStack {
                containers,
                ids: started.into_iter().map(|(_, id)| id).collect(),
            }),
            Err(error) => {
                show_logs(sh, engine, &started, None);
                stop(sh, engine)?;
                Err(error)
            }
        }
    }

    fn print(&self) {
        println!(
            "{:<8} {:<14} {:>9} {:>12}  limits in the cgroup",
            "service", "container", "CPU limit", "memory MiB"
        );
        for (Measured { name, limits, .. }, id) in self.containers.iter().zip(&self.ids) {
            let id = &id[..12.min(id.len())];
            let memory = limits.memory_bytes >> 20;
            println!(
                "{name:<8} {id:<14} {:>9.2} {memory:>12}  equal to {COMPOSE_FILE}",
                limits.cpus
            );
        }
    }
}

/// Removes the stack's containers and its database volume, so the next start is empty. Quiet
/// unless it fails: podman-compose reports every container it finds missing.
fn stop(sh: &Shell, engine: Engine) -> Result<()> {
    run_quietly(engine.compose(sh, HOST_COMPOSE_FILE).args(["down", "--volumes"]))
}

/// Waits until every container with a healthcheck reports healthy and every other one runs and
/// accepts connections on the load balancer's port. Podman without systemd has no timer to run
/// the checks, so they are run here; Docker runs its own and is only asked.
fn wait_until_healthy(
    sh: &Shell,
    engine: Engine,
    containers: &[(String, String)],
    port: u16,
) -> Result<()> {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    let mut waiting: Vec<&(String, String)> = containers.iter().collect();
    loop {
        let mut still = Vec::new();
        for entry @ (service, id) in waiting {
            let status = engine.inspect(sh, id, "{{.State.Status}}")?;
            ensure!(
                status == "running" || status == "created",
                "{service} is {status} instead of running"
            );
            let has_healthcheck =
                !engine.inspect(sh, id, "{{if .Config.Healthcheck}}yes{{end}}")?.is_empty();
            let ready = if !has_healthcheck {
                status == "running"
                    && TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), POLL_INTERVAL)
                        .is_ok()
            } else if engine == Engine::Podman {
                quietly(cmd!(sh, "podman healthcheck run {id}")).run().is_ok()
            } else {
                engine.inspect(sh, id, "{{.State.Health.Status}}")? == "healthy"
            };
            if !ready {
                still.push(entry);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let names: Vec<&str> = waiting.iter().map(|(service, _)| service.as_str()).collect();
            bail!("not healthy after {} s: {}", HEALTH_TIMEOUT.as_secs(), names.join(", "));
        }
        sleep(POLL_INTERVAL);
    }
}

/// The end of each container's log on the terminal, and all of it in `out/logs` if given.
fn show_logs(sh: &Shell, engine: Engine, containers: &[(String, String)], out: Option<&Path>) {
    for (service, id) in containers {
        let log = match engine.command(sh).args(["logs", id]).quiet().ignore_status().output() {
            Ok(output) => [output.stdout, output.stderr].concat(),
            Err(error) => error.to_string().into_bytes(),
        };
        let log = String::from_utf8_lossy(&log);
        if let Some(out) = out
            && let Err(error) =
                sh.write_file(out.join("logs").join(format!("{service}.log")), &*log)
        {
            eprintln!("{error}");
        }
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        eprintln!("--- {service}: last {} lines of its log", tail.len());
        for line in tail {
            eprintln!("{service} | {line}");
        }
    }
    if let Some(out) = out {
        println!("container logs: {}", out.join("logs").display());
    }
}
