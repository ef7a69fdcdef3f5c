//! `cargo xtask up` and `down`: the compose topology as plain processes on loopback.
//! PostgreSQL, two replicas and nginx each run in their own cgroup, with the CPU and memory
//! limits `docker/compose.yml` gives them. What is running is recorded in `.stack/state.json`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid};
use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::compose::{self, Limits};
use crate::nginx;
use crate::postgres::{self, Postgres};

pub const NGINX_PORT: u16 = 9999;
/// The replicas' compose names and ports.
pub const REPLICAS: [(&str, u16); 2] = [("api1", 8081), ("api2", 8082)];
/// PostgreSQL takes the first free port from 5432, the compose stacks' port.
const DATABASE_PORTS: std::ops::RangeInclusive<u16> = 5432..=5499;
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Long enough for PostgreSQL's fast shutdown to write its checkpoint.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A running native stack.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stack {
    /// The cluster, nginx's files and pid files: `.stack/run`, or a temporary directory when
    /// the repository cannot be reached by the accounts the services run as.
    run_dir: PathBuf,
    pub database_port: u16,
    /// In start order.
    pub services: Vec<Service>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// The process started for the service; it starts the rest of the group, if any.
    pid: i32,
    /// The signal for a clean, prompt exit (PostgreSQL's fast shutdown is SIGINT).
    stop_signal: String,
    pub limits: Limits,
    pub cgroup: Cgroup,
}

/// `cargo xtask up [--preload N]`.
pub fn up(args: &[String]) -> Result<(), String> {
    let preload = match args {
        [] => 0,
        [flag, count] if flag == "--preload" => count
            .parse()
            .map_err(|_| format!("--preload {count:?} is not a whole number"))?,
        _ => return Err(format!("usage: cargo xtask up [--preload N], got {args:?}")),
    };
    match Stack::load()? {
        Some(stack) if stack.is_running()? => {
            println!("the stack is already up");
            stack.print();
            return Ok(());
        }
        Some(stale) => {
            println!("some of the stack's processes are gone; stopping the rest first");
            stale.stop()?;
        }
        None => {}
    }
    let stack = Stack::start(preload)?;
    stack.print();
    println!("stop it with: cargo xtask down");
    Ok(())
}

pub fn down(args: &[String]) -> Result<(), String> {
    if let Some(extra) = args.first() {
        return Err(format!("down takes no arguments, got {extra:?}"));
    }
    match Stack::load()? {
        Some(stack) => {
            stack.stop()?;
            println!("the stack is down (logs kept in {})", logs_dir().display());
        }
        None => println!("the stack is not up"),
    }
    Ok(())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository")
        .to_path_buf()
}

pub fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| repo_root().join(dir))
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("release").join(name)
}

pub fn logs_dir() -> PathBuf {
    state_dir().join("logs")
}

fn state_dir() -> PathBuf {
    repo_root().join(".stack")
}

fn state_file() -> PathBuf {
    state_dir().join("state.json")
}

/// Everything `start` needs, checked before anything is built or started.
struct Prerequisites {
    services: std::collections::BTreeMap<String, compose::Service>,
    postgres: Postgres,
    nginx: PathBuf,
    database_port: u16,
}

impl Prerequisites {
    fn check() -> Result<Prerequisites, String> {
        let compose_file = repo_root().join("docker/compose.yml");
        let services = compose::read(&compose_file)?;
        for name in service_names() {
            match services.get(name) {
                Some(service) if service.limits.is_some() => {}
                _ => {
                    return Err(format!(
                        "{}: service {name} with deploy.resources.limits is missing",
                        compose_file.display()
                    ));
                }
            }
        }
        let postgres = Postgres::locate()?;
        let nginx = nginx::locate()?;
        for port in REPLICAS.iter().map(|(_, port)| *port).chain([NGINX_PORT]) {
            if !is_free(port) {
                return Err(format!(
                    "port {port} is in use on 127.0.0.1 (another stack or server?); the native \
                     stack needs 8081, 8082 and 9999"
                ));
            }
        }
        let database_port = DATABASE_PORTS
            .clone()
            .find(|port| is_free(*port))
            .ok_or("no free port for PostgreSQL from 5432 to 5499")?;
        Ok(Prerequisites {
            services,
            postgres,
            nginx,
            database_port,
        })
    }

    fn limits(&self, name: &str) -> Limits {
        self.services[name]
            .limits
            .expect("checked by Prerequisites::check")
    }
}

fn service_names() -> [&'static str; 4] {
    ["db", REPLICAS[0].0, REPLICAS[1].0, "nginx"]
}

impl Stack {
    /// The stack recorded in the state directory, if any.
    pub fn load() -> Result<Option<Stack>, String> {
        let path = state_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|error| format!("{}: {error}; remove it by hand", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("cannot read {}: {error}", path.display())),
        }
    }

    /// Whether every service's own process is still in its group.
    pub fn is_running(&self) -> Result<bool, String> {
        for service in &self.services {
            if !service.cgroup.pids()?.contains(&service.pid) {
                return Ok(false);
            }
        }
        Ok(self.services.len() == service_names().len())
    }

    /// Builds the binaries and starts every service, stopping what it started if one fails.
    pub fn start(preload: u64) -> Result<Stack, String> {
        let prerequisites = Prerequisites::check()?;
        build_release()?;
        let mut stack = Stack {
            run_dir: run_dir()?,
            database_port: prerequisites.database_port,
            services: Vec::new(),
        };
        if let Err(error) = stack.launch(&prerequisites, preload) {
            if let Err(cleanup) = stack.stop() {
                eprintln!("{cleanup}");
            }
            return Err(format!("{error}\n(logs in {})", logs_dir().display()));
        }
        Ok(stack)
    }

    fn launch(&mut self, prerequisites: &Prerequisites, preload: u64) -> Result<(), String> {
        std::fs::create_dir_all(logs_dir())
            .map_err(|error| format!("cannot create {}: {error}", logs_dir().display()))?;
        let postgres = &prerequisites.postgres;

        let data_dir = self.run_dir.join("db").join("data");
        println!(
            "initialising a PostgreSQL cluster in {}",
            data_dir.display()
        );
        postgres.init_cluster(&data_dir, &repo_root().join("docker/postgresql.conf"))?;
        let (server, ready) = self.command("db", &prerequisites.services)?;
        self.start_service("db", server, Signal::SIGINT, prerequisites, ready)?;
        let port = self.database_port;
        postgres.create_database(port)?;
        if preload > 0 {
            let started = Instant::now();
            postgres.preload(
                port,
                &repo_root().join("sql/schema.sql"),
                &mut Command::new(release_binary("replay")),
                preload,
            )?;
            println!(
                "preloaded {preload} people in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }

        for (name, _) in REPLICAS {
            let (replica, ready) = self.command(name, &prerequisites.services)?;
            self.start_service(name, replica, Signal::SIGTERM, prerequisites, ready)?;
        }

        let nginx_dir = self.run_dir.join("nginx");
        create_dir(&nginx_dir)?;
        let template_path = repo_root().join("docker/nginx.conf");
        let template = std::fs::read_to_string(&template_path)
            .map_err(|error| format!("cannot read {}: {error}", template_path.display()))?;
        let config = nginx::derive_config(&template, &nginx_dir)
            .map_err(|error| format!("{}: {error}", template_path.display()))?;
        let config_path = nginx_dir.join("nginx.conf");
        std::fs::write(&config_path, config)
            .map_err(|error| format!("cannot write {}: {error}", config_path.display()))?;
        let error_log = logs_dir().join("nginx-error.log");
        let server = nginx::command(&prerequisites.nginx, &config_path, &nginx_dir, &error_log);
        self.start_service("nginx", server, Signal::SIGTERM, prerequisites, || {
            http_status(NGINX_PORT, "/contagem-pessoas") == Some(200)
        })?;
        match http_status(NGINX_PORT, "/metrics") {
            Some(403 | 404) => Ok(()),
            status => Err(format!(
                "{} exposes /metrics on port {NGINX_PORT} (status {status:?}); it must answer 404",
                template_path.display()
            )),
        }
    }

    /// The command that runs the database or a replica, and the check that it is ready.
    fn command(
        &self,
        name: &str,
        services: &std::collections::BTreeMap<String, compose::Service>,
    ) -> Result<(Command, ReadyCheck), String> {
        if name == "db" {
            let postgres = Postgres::locate()?;
            let db_dir = self.run_dir.join("db");
            let server = postgres.server(&db_dir.join("data"), self.database_port, &db_dir);
            let port = self.database_port;
            return Ok((server, Box::new(move || postgres.is_ready(port))));
        }
        let (_, port) = REPLICAS
            .into_iter()
            .find(|(replica, _)| *replica == name)
            .ok_or_else(|| format!("no command for service {name}"))?;
        let mut replica = Command::new(release_binary("rinha"));
        replica
            .envs(&services[name].environment)
            // The replicas run on the host's own network: loopback only, behind nginx.
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", self.database_url());
        let ready = move || {
            Command::new(release_binary("rinha"))
                .arg("healthcheck")
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        Ok((replica, Box::new(ready)))
    }

    /// Starts `command` in the service's own cgroup, records it, and waits until `ready`.
    fn start_service(
        &mut self,
        name: &str,
        command: Command,
        stop_signal: Signal,
        prerequisites: &Prerequisites,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let limits = prerequisites.limits(name);
        let cgroup = Cgroup::create(name, &limits)?;
        let mut child = match spawn(name, &cgroup, command, false) {
            Ok(child) => child,
            Err(error) => {
                let _ = cgroup.remove();
                return Err(error);
            }
        };
        self.services.push(Service {
            name: name.to_owned(),
            pid: child.id() as i32,
            stop_signal: stop_signal.as_str().to_owned(),
            limits,
            cgroup,
        });
        self.save()?;
        let started = Instant::now();
        wait_until_ready(name, &mut child, &log_path(name), &mut ready)?;
        println!(
            "{name} is up after {:.1} s (pid {}, {} CPU, {} MiB)",
            started.elapsed().as_secs_f64(),
            child.id(),
            limits.cpus,
            limits.memory_bytes >> 20
        );
        Ok(())
    }

    /// Stops the database or a replica with `signal`, waits `pause`, and starts it again in
    /// the same cgroup (so its CPU time and peak memory keep counting), until it is ready.
    pub fn restart(&mut self, name: &str, signal: Signal, pause: Duration) -> Result<(), String> {
        let index = self.index_of(name)?;
        self.signal(name, signal)?;
        if !self.services[index].wait_until_empty(STOP_TIMEOUT)? {
            return Err(format!(
                "{name} did not stop within {} s of {signal}",
                STOP_TIMEOUT.as_secs()
            ));
        }
        sleep(pause);
        let services = compose::read(&repo_root().join("docker/compose.yml"))?;
        let (command, mut ready) = self.command(name, &services)?;
        let mut child = spawn(name, &self.services[index].cgroup, command, true)?;
        self.services[index].pid = child.id() as i32;
        self.save()?;
        wait_until_ready(name, &mut child, &log_path(name), &mut ready)
    }

    /// Sends `signal` to the service's own process.
    pub fn signal(&self, name: &str, signal: Signal) -> Result<(), String> {
        let service = &self.services[self.index_of(name)?];
        kill(Pid::from_raw(service.pid), signal)
            .map_err(|error| format!("cannot send {signal} to {name}: {error}"))
    }

    /// Sends `signal` to every process of the service (PostgreSQL's backends too), as a
    /// container pause would reach them all.
    pub fn signal_every(&self, name: &str, signal: Signal) -> Result<(), String> {
        let service = &self.services[self.index_of(name)?];
        for pid in service.cgroup.pids()? {
            kill(Pid::from_raw(pid), signal)
                .map_err(|error| format!("cannot send {signal} to {name} ({pid}): {error}"))?;
        }
        Ok(())
    }

    fn index_of(&self, name: &str) -> Result<usize, String> {
        self.services
            .iter()
            .position(|service| service.name == name)
            .ok_or_else(|| format!("the stack has no service {name}"))
    }

    pub fn database_url(&self) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            postgres::USER,
            postgres::PASSWORD,
            self.database_port,
            postgres::DATABASE
        )
    }

    fn save(&self) -> Result<(), String> {
        let json = serde_json::to_string_pretty(self).expect("the state serialises");
        std::fs::write(state_file(), json)
            .map_err(|error| format!("cannot write {}: {error}", state_file().display()))
    }

    /// Stops the services in reverse start order and removes their groups and files.
    pub fn stop(self) -> Result<(), String> {
        let failures: Vec<String> = self
            .services
            .iter()
            .rev()
            .filter_map(|service| service.stop().err())
            .collect();
        if !failures.is_empty() {
            // Keep the record so that a later `down` can retry.
            return Err(failures.join("\n"));
        }
        for path in [&self.run_dir, &state_file()] {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            if let Err(error) = removed
                && error.kind() != std::io::ErrorKind::NotFound
            {
                return Err(format!("cannot remove {}: {error}", path.display()));
            }
        }
        Ok(())
    }

    fn print(&self) {
        println!(
            "nginx on http://127.0.0.1:{NGINX_PORT}, replicas on :{} and :{}, PostgreSQL on {}",
            REPLICAS[0].1,
            REPLICAS[1].1,
            self.database_url()
        );
        println!(
            "{:<8} {:>8} {:>6} {:>10}",
            "service", "pid", "CPUs", "memory"
        );
        for service in &self.services {
            println!(
                "{:<8} {:>8} {:>6} {:>6} MiB",
                service.name,
                service.pid,
                service.limits.cpus,
                service.limits.memory_bytes >> 20
            );
        }
        println!("logs in {}", logs_dir().display());
    }
}

impl Service {
    fn stop(&self) -> Result<(), String> {
        let signal: Signal = self
            .stop_signal
            .parse()
            .map_err(|_| format!("{}: unknown stop signal {}", self.name, self.stop_signal))?;
        // Only a process still in the group is ours: its pid may have been reused otherwise.
        if self.cgroup.pids()?.contains(&self.pid) {
            let _ = kill(Pid::from_raw(self.pid), signal);
        }
        if !self.wait_until_empty(STOP_TIMEOUT)? {
            eprintln!(
                "{} did not stop within {} s of {signal}; killing it",
                self.name,
                STOP_TIMEOUT.as_secs()
            );
            for pid in self.cgroup.pids()? {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if !self.wait_until_empty(Duration::from_secs(5))? {
                return Err(format!(
                    "{}: processes {:?} survived SIGKILL",
                    self.name,
                    self.cgroup.pids()?
                ));
            }
        }
        self.cgroup.remove()
    }

    fn wait_until_empty(&self, timeout: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + timeout;
        while !self.cgroup.pids()?.is_empty() {
            if Instant::now() > deadline {
                return Ok(false);
            }
            sleep(POLL_INTERVAL);
        }
        Ok(true)
    }
}

/// Builds the service and the replay in release mode, together: built apart, Cargo unifies
/// their dependencies' features differently and each build relinks the other's binary.
pub fn build_release() -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--package",
            "rinha",
            "--package",
            "replay",
        ])
        .current_dir(repo_root())
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build --release failed ({status})"))
    }
}

/// PostgreSQL's owner and nginx's workers (nobody) must reach the run directory; a checkout
/// under a private home directory would shut them out, so that case uses the temp directory.
fn run_dir() -> Result<PathBuf, String> {
    let in_repository = state_dir().join("run");
    let reachable = !Uid::effective().is_root() || world_traversable(&repo_root());
    let dir = if reachable {
        in_repository
    } else {
        std::env::temp_dir().join(format!("rinha-stack-{}", std::process::id()))
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|error| format!("cannot clear {}: {error}", dir.display()))?;
    }
    create_dir(&dir)?;
    Ok(dir)
}

fn world_traversable(dir: &Path) -> bool {
    dir.ancestors().all(|ancestor| {
        std::fs::metadata(ancestor).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0)
    })
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn wait_until_ready(
    name: &str,
    child: &mut Child,
    log: &Path,
    ready: &mut impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
            return Err(format!(
                "{name} exited while starting ({status}); see {}",
                log.display()
            ));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{name} not ready after {} s; see {}",
                START_TIMEOUT.as_secs(),
                log.display()
            ));
        }
        sleep(POLL_INTERVAL);
    }
}

/// Tells whether a service just started answers yet.
type ReadyCheck = Box<dyn FnMut() -> bool>;

fn log_path(name: &str) -> PathBuf {
    logs_dir().join(format!("{name}.log"))
}

/// Spawns `command` into `cgroup`, in its own process group, its output going to the service's
/// log (appended to when the service is started again).
fn spawn(name: &str, cgroup: &Cgroup, mut command: Command, append: bool) -> Result<Child, String> {
    cgroup.attach_on_exec(&mut command)?;
    let path = log_path(name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let log_copy = log.try_clone().map_err(|error| error.to_string())?;
    command
        .stdin(Stdio::null())
        .stdout(log_copy)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for xtask does not reach the stack.
        .process_group(0)
        .spawn()
        .map_err(|error| format!("cannot start {name}: {error}"))
}

/// The status code of `GET path` on a loopback port, or `None` if nothing sensible answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    let head = std::str::from_utf8(&head).ok()?;
    head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}
