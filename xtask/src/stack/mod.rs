//! `cargo xtask up` and `down`: the compose topology as plain processes on loopback.
//! PostgreSQL, the replicas and nginx each run in their own cgroup, with the CPU and memory
//! limits `docker/compose.yml` gives them. What is running is recorded in `.stack/state.json`.
//!
//! A supervisor, a process of its own (`cargo xtask supervise`, started with the stack), keeps
//! the replicas running as compose's `restart: unless-stopped` does: a replica that exits, for
//! whatever reason, is started again at once in its cgroup, and its log
//! (`.stack/logs/supervise.log`) says so. `down` stops the supervisor first.
//!
//! Across namespaces (`--netns`) one more process, the relay (`relay.rs`), carries the
//! replicas' connections to PostgreSQL, so that the database link can be slowed.

pub mod netns;
pub mod nginx;
pub mod postgres;
mod preloaded;
pub mod relay;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid};
use serde::{Deserialize, Serialize};
use xshell::{Cmd, Shell, cmd};

use crate::cgroup::Cgroup;
use crate::topology::{Limits, Topology};
use crate::workspace::{build_release, ensure_ports_free, quietly, release_binary, repo_root};
use netns::Network;
use postgres::Postgres;
use relay::RelayArgs;

const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Long enough for PostgreSQL's fast shutdown to write its checkpoint.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// For a request that checks whether a service answers.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A running native stack.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stack {
    /// The cluster, nginx's files and pid files: `.stack/run`, or a temporary directory when
    /// the repository cannot be reached by the accounts the services run as.
    run_dir: PathBuf,
    /// In start order.
    pub services: Vec<Service>,
    /// Where callgrind writes, when the first replica and the load balancer run under it
    /// (`cargo xtask instructions`).
    pub callgrind: Option<PathBuf>,
    /// The process that starts a replica again when it exits.
    supervisor: Option<i32>,
    /// How many replicas run, when not compose's own.
    #[serde(default)]
    replicas: Option<usize>,
    /// The services' network namespaces, with `--netns`.
    #[serde(default)]
    pub network: Option<Network>,
    /// With `--netns`, the process the replicas reach PostgreSQL through.
    #[serde(default)]
    relay: Option<i32>,
    /// How long the relay holds what PostgreSQL sends, when no fault slows it more.
    #[serde(default)]
    database_delay: Duration,
}

/// How a native stack is laid out.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Layout {
    /// Run N replicas, sharing the CPU, memory and database connections compose gives its two
    /// (by default compose's own).
    #[arg(long, value_name = "N", value_parser = crate::args::replica_count)]
    pub replicas: Option<usize>,
    /// Run PostgreSQL, each replica and nginx each in a network namespace of its own, joined
    /// by veth pairs in 10.231.0.0/24 (needs root); nginx is then reached at its address there.
    #[arg(long)]
    pub netns: bool,
    /// With --netns, what PostgreSQL sends reaches the replicas MS milliseconds later (held by
    /// a relay in its namespace): the database link's round trip, made longer.
    #[arg(long, value_name = "MS", requires = "netns", value_parser = crate::args::positive)]
    pub database_delay_ms: Option<f64>,
    /// Build the search index (`rinha index-search`) once the people are preloaded, before
    /// the replicas start: what a table past one replica's mirror needs.
    #[arg(long)]
    pub search_index: bool,
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

/// What starting a service needs, checked before anything is built or started.
struct Tools {
    topology: Topology,
    postgres: Postgres,
    nginx: PathBuf,
}

pub fn up(sh: &Shell, preload: u64, layout: &Layout) -> Result<()> {
    if let Some(stack) = Stack::load()? {
        if stack.is_running()? {
            println!("the stack is already up");
            return stack.print();
        }
        println!("some of the stack's processes are gone; stopping the rest first");
        stack.stop()?;
    }
    Stack::start(sh, preload, layout, None)?.print()?;
    println!("stop it with: cargo xtask down");
    Ok(())
}

pub fn down() -> Result<()> {
    match Stack::load()? {
        Some(stack) => {
            stack.stop()?;
            println!("the stack is down (logs kept in {})", logs_dir().display());
        }
        None => println!("the stack is not up"),
    }
    Ok(())
}

fn state_dir() -> PathBuf {
    repo_root().join(".stack")
}

fn logs_dir() -> PathBuf {
    state_dir().join("logs")
}

fn state_file() -> PathBuf {
    state_dir().join("state.json")
}

/// The supervisor's command and the name of its log.
pub const SUPERVISOR: &str = "supervise";
/// The relay's command and the name of its log.
pub const RELAY: &str = "relay-database";

/// The delay the relay reads.
fn relay_delay_file() -> PathBuf {
    state_dir().join("database-delay-us")
}

/// Held while the state file is read and written again, by whichever process does it.
fn lock_state() -> Result<std::fs::File> {
    let path = state_dir().join("state.lock");
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// `cargo xtask supervise`: starts every replica of the recorded stack that has exited, again
/// and again, until the stack is gone or has another supervisor.
pub fn supervise() -> Result<()> {
    let sh = Shell::new()?;
    let Some(stack) = Stack::load()? else { return Ok(()) };
    let tools = Tools::load(stack.replicas, stack.network.as_ref())?;
    let me = std::process::id() as i32;
    println!("{} supervising the replicas (pid {me})", timestamp());
    loop {
        sleep(POLL_INTERVAL);
        reap_children();
        let Some(mut stack) = Stack::load()? else { return Ok(()) };
        if stack.supervisor != Some(me) {
            return Ok(());
        }
        for (name, _) in &tools.topology.replicas {
            let index = stack.index_of(name)?;
            let service = &stack.services[index];
            if service.cgroup.pids()?.contains(&service.pid) {
                continue;
            }
            println!("{} {name} (pid {}) exited; starting it again", timestamp(), service.pid);
            let started = Instant::now();
            match stack.run(&sh, &tools, index, true) {
                Ok(()) => println!(
                    "{} {name} is up again after {:.1} s (pid {})",
                    timestamp(),
                    started.elapsed().as_secs_f64(),
                    stack.services[index].pid
                ),
                Err(error) => {
                    println!("{} {name} did not start: {error:#}; trying again", timestamp());
                    sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Collects the replicas this supervisor started that have exited, so none lingers as a
/// zombie.
fn reap_children() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Starts `command`, an xtask process of the stack's (`name` its command and its log's), on its
/// own: it outlives this process. Returns its pid.
fn spawn_helper(mut command: Command, name: &str) -> Result<i32> {
    Ok(spawn_logged(&mut command, name, false)?.id() as i32)
}

/// Spawns `command` for `name`, its output going to `name`'s log (appended to, or replaced).
fn spawn_logged(command: &mut Command, name: &str, append: bool) -> Result<Child> {
    let path = log_path(name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for xtask does not reach the stack.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}

/// Whether `pid` is a live xtask process running `command` (not a zombie, nor a process that
/// took its pid).
fn is_helper(pid: i32, command: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses.
    let live = stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
    let arguments = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    live && arguments.split(|byte| *byte == 0).any(|arg| arg == command.as_bytes())
}

fn stop_helper(pid: i32, command: &str) -> Result<()> {
    if is_helper(pid, command) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while is_helper(pid, command) {
        ensure!(Instant::now() < deadline, "the {command} process (pid {pid}) did not stop");
        sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// The time of day, for the supervisor's log.
fn timestamp() -> String {
    let seconds = crate::workspace::unix_now();
    let day = seconds % 86_400.0;
    format!("{:02}:{:02}:{:06.3}", (day / 3600.0) as u32, (day % 3600.0 / 60.0) as u32, day % 60.0)
}

/// The file callgrind writes service `name`'s dumps to (`callgrind.NAME.1`, `.2`, …).
pub fn callgrind_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("callgrind.{name}"))
}

fn log_path(name: &str) -> PathBuf {
    logs_dir().join(format!("{name}.log"))
}

/// The topology of a native stack with `replicas` replicas, or compose's own number of them.
pub fn topology(replicas: Option<usize>) -> Result<Topology> {
    let topology = Topology::load(&repo_root())?;
    let Some(count) = replicas else { return Ok(topology) };
    let config = std::fs::read_to_string(repo_root().join(postgres::CONFIG_FILE))?;
    topology.with_replicas(count, Postgres::connections_for_replicas(&config)?)
}

impl Tools {
    fn load(replicas: Option<usize>, network: Option<&Network>) -> Result<Tools> {
        let topology = topology(replicas)?;
        let mut postgres = Postgres::locate(&topology.service(&topology.database)?.environment)?;
        if let Some(network) = network {
            postgres.host = network.address(&topology.database)?.into();
        }
        Ok(Tools { topology, postgres, nginx: nginx::locate()? })
    }
}

impl Stack {
    /// The stack recorded in the state directory, if any.
    pub fn load() -> Result<Option<Stack>> {
        let path = state_file();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        let stack = serde_json::from_str(&text)
            .with_context(|| format!("{}: remove it by hand", path.display()))?;
        Ok(Some(stack))
    }

    /// Whether every service's own process is still in its group, and the supervisor runs.
    pub fn is_running(&self) -> Result<bool> {
        if !self.supervisor.is_some_and(|pid| is_helper(pid, SUPERVISOR)) {
            return Ok(false);
        }
        for service in &self.services {
            if !service.cgroup.pids()?.contains(&service.pid) {
                return Ok(false);
            }
        }
        Ok(self.services.len() == topology(self.replicas)?.budgeted().len())
    }

    /// Builds the binaries and starts every service, stopping what it started if one fails.
    pub fn start(
        sh: &Shell,
        preload: u64,
        layout: &Layout,
        callgrind: Option<PathBuf>,
    ) -> Result<Stack> {
        let replicas = layout.replicas;
        let topology = topology(replicas)?;
        // Even with namespaces, whose ports are their own: a stack on loopback holds the cgroups.
        ensure_ports_free(&topology.ports(), "native stack")?;
        let network = match layout.netns {
            true => Some(Network::create(&topology.budgeted())?),
            false => None,
        };
        let tools = Tools::load(replicas, network.as_ref());
        let tools = match tools {
            Ok(tools) => tools,
            Err(error) => {
                network.inspect(Network::remove);
                return Err(error);
            }
        };
        let run_dir = run_dir()?;
        let database_delay =
            Duration::from_secs_f64(layout.database_delay_ms.unwrap_or_default() / 1000.0);
        let mut stack = Stack {
            run_dir,
            services: Vec::new(),
            callgrind,
            supervisor: None,
            replicas,
            network,
            relay: None,
            database_delay,
        };
        if let Err(error) = build_release(sh) {
            stack.stop()?;
            return Err(error);
        }
        let launched = stack.launch(sh, &tools, preload, layout.search_index);
        if let Err(error) = launched.and_then(|()| stack.supervise()) {
            if let Err(cleanup) = stack.stop() {
                eprintln!("{cleanup:#}");
            }
            return Err(error.context(format!("logs in {}", logs_dir().display())));
        }
        Ok(stack)
    }

    fn launch(
        &mut self,
        sh: &Shell,
        tools: &Tools,
        preload: u64,
        search_index: bool,
    ) -> Result<()> {
        sh.create_dir(logs_dir())?;
        let topology = &tools.topology;
        let data_dir = self.run_dir.join("db/data");
        let clients = self.network.as_ref().map(Network::subnet);
        let replay = release_binary("replay");
        let cache = match preload {
            0 => None,
            count => {
                Some(preloaded::cache_dir(sh, count, search_index, &replay, clients.as_deref())?)
            }
        };
        if let Some(cache) = cache.as_ref().filter(|cache| cache.exists()) {
            println!("copying the cluster preloaded before from {}", cache.display());
            tools.postgres.copy_cluster(cache, &data_dir)?;
            return self.start_rest(sh, tools, false, None);
        }
        println!("initialising a PostgreSQL cluster in {}", data_dir.display());
        tools.postgres.init_cluster(
            &data_dir,
            &repo_root().join(postgres::CONFIG_FILE),
            clients.as_deref(),
        )?;
        self.start_service(sh, tools, &topology.database, Signal::SIGINT)?;
        tools.postgres.create_database(topology.database_port)?;
        // The preload and the index stand for a history of writes and a migration run apart:
        // the database gets every CPU for them, and its limit back before the replicas start.
        let database = self.services.last().context("the database is started")?;
        database.cgroup.limit_cpus(None)?;
        if preload > 0 {
            let started = Instant::now();
            let schema = repo_root().join("sql/schema.sql");
            tools.postgres.preload(topology.database_port, &schema, &replay, preload)?;
            println!("preloaded {preload} people in {:.1} s", started.elapsed().as_secs_f64());
        }
        if search_index {
            let started = Instant::now();
            let replica = &topology.replicas[0].0;
            let environment = &topology.service(replica)?.environment;
            let database = tools.postgres.url(topology.database_port);
            let rinha = release_binary("rinha");
            // The replicas' memory limit, which sizes the filter they load.
            let memory_mb = (topology.limits(replica)?.memory_bytes >> 20).to_string();
            let build = cmd!(sh, "{rinha} index-search")
                .envs(environment)
                .env("MEMORY_LIMIT_MB", memory_mb);
            quietly(build.env("DATABASE_URL", database)).run()?;
            println!("built the search index in {:.1} s", started.elapsed().as_secs_f64());
        }
        database.cgroup.limit_cpus(Some(database.limits.cpus))?;
        self.start_rest(sh, tools, true, cache.as_deref().map(|cache| (cache, data_dir.as_path())))
    }

    /// Starts the database unless it runs (after keeping the stopped cluster in `keep.0` when
    /// given, copied from `keep.1`), then the relay, the replicas and nginx.
    fn start_rest(
        &mut self,
        sh: &Shell,
        tools: &Tools,
        database_runs: bool,
        keep: Option<(&Path, &Path)>,
    ) -> Result<()> {
        let topology = &tools.topology;
        if let Some((cache, data_dir)) = keep {
            let started = Instant::now();
            let index = self.index_of(&topology.database)?;
            self.stop_database(index)?;
            preloaded::keep(sh, data_dir, cache)?;
            println!(
                "kept the preloaded cluster in {} ({:.1} s)",
                cache.display(),
                started.elapsed().as_secs_f64()
            );
            self.run(sh, tools, index, true)?;
        } else if !database_runs {
            self.start_service(sh, tools, &topology.database, Signal::SIGINT)?;
        }
        self.start_relay(topology)?;
        for (name, _) in &topology.replicas {
            self.start_service(sh, tools, name, Signal::SIGTERM)?;
        }
        self.start_service(sh, tools, &topology.load_balancer, Signal::SIGTERM)?;
        let port = topology.load_balancer_port;
        match http_status(self.address(&topology.load_balancer)?, port, "/metrics") {
            Some(403 | 404) => Ok(()),
            status => bail!(
                "docker/nginx.conf exposes /metrics on port {port} (status {status:?}); it must answer 404"
            ),
        }
    }

    /// The command that runs `name`, and the check that it is ready.
    fn command<'a>(
        &self,
        sh: &'a Shell,
        tools: &'a Tools,
        name: &str,
    ) -> Result<(Command, ReadyCheck<'a>)> {
        let topology = &tools.topology;
        if name == topology.database {
            let db_dir = self.run_dir.join("db");
            let server =
                tools.postgres.server(&db_dir.join("data"), topology.database_port, &db_dir);
            let port = topology.database_port;
            return Ok((server, Box::new(move || tools.postgres.is_ready(port))));
        }
        if name == topology.load_balancer {
            let dir = self.run_dir.join("nginx");
            create_dir(&dir)?;
            let template = sh.read_file(repo_root().join("docker/nginx.conf"))?;
            let written_for = Topology::load(&repo_root())?.replicas;
            let written_for: Vec<&str> =
                written_for.iter().map(|(name, _)| name.as_str()).collect();
            let replicas = topology.replicas.iter().map(|(name, port)| {
                let slot = topology.service(name)?.environment.get("ID_SLOT");
                let slot = slot.with_context(|| format!("{name} has no ID_SLOT"))?;
                Ok(nginx::Upstream {
                    name: name.clone(),
                    address: format!("{}:{port}", self.address(name)?),
                    slot: slot.parse().with_context(|| format!("{name}'s ID_SLOT"))?,
                })
            });
            let replicas = replicas.collect::<Result<Vec<_>>>()?;
            let listen = self.address(name)?;
            let config = nginx::derive_config(&template, &dir, listen, &written_for, &replicas)
                .context("docker/nginx.conf")?;
            let config_path = dir.join("nginx.conf");
            sh.write_file(&config_path, config)?;
            // In the foreground, so that its pid is the master's; under callgrind in one
            // process, whose instructions are then all of nginx's.
            let single = if self.callgrind.is_some() { "master_process off;" } else { "" };
            let settings = format!("daemon off; pid {}; {single}", dir.join("nginx.pid").display());
            let server = self.program(sh, topology, name, &tools.nginx);
            let server = server.arg("-p").arg(&dir).arg("-c").arg(config_path);
            let server = server.arg("-e").arg(log_path("nginx-error")).arg("-g").arg(settings);
            let port = topology.load_balancer_port;
            return Ok((
                server.into(),
                Box::new(move || http_status(listen, port, "/contagem-pessoas") == Some(200)),
            ));
        }
        let port = topology.replica_port(name)?;
        let rinha = release_binary("rinha");
        // Loopback only on the host's own network, behind nginx; or their namespace's address.
        let host = self.address(name)?.to_string();
        let replica = self
            .program(sh, topology, name, &rinha)
            .envs(&topology.service(name)?.environment)
            .env("HOST", &host)
            .env("PORT", port.to_string())
            .env("DATABASE_URL", tools.postgres.url(self.database_port_for_replicas(topology)));
        let healthcheck =
            cmd!(sh, "{rinha} healthcheck").env("HOST", host).env("PORT", port.to_string());
        let healthcheck = quietly(healthcheck);
        Ok((replica.into(), Box::new(move || healthcheck.run().is_ok())))
    }

    /// `program`, run for service `name`: under callgrind, collecting nothing until told to,
    /// when the stack measures the first replica's and the load balancer's instructions.
    fn program<'a>(
        &self,
        sh: &'a Shell,
        topology: &Topology,
        name: &str,
        program: &Path,
    ) -> Cmd<'a> {
        match &self.callgrind {
            Some(dir) if name == topology.load_balancer || name == topology.replicas[0].0 => {
                let out_file =
                    format!("--callgrind-out-file={}", callgrind_file(dir, name).display());
                cmd!(sh, "valgrind --tool=callgrind --instr-atstart=no {out_file} {program}")
            }
            _ => sh.cmd(program),
        }
    }

    /// Starts `name` in its own cgroup, records it, and waits until it is ready.
    fn start_service(
        &mut self,
        sh: &Shell,
        tools: &Tools,
        name: &str,
        stop_signal: Signal,
    ) -> Result<()> {
        let limits = tools.topology.limits(name)?;
        let cgroup = Cgroup::create(name, &limits)?;
        let stop_signal = stop_signal.as_str().to_owned();
        self.services.push(Service { name: name.to_owned(), pid: 0, stop_signal, limits, cgroup });
        let started = Instant::now();
        if let Err(error) = self.run(sh, tools, self.services.len() - 1, false) {
            // Not started: nothing of it is left to stop.
            if let Some(service) = self.services.pop_if(|service| service.pid == 0) {
                let _ = service.cgroup.remove();
            }
            return Err(error);
        }
        println!(
            "{name} is up after {:.1} s (pid {}, {} CPU, {} MiB)",
            started.elapsed().as_secs_f64(),
            self.services[self.services.len() - 1].pid,
            limits.cpus,
            limits.memory_bytes >> 20
        );
        Ok(())
    }

    /// Stops the database with `signal` and starts it again in the same cgroup (so its CPU
    /// time and peak memory keep counting), until it is ready. Replicas are the supervisor's to
    /// start again: see [`Stack::stop_replica`].
    pub fn restart_database(&mut self, sh: &Shell, signal: Signal) -> Result<()> {
        let tools = Tools::load(self.replicas, self.network.as_ref())?;
        self.refresh()?;
        let index = self.index_of(&tools.topology.database)?;
        self.stop_service(index, signal)?;
        self.run(sh, &tools, index, true)
    }

    /// Stops the database cleanly (PostgreSQL's fast shutdown), its cgroup kept.
    fn stop_database(&self, index: usize) -> Result<()> {
        self.stop_service(index, Signal::SIGINT)
    }

    fn stop_service(&self, index: usize, signal: Signal) -> Result<()> {
        let service = &self.services[index];
        kill(Pid::from_raw(service.pid), signal)
            .with_context(|| format!("cannot send {signal} to {}", service.name))?;
        ensure!(
            service.wait_until_empty(STOP_TIMEOUT)?,
            "{} did not stop within {} s of {signal}",
            service.name,
            STOP_TIMEOUT.as_secs()
        );
        Ok(())
    }

    /// Sends `signal` to replica `name` and waits until the supervisor has started it again
    /// and it answers, failing after `within`.
    pub fn stop_replica(&mut self, name: &str, signal: Signal, within: Duration) -> Result<()> {
        self.refresh()?;
        let index = self.index_of(name)?;
        let old = self.services[index].pid;
        kill(Pid::from_raw(old), signal)
            .with_context(|| format!("cannot send {signal} to {name}"))?;
        let port = topology(self.replicas)?.replica_port(name)?;
        let address = self.address(name)?;
        let deadline = Instant::now() + within;
        loop {
            self.refresh()?;
            if self.services[index].pid != old
                && http_status(address, port, "/contagem-pessoas") == Some(200)
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{name} was not started again within {} s of {signal} (see {})",
                within.as_secs_f64(),
                log_path(SUPERVISOR).display()
            );
            sleep(POLL_INTERVAL);
        }
    }

    /// With `--netns`, starts the relay the replicas reach PostgreSQL through, in PostgreSQL's
    /// namespace, a process of its own that outlives this one.
    fn start_relay(&mut self, topology: &Topology) -> Result<()> {
        let Some(network) = &self.network else { return Ok(()) };
        let address = network.address(&topology.database)?;
        relay::set_delay(&relay_delay_file(), self.database_delay)?;
        let args = RelayArgs {
            listen: (address, self.database_port_for_replicas(topology)).into(),
            target: (address, topology.database_port).into(),
            delay_file: relay_delay_file(),
        };
        let mut command = Command::new(std::env::current_exe()?);
        command.arg(RELAY).arg("--listen").arg(args.listen.to_string());
        command.arg("--target").arg(args.target.to_string()).arg("--delay-file");
        command.arg(&args.delay_file);
        self.relay = Some(spawn_helper(network.enter(&topology.database, &command), RELAY)?);
        self.save()?;
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect_timeout(&args.listen, TIMEOUT).is_err() {
            let log = log_path(RELAY);
            ensure!(Instant::now() < deadline, "the relay does not listen; see {}", log.display());
            sleep(POLL_INTERVAL);
        }
        Ok(())
    }

    /// Where the replicas reach PostgreSQL: its own port, or across namespaces the relay's
    /// next to it.
    fn database_port_for_replicas(&self, topology: &Topology) -> u16 {
        match self.network {
            Some(_) => topology.database_port + 1,
            None => topology.database_port,
        }
    }

    /// Holds what PostgreSQL sends to the replicas for `extra` more than the stack's own
    /// `--database-delay-ms`, until called again.
    pub fn slow_database_link(&self, extra: Duration) -> Result<()> {
        ensure!(self.relay.is_some(), "the database link can be slowed only with --netns");
        relay::set_delay(&relay_delay_file(), self.database_delay + extra)
    }

    /// Starts the supervisor, a process of its own that outlives this one.
    fn supervise(&mut self) -> Result<()> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg(SUPERVISOR);
        self.supervisor = Some(spawn_helper(command, SUPERVISOR)?);
        self.save()
    }

    /// Reads the services' pids again from the state file, where the supervisor records the
    /// replicas it starts.
    fn refresh(&mut self) -> Result<()> {
        let recorded = Stack::load()?.context("the stack's state file is gone")?;
        for service in &mut self.services {
            if let Some(now) = recorded.services.iter().find(|r| r.name == service.name) {
                service.pid = now.pid;
            }
        }
        Ok(())
    }

    /// Spawns service `index` into its cgroup, in its own process group, its output going to
    /// its log (appended to when it is started `again`); records its pid and waits until it is
    /// ready.
    fn run(&mut self, sh: &Shell, tools: &Tools, index: usize, again: bool) -> Result<()> {
        let name = self.services[index].name.clone();
        let (command, ready) = self.command(sh, tools, &name)?;
        let mut command = match &self.network {
            Some(network) => network.enter(&name, &command),
            None => command,
        };
        self.services[index].cgroup.attach_on_exec(&mut command)?;
        let mut child = spawn_logged(&mut command, &name, again)?;
        self.services[index].pid = child.id() as i32;
        if again {
            self.record_pid(index)?;
        } else {
            self.save()?;
        }
        wait_until_ready(&name, &mut child, &log_path(&name), ready)
    }

    /// Writes service `index`'s pid into the state file, leaving the rest as recorded there:
    /// the supervisor and a fault may each start a service again while the stack runs.
    fn record_pid(&self, index: usize) -> Result<()> {
        let _lock = lock_state()?;
        let mut recorded = Stack::load()?.context("the stack's state file is gone")?;
        let service = &self.services[index];
        recorded.services.iter_mut().filter(|r| r.name == service.name).for_each(|r| {
            r.pid = service.pid;
        });
        recorded.write()
    }

    /// Sends `signal` to every process of the service (PostgreSQL's backends too), as a
    /// container pause would reach them all.
    pub fn signal_every(&self, name: &str, signal: Signal) -> Result<()> {
        let service = &self.services[self.index_of(name)?];
        for pid in service.cgroup.pids()? {
            kill(Pid::from_raw(pid), signal)
                .with_context(|| format!("cannot send {signal} to {name} ({pid})"))?;
        }
        Ok(())
    }

    /// The pid of service `name`'s process as the state file records it now, if that process
    /// still runs.
    pub fn live_pid(name: &str) -> Result<Option<i32>> {
        let stack = Stack::load()?.context("the native stack is not up")?;
        let service = &stack.services[stack.index_of(name)?];
        Ok(service.cgroup.pids()?.contains(&service.pid).then_some(service.pid))
    }

    /// The pid of the process started for service `name`.
    pub fn pid_of(&self, name: &str) -> Result<i32> {
        Ok(self.services[self.index_of(name)?].pid)
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        let index = self.services.iter().position(|service| service.name == name);
        index.with_context(|| format!("the stack has no service {name}"))
    }

    fn save(&self) -> Result<()> {
        let _lock = lock_state()?;
        self.write()
    }

    /// Replaces the state file whole, so that a reader never sees half of it.
    fn write(&self) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        let new = state_file().with_extension("json.new");
        std::fs::write(&new, json)
            .and_then(|()| std::fs::rename(&new, state_file()))
            .with_context(|| format!("cannot write {}", state_file().display()))
    }

    /// Stops the supervisor, then the services in reverse start order, and removes their
    /// groups and files.
    pub fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.supervisor.take() {
            stop_helper(pid, SUPERVISOR)?;
            self.refresh()?;
        }
        let failures: Vec<String> = self
            .services
            .iter()
            .rev()
            .filter_map(|service| service.stop().err())
            .map(|e| format!("{e:#}"))
            .collect();
        // Keep the record so that a later `down` can retry.
        ensure!(failures.is_empty(), failures.join("\n"));
        if let Some(pid) = self.relay {
            stop_helper(pid, RELAY)?;
        }
        if let Some(network) = &self.network {
            network.remove();
        }
        for path in [&self.run_dir, &state_file()] {
            if path.exists() {
                Shell::new()?.remove_path(path)?;
            }
        }
        Ok(())
    }

    /// Where service `name` listens: loopback, or its namespace's address.
    pub fn address(&self, name: &str) -> Result<IpAddr> {
        match &self.network {
            Some(network) => Ok(network.address(name)?.into()),
            None => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    }

    fn print(&self) -> Result<()> {
        let Tools { topology, postgres, .. } = Tools::load(self.replicas, self.network.as_ref())?;
        let replicas = topology
            .replicas
            .iter()
            .map(|(name, port)| Ok(format!("{}:{port}", self.address(name)?)));
        let replicas = replicas.collect::<Result<Vec<String>>>()?;
        println!(
            "{} on http://{}:{}, replicas on {}, PostgreSQL on {}; logs in {}",
            topology.load_balancer,
            self.address(&topology.load_balancer)?,
            topology.load_balancer_port,
            replicas.join(", "),
            postgres.url(topology.database_port),
            logs_dir().display()
        );
        Ok(())
    }
}

impl Service {
    fn stop(&self) -> Result<()> {
        let signal: Signal = self.stop_signal.parse()?;
        // Only a process still in the group is ours: its pid may have been reused otherwise.
        // A group without it holds at most a replica the supervisor had just started.
        let pids = self.cgroup.pids()?;
        let targets = if pids.contains(&self.pid) { vec![self.pid] } else { pids };
        for pid in targets {
            let _ = kill(Pid::from_raw(pid), signal);
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
            ensure!(
                self.wait_until_empty(Duration::from_secs(5))?,
                "{}: processes {:?} survived SIGKILL",
                self.name,
                self.cgroup.pids()?
            );
        }
        self.cgroup.remove()
    }

    fn wait_until_empty(&self, timeout: Duration) -> Result<bool> {
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

/// PostgreSQL's owner and nginx's workers (nobody) must reach the run directory; a checkout
/// under a private home directory would shut them out, so that case uses the temp directory.
fn run_dir() -> Result<PathBuf> {
    let world_traversable = |dir: &Path| {
        dir.ancestors().all(|dir| {
            std::fs::metadata(dir).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0)
        })
    };
    let dir = if !Uid::effective().is_root() || world_traversable(&repo_root()) {
        state_dir().join("run")
    } else {
        std::env::temp_dir().join(format!("rinha-stack-{}", std::process::id()))
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    create_dir(&dir)?;
    Ok(dir)
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Tells whether a service just started answers yet.
type ReadyCheck<'a> = Box<dyn Fn() -> bool + 'a>;

/// Waits until `ready`, failing when `child` exits first or takes too long (`log` tells why).
fn wait_until_ready(
    name: &str,
    child: &mut Child,
    log: &Path,
    ready: impl Fn() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while !ready() {
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited while starting ({status}); see {}", log.display());
        }
        ensure!(
            Instant::now() < deadline,
            "{name} not ready after {} s; see {}",
            START_TIMEOUT.as_secs(),
            log.display()
        );
        sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// The status code of `GET path` on a loopback port, or `None` if nothing answers.
fn http_status(address: IpAddr, port: u16, path: &str) -> Option<u16> {
    let config = ureq::Agent::config_builder().http_status_as_error(false);
    let agent = ureq::Agent::new_with_config(config.timeout_global(Some(TIMEOUT)).build());
    let response = agent.get(format!("http://{address}:{port}{path}")).call();
    response.ok().map(|response| response.status().as_u16())
}
