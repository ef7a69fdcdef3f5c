//! `cargo xtask compose-up`, `compose-down` and `compose-stress`: `docker/compose.host.yml` as
//! containers, with podman (through podman-compose) where no Docker engine runs, or Docker.
//!
//! The host-network file puts no bridge between the services: they meet on loopback ports, and
//! the load goes to 127.0.0.1 only.
//! After start, each container's cgroup must hold exactly the CPU and memory limits the compose
//! file gives its service: a compose front end that dropped `deploy.resources.limits` would
//! otherwise go unnoticed and the run would measure an unlimited stack.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cgroup::{self, Cgroup};
use crate::compose::{self, Limits};
use crate::engine::{self, Engine};
use crate::images;
use crate::stack::{NGINX_PORT, REPLICAS, repo_root};
use crate::stress::{self, Measured};

const COMPOSE_FILE: &str = "docker/compose.host.yml";
/// The stack's loopback ports; nothing else may hold them when it starts.
const PORTS: [u16; 4] = [5432, REPLICAS[0].1, REPLICAS[1].1, NGINX_PORT];
/// Creating the cluster, then the replicas' 30 s wait for it, on a loaded machine.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(180);
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The lines of each container's log shown when something fails (all of it is kept on disk).
const LOG_TAIL_LINES: usize = 40;

pub fn compose_up(args: &[String]) -> Result<(), String> {
    if let Some(extra) = args.first() {
        return Err(format!("compose-up takes no arguments, got {extra:?}"));
    }
    let stack = ContainerStack::start()?;
    stack.print();
    println!(
        "the API answers on http://127.0.0.1:{NGINX_PORT}; stop it with: cargo xtask compose-down"
    );
    Ok(())
}

pub fn compose_down(args: &[String]) -> Result<(), String> {
    if let Some(extra) = args.first() {
        return Err(format!("compose-down takes no arguments, got {extra:?}"));
    }
    let engine = Engine::detect()?;
    stop(engine)?;
    println!("the compose stack is down, its database volume removed");
    Ok(())
}

/// `compose-stress [--scale F] [--out DIR] [--strict]`: the replay against a fresh compose
/// stack, which is torn down afterwards; on failure the containers' logs are kept in DIR/logs.
/// The replay is built along with the API's image.
pub fn compose_stress(args: &[String]) -> Result<(), String> {
    let options = stress::Options::parse("compose-stress", args)?;
    if options.preload > 0 || options.fault.is_some() {
        return Err(
            "--preload and --fault are for the native stack: cargo xtask stress".to_owned(),
        );
    }
    let engine = Engine::detect()?;
    // A fresh stack: an empty database for the counts, new cgroups for the figures.
    stop(engine)?;
    let outcome = ContainerStack::start().and_then(|stack| {
        stack.print();
        let services: Vec<Measured> = stack
            .containers
            .iter()
            .map(|container| Measured {
                name: container.service.clone(),
                cgroup: container.cgroup.clone(),
                limits: container.limits,
            })
            .collect();
        let outcome = stress::replay_and_report(&services, &options, None);
        if outcome.is_err() {
            stack.save_logs(&options.out);
        }
        outcome
    });
    if let Err(error) = &outcome {
        eprintln!("error: {error}");
    }
    stop(engine)?;
    outcome.map_err(|_| "the compose stress run failed (see above)".to_owned())
}

/// The compose stack's containers, running and healthy.
struct ContainerStack {
    engine: Engine,
    containers: Vec<Container>,
}

struct Container {
    service: String,
    id: String,
    limits: Limits,
    cgroup: Cgroup,
}

impl ContainerStack {
    /// Builds the images (kept when unchanged), starts the stack, waits until it is healthy and
    /// checks every container's limits; on failure it shows the logs and stops what it started.
    fn start() -> Result<ContainerStack, String> {
        let engine = Engine::detect()?;
        let file = compose_file();
        let services = compose::read(&file)?;
        let resolved = engine.resolved_compose(&file)?;
        for service in resolved.images.keys() {
            if engine
                .service_container(&resolved.project, service)?
                .is_some()
            {
                return Err(format!(
                    "the compose stack is already up ({service} exists); stop it first with: \
                     cargo xtask compose-down"
                ));
            }
        }
        images::prepare(engine, false)?;
        // Checked last, as building the images can take minutes.
        for port in PORTS {
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                return Err(format!(
                    "port {port} is in use on 127.0.0.1: another stack is up (cargo xtask down, \
                     cargo xtask compose-down?); the compose stack needs {PORTS:?}"
                ));
            }
        }
        let launched = engine::run(engine.compose(&file).args(["up", "--detach", "--no-build"]));

        let mut containers = Vec::new();
        for service in resolved.images.keys() {
            if let Some(id) = engine.service_container(&resolved.project, service)? {
                containers.push((service.clone(), id));
            }
        }
        let checked = launched
            .and_then(|()| {
                if containers.len() == resolved.images.len() {
                    Ok(())
                } else {
                    Err(format!("compose started {} of {} services", containers.len(), resolved.images.len()))
                }
            })
            .and_then(|()| wait_until_healthy(engine, &containers))
            .and_then(|()| {
                containers
                    .iter()
                    .map(|(service, id)| {
                        let limits = services
                            .get(service)
                            .and_then(|definition| definition.limits)
                            .ok_or_else(|| {
                                format!("{COMPOSE_FILE}: service {service} has no deploy.resources.limits")
                            })?;
                        let cgroup = container_cgroup(engine, id)?;
                        check_limits(service, &limits, &cgroup)?;
                        Ok(Container {
                            service: service.clone(),
                            id: id.clone(),
                            limits,
                            cgroup,
                        })
                    })
                    .collect::<Result<Vec<Container>, String>>()
            });
        match checked {
            Ok(containers) => Ok(ContainerStack { engine, containers }),
            Err(error) => {
                for (service, id) in &containers {
                    show_log_tail(engine, service, id);
                }
                stop(engine)?;
                Err(error)
            }
        }
    }

    fn print(&self) {
        const MIB: f64 = (1 << 20) as f64;
        println!(
            "{:<8} {:<14} {:>9} {:>12}  limits in the cgroup",
            "service", "container", "CPU limit", "memory MiB"
        );
        for container in &self.containers {
            println!(
                "{:<8} {:<14} {:>9.2} {:>12.0}  equal to {COMPOSE_FILE}",
                container.service,
                &container.id[..12.min(container.id.len())],
                container.limits.cpus,
                container.limits.memory_bytes as f64 / MIB,
            );
        }
    }

    /// Every container's log, in `out/logs`, and the end of each on the terminal.
    fn save_logs(&self, out: &Path) {
        let dir = out.join("logs");
        for container in &self.containers {
            let log = container_log(self.engine, &container.id);
            let path = dir.join(format!("{}.log", container.service));
            if let Err(error) =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &log))
            {
                eprintln!("cannot write {}: {error}", path.display());
            }
            print_tail(&container.service, &log);
        }
        println!("container logs: {}", dir.display());
    }
}

fn compose_file() -> PathBuf {
    repo_root().join(COMPOSE_FILE)
}

/// Removes the stack's containers and its database volume, so the next start is empty. Quiet
/// unless it fails: podman-compose reports every container it finds missing.
fn stop(engine: Engine) -> Result<(), String> {
    engine::capture(engine.compose(&compose_file()).args(["down", "--volumes"])).map(drop)
}

/// Waits until every container with a healthcheck reports healthy and every other one runs and
/// accepts connections on nginx's port. Podman without systemd has no timer to run the checks,
/// so they are run here; Docker runs its own and is only asked.
fn wait_until_healthy(engine: Engine, containers: &[(String, String)]) -> Result<(), String> {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    let mut waiting: Vec<&(String, String)> = containers.iter().collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for entry in waiting {
            let (service, id) = entry;
            let status = engine.inspect(id, "{{.State.Status}}")?;
            if status != "running" && status != "created" {
                return Err(format!("{service} is {status} instead of running"));
            }
            let has_healthcheck = !engine
                .inspect(id, "{{if .Config.Healthcheck}}yes{{end}}")?
                .is_empty();
            let ready = if !has_healthcheck {
                status == "running"
                    && TcpStream::connect_timeout(
                        &([127, 0, 0, 1], NGINX_PORT).into(),
                        POLL_INTERVAL,
                    )
                    .is_ok()
            } else if engine == Engine::Podman {
                engine::succeeds(engine.command().args(["healthcheck", "run", id]))
            } else {
                engine.inspect(id, "{{.State.Health.Status}}")? == "healthy"
            };
            if !ready {
                still.push(entry);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let names: Vec<&str> = waiting
                .iter()
                .map(|(service, _)| service.as_str())
                .collect();
            return Err(format!(
                "not healthy after {} s: {}",
                HEALTH_TIMEOUT.as_secs(),
                names.join(", ")
            ));
        }
        sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// The cgroup of a container's main process. /proc/PID/cgroup names it relative to each
/// hierarchy's root, which podman and Docker hosts mount at /sys/fs/cgroup/CONTROLLERS (v1) or
/// /sys/fs/cgroup (v2).
fn container_cgroup(engine: Engine, id: &str) -> Result<Cgroup, String> {
    let pid = engine.inspect(id, "{{.State.Pid}}")?;
    let path = format!("/proc/{pid}/cgroup");
    let membership =
        std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
    Ok(cgroup_of(&membership, Path::new("/sys/fs/cgroup")))
}

fn cgroup_of(membership: &str, root: &Path) -> Cgroup {
    let v1 = |controller: &str| {
        cgroup::v1_membership(membership, controller)
            .map(|(controllers, path)| root.join(controllers).join(path.trim_start_matches('/')))
    };
    match (v1("cpu"), v1("cpuacct"), v1("memory")) {
        (Some(cpu), Some(cpuacct), Some(memory)) => Cgroup::V1 {
            cpu,
            cpuacct,
            memory,
        },
        _ => Cgroup::V2 {
            dir: membership
                .lines()
                .find_map(|line| line.strip_prefix("0::"))
                .map_or_else(
                    || root.to_path_buf(),
                    |path| root.join(path.trim_start_matches('/')),
                ),
        },
    }
}

/// Fails unless the cgroup's CPU quota and memory limit are `limits`.
fn check_limits(service: &str, limits: &Limits, cgroup: &Cgroup) -> Result<(), String> {
    let (quota, period, memory) = match cgroup {
        Cgroup::V1 { cpu, memory, .. } => (
            read_value(&cpu.join("cpu.cfs_quota_us"))?,
            read_value(&cpu.join("cpu.cfs_period_us"))?,
            read_value(&memory.join("memory.limit_in_bytes"))?,
        ),
        Cgroup::V2 { dir } => {
            let cpu_max = read_value(&dir.join("cpu.max"))?;
            let (quota, period) = cpu_max.split_once(' ').unwrap_or((&cpu_max, ""));
            (
                quota.to_owned(),
                period.to_owned(),
                read_value(&dir.join("memory.max"))?,
            )
        }
    };
    // The quota is whole microseconds of the period, so the ratio is within one of them.
    let cpus_match = match (quota.parse::<f64>(), period.parse::<f64>()) {
        (Ok(quota), Ok(period)) if quota > 0.0 && period > 0.0 => {
            (quota / period - limits.cpus).abs() <= 1.0 / period
        }
        _ => false,
    };
    let memory_matches = memory.parse::<u64>().ok() == Some(limits.memory_bytes);
    if cpus_match && memory_matches {
        Ok(())
    } else {
        Err(format!(
            "{service}: the container's cgroup has CPU quota {quota}/{period} and memory limit {memory}, \
             but {COMPOSE_FILE} gives {} CPUs and {} bytes",
            limits.cpus, limits.memory_bytes
        ))
    }
}

fn read_value(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// A container's output, standard output and error together.
fn container_log(engine: Engine, id: &str) -> String {
    match engine
        .command()
        .args(["logs", id])
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) => {
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr)
        }
        Err(error) => format!("cannot run {} logs: {error}", engine.program()),
    }
}

fn show_log_tail(engine: Engine, service: &str, id: &str) {
    print_tail(service, &container_log(engine, id));
}

fn print_tail(service: &str, log: &str) {
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    eprintln!("--- {service}: last {} lines of its log", tail.len());
    for line in tail {
        eprintln!("{service} | {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_paths_follow_each_controller() {
        let membership = "\
9:name=systemd:/libpod_parent/libpod-abc
4:memory:/libpod_parent/libpod-abc
2:cpu,cpuacct:/libpod_parent/libpod-abc
0::/libpod_parent/libpod-abc
";
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            cgroup_of(membership, root),
            Cgroup::V1 {
                cpu: root.join("cpu,cpuacct/libpod_parent/libpod-abc"),
                cpuacct: root.join("cpu,cpuacct/libpod_parent/libpod-abc"),
                memory: root.join("memory/libpod_parent/libpod-abc"),
            }
        );
        assert_eq!(
            cgroup_of("0::/system.slice/docker-abc.scope\n", root),
            Cgroup::V2 {
                dir: root.join("system.slice/docker-abc.scope")
            }
        );
    }

    #[test]
    fn limits_are_read_back_from_cgroup_files() {
        let dir = std::env::temp_dir().join(format!("rinha-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, value: &str| std::fs::write(dir.join(name), value).unwrap();
        write("cpu.cfs_quota_us", "25000\n");
        write("cpu.cfs_period_us", "100000\n");
        write("memory.limit_in_bytes", "268435456\n");
        let cgroup = Cgroup::V1 {
            cpu: dir.clone(),
            cpuacct: dir.clone(),
            memory: dir.clone(),
        };
        let limits = Limits {
            cpus: 0.25,
            memory_bytes: 256 << 20,
        };
        assert!(check_limits("api1", &limits, &cgroup).is_ok());
        let error = check_limits(
            "api1",
            &Limits {
                cpus: 0.5,
                ..limits
            },
            &cgroup,
        )
        .unwrap_err();
        assert!(error.contains("25000/100000"), "{error}");
        write("cpu.cfs_quota_us", "-1\n");
        assert!(check_limits("api1", &limits, &cgroup).is_err());
        write("cpu.cfs_quota_us", "25000\n");
        write("memory.limit_in_bytes", "9223372036854771712\n");
        assert!(check_limits("api1", &limits, &cgroup).is_err());

        write("cpu.max", "85000 100000\n");
        write("memory.max", "max\n");
        let v2 = Cgroup::V2 { dir: dir.clone() };
        let db = Limits {
            cpus: 0.85,
            memory_bytes: 2304 << 20,
        };
        assert!(check_limits("db", &db, &v2).is_err());
        write("memory.max", &(2304u64 << 20).to_string());
        assert!(check_limits("db", &db, &v2).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
