//! `cargo xtask stress`: the contest's stress test, replayed against a fresh native stack (its
//! table first filled with N generated people, one fault injected during the run), with each
//! service's CPU time, CPU throttling and peak memory from its cgroup.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use xshell::{Shell, cmd};

use crate::args::positive;
use crate::cgroup::{Cgroup, CpuUsage};
use crate::runs::fault::Fault;
use crate::stack::netns::Network;
use crate::stack::{Layout, Stack};
use crate::topology::{Limits, Topology};
use crate::workspace::{release_binary, repo_root, unix_now};

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
    /// pause-db, open-transaction, or with --netns partition-replica or slow-link, at S seconds
    /// (by default the middle of the run; an open transaction, from the start to the end).
    #[arg(long, value_name = "KIND[@S]", value_parser = Fault::parse)]
    pub fault: Option<Fault>,
    #[command(flatten)]
    pub layout: Layout,
    /// Multiply every injection rate by F, durations kept.
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive)]
    pub rate: f64,
}

const PAYLOADS: &str = "gatling/resources/pessoas-payloads.tsv";
const TERMS: &str = "gatling/resources/termos-busca.tsv";

/// Runs the stress test and returns the directory of its report.
pub fn stress(sh: &Shell, args: &StressArgs, command: &str) -> Result<PathBuf> {
    let out = out_dir(&args.run, command)?;
    // Every run starts from a fresh stack: an empty database for the counts, new cgroups for the
    // CPU and peak-memory figures, and the limits as the compose file has them now.
    let was_up = match Stack::load()? {
        Some(previous) => {
            let running = previous.is_running()?;
            if running {
                println!(
                    "restarting the stack so that the run starts from an empty database; it stays up afterwards"
                );
            }
            previous.stop()?;
            running
        }
        None => false,
    };
    let topology = crate::stack::topology(args.layout.replicas)?;
    let mut stack = Stack::start(sh, args.preload, &args.layout, None)?;
    let addresses =
        topology.budgeted().into_iter().map(|name| Ok((name.to_owned(), stack.address(name)?)));
    let addresses = addresses.collect::<Result<BTreeMap<String, IpAddr>>>()?;
    let private_network = stack.network.as_ref().map(Network::subnet);
    let sources = stack.network.as_ref().map(Network::host_addresses).unwrap_or_default();
    let services: Vec<Measured> = stack
        .services
        .iter()
        .map(|service| Measured {
            name: service.name.clone(),
            cgroup: service.cgroup.clone(),
            limits: service.limits,
        })
        .collect();
    let fault = args.fault.map(|fault| (fault, &mut stack));
    let outcome = replay_and_report(
        sh,
        &topology,
        &Endpoints { addresses, private_network, sources },
        &services,
        &args.run,
        &out,
        args.rate,
        fault,
    );
    // The stack is left as it was found, so that the verdict stays the last line.
    if !was_up {
        stack.stop()?;
    }
    outcome.map(|()| out)
}

/// Where the replay finds the services: each one's address (loopback when not listed), and the
/// private network they are in, if not on loopback.
#[derive(Default)]
pub struct Endpoints {
    pub addresses: BTreeMap<String, IpAddr>,
    pub private_network: Option<String>,
    /// The local addresses the replay connects from, in turn.
    pub sources: Vec<Ipv4Addr>,
}

/// `--out` (from the caller's directory: the programs run from the repository's), or
/// `target/COMMAND/<seconds since 1970>`.
pub fn out_dir(args: &RunArgs, command: &str) -> Result<PathBuf> {
    match &args.out {
        Some(out) => Ok(std::path::absolute(out)?),
        None => Ok(repo_root().join("target").join(command).join((unix_now() as u64).to_string())),
    }
}

/// A service whose cgroup a run measures.
pub struct Measured {
    pub name: String,
    pub cgroup: Cgroup,
    pub limits: Limits,
}

/// Replays the stress test against the load balancer into `out`, then has the replay report it
/// again with each service's CPU time, CPU throttling and peak memory over the run (the
/// services were started for it, so their peaks are the run's). With a fault, it strikes the
/// stack during the replay and the run is judged by the fault's own target (see `fault.rs`),
/// recorded as `fault` in `summary.json`. Under `--strict` a failed verdict is an error, and so
/// is a failed `--assert` condition, with or without a fault.
#[expect(clippy::too_many_arguments, reason = "one run's every input, each used once")]
pub fn replay_and_report(
    sh: &Shell,
    topology: &Topology,
    endpoints: &Endpoints,
    services: &[Measured],
    args: &RunArgs,
    out: &Path,
    rate: f64,
    fault: Option<(Fault, &mut Stack)>,
) -> Result<()> {
    let replay = release_binary("replay");
    if !sh.path_exists(PAYLOADS) {
        cmd!(sh, "{replay} payloads --out {PAYLOADS}").run()?;
    }
    let address = |name: &str| {
        let address = endpoints.addresses.get(name).copied();
        address.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    };
    let balancer = &topology.load_balancer;
    let base_url = format!("http://{}:{}", address(balancer), topology.load_balancer_port);
    let mut metrics = Vec::new();
    for (replica, _) in &topology.replicas {
        let port = topology.metrics_port(replica)?;
        let url = format!("http://{}:{port}/metrics", address(replica));
        metrics.extend(["--metrics".to_owned(), url]);
    }
    let mut private_network = match &endpoints.private_network {
        Some(network) => vec!["--private-network".to_owned(), network.clone()],
        None => Vec::new(),
    };
    for source in &endpoints.sources {
        private_network.extend(["--source-address".to_owned(), source.to_string()]);
    }
    // Only a changed rate is passed on, so that a replay without `--rate` runs the plain profile.
    let rate = if rate == 1.0 { Vec::new() } else { vec!["--rate".to_owned(), rate.to_string()] };
    let scale = args.scale.to_string();
    // The summary is printed once, below, when it has the stack's figures too; progress still
    // shows on stderr.
    let load = cmd!(sh, "{replay} run --payloads {PAYLOADS} --terms {TERMS} --base-url {base_url} --scale {scale} --out {out} {metrics...} {private_network...} {rate...}")
        .ignore_stdout();

    let before = cpu_usage(services)?;
    let window = match fault {
        None => {
            load.run()?;
            None
        }
        Some((fault, stack)) => {
            // A shell is not shared between threads: the fault's thread has its own.
            let fault_sh = sh.clone();
            let (replayed, struck) = std::thread::scope(|scope| {
                let strike = scope.spawn(move || {
                    std::thread::sleep(fault.delay(args.scale));
                    println!("injecting {}", fault.name());
                    fault.inject(&fault_sh, stack, topology, args.scale)
                });
                (load.run(), strike.join().expect("the fault's thread does not panic"))
            });
            let struck = struck?;
            let (injected, restored) = struck.window;
            println!("{} took {:.1} s to repair", fault.name(), restored - injected);
            replayed?;
            Some((fault, struck))
        }
    };
    let after = cpu_usage(services)?;

    let mut figures = serde_json::Map::new();
    let mut throttling = Vec::new();
    for ((service, before), after) in services.iter().zip(before).zip(after) {
        let used = after - before;
        throttling.push(format!(
            "{} {} of {} ({:.2} s)",
            service.name, used.throttled_periods, used.periods, used.throttled_seconds
        ));
        figures.insert(
            service.name.to_owned(),
            json!({
                "cpu_seconds": used.seconds,
                "peak_memory_bytes": service.cgroup.peak_memory_bytes()?,
                "cpu_limit": service.limits.cpus,
                "memory_limit_bytes": service.limits.memory_bytes,
                "cpu_periods": used.periods,
                "cpu_throttled_periods": used.throttled_periods,
                "cpu_throttled_seconds": used.throttled_seconds,
            }),
        );
    }
    println!("CPU periods throttled by the quota during the run: {}", throttling.join(", "));
    let stack_json = out.join("stack.json");
    sh.write_file(&stack_json, serde_json::to_string_pretty(&json!({ "services": figures }))?)?;
    // Under a fault, --strict means the fault's target (below), not the replay's defaults; the
    // conditions asked for are judged either way.
    let strict = (args.strict && window.is_none()).then_some("--strict");
    let conditions = args.assertions.iter().flat_map(|condition| ["--assert", condition]);
    let junit = match &args.junit {
        Some(path) => vec!["--junit".into(), std::path::absolute(path)?],
        None => Vec::new(),
    };
    let judged = cmd!(
        sh,
        "{replay} report --out {out} --stack-json {stack_json} {strict...} {conditions...} {junit...}"
    )
    .run()
    .context("the run failed its checks (see the verdict above), or the replay failed");
    let Some((fault, window)) = window else {
        return judged;
    };
    let mut summary = read_json(&out.join("summary.json"))?;
    let series = read_json(&out.join("series.json"))?;
    let (figures, problems) = fault.judge(&window, &summary, &series, topology.replicas.len());
    println!(
        "fault {}: injected at {} s, repaired at {} s; KO before {}, during {}, after {}; \
         median p99 of a second {} ms during, {} ms outside",
        fault.name(),
        figures["injected_at_s"],
        figures["restored_at_s"],
        figures["ko_before"],
        figures["ko_during"],
        figures["ko_after"],
        figures["median_p99_ms_of_a_second"]["during"],
        figures["median_p99_ms_of_a_second"]["outside"]
    );
    summary["fault"] = figures;
    sh.write_file(out.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    if problems.is_empty() {
        println!("FAULT PASS: {}", fault.name());
    } else {
        println!("FAULT FAIL: {}: {}", fault.name(), problems.join("; "));
        if args.strict {
            bail!("the run failed its fault target (see above)");
        }
    }
    judged
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| path.display().to_string())
}

fn cpu_usage(services: &[Measured]) -> Result<Vec<CpuUsage>> {
    services.iter().map(|service| service.cgroup.cpu_usage()).collect()
}
