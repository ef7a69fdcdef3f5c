//! `cargo xtask instructions`: the instructions one replica (and nginx in front of the
//! replicas) executes per request, by kind, as callgrind counts them. A count is the same run
//! after run whatever else the machine does, unlike CPU time, so it shows where the CPU goes
//! per request kind on a shared, noisy machine.
//!
//! It runs on a fresh native stack, under its limits, whose first replica and nginx run under
//! callgrind with collection off; it is switched on around each batch of requests only, and the
//! batch's dump gives its total instructions (Ir). The stack is stopped at the end, however the
//! command ends.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use xshell::{Shell, cmd};

use crate::stack::{Stack, callgrind_file};
use crate::topology::Topology;
use crate::{repo_root, run_quietly};

/// One request of a batch, and the status it must get.
struct Request {
    method: Method,
    path: String,
    expected: u16,
}

enum Method {
    Get,
    Post(String),
}

/// The instructions a batch cost one process, per request.
#[derive(Serialize)]
struct Row {
    kind: &'static str,
    status: u16,
    instructions_per_request: u64,
}

impl Row {
    fn of(kind: &'static str, batch: &[Request], total: u64) -> Row {
        Row {
            kind,
            status: batch.first().map_or(0, |request| request.expected),
            instructions_per_request: total / batch.len().max(1) as u64,
        }
    }
}

#[derive(Serialize)]
struct Report {
    requests_per_kind: usize,
    /// Over one keep-alive connection a kind, then the count on a connection a request.
    replica: Vec<Row>,
    /// What a replica spends on a new connection beyond a request on a kept one.
    replica_new_connection: i64,
    /// nginx's own instructions for `GET /contagem-pessoas` proxied to the replicas.
    nginx: Vec<Row>,
    /// What nginx spends on a new client connection beyond a request on a kept one.
    nginx_new_connection: i64,
}

pub fn instructions(sh: &Shell, requests: usize) -> Result<()> {
    ensure!(
        Stack::load()?.is_none(),
        "the native stack is up: stop it first with cargo xtask down"
    );
    let out_dir = repo_root().join("target/instructions");
    if out_dir.exists() {
        sh.remove_path(&out_dir)?;
    }
    sh.create_dir(&out_dir)?;
    let stack = Stack::start(sh, 0, Some(out_dir.clone()))?;
    let report = measure(sh, &stack, &out_dir, requests);
    stack.stop()?;
    let report = report?;
    print_report(&report);
    let json = out_dir.join("instructions.json");
    sh.write_file(&json, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", json.display());
    Ok(())
}

fn measure(sh: &Shell, stack: &Stack, out_dir: &Path, requests: usize) -> Result<Report> {
    let topology = Topology::load(&repo_root())?;
    let (replica_name, replica_port) = &topology.replicas[0];
    // The replica listens on `HOST`, which valgrind also puts in the names of the pipes
    // `callgrind_control` reaches it by; nginx inherits this process's.
    let mut replica = Callgrind::of(sh, stack, out_dir, replica_name, Some("127.0.0.1"))?;
    let base = format!("http://127.0.0.1:{replica_port}");
    let kept = agent(true);
    let fresh = agent(false);
    let mut rows = Vec::new();
    // The first round is a warm-up, uncounted: the first use of a code path or of a pooled
    // database connection (which prepares its statements) is not what a request costs.
    for (round, counted) in [("w", false), ("m", true)] {
        rows.clear();
        let mut measure = |kind, agent, batch: &[Request]| -> Result<Vec<String>> {
            let (total, locations) = replica.run(counted, agent, &base, batch)?;
            rows.push(Row::of(kind, batch, total));
            Ok(locations)
        };
        let creates: Vec<Request> = (0..requests).map(|i| create(&person(round, i))).collect();
        let locations = measure("create", &kept, &creates)?;
        for (kind, batch) in kinds(requests, &locations)? {
            measure(kind, &kept, &batch)?;
        }
        measure(NEW_CONNECTIONS, &fresh, &count(requests))?;
    }
    let replica_new_connection = new_connection_cost(&rows)?;

    let mut nginx = Callgrind::of(sh, stack, out_dir, &topology.load_balancer, None)?;
    let through = format!("http://127.0.0.1:{}", topology.load_balancer_port);
    let mut nginx_rows = Vec::new();
    for counted in [false, true] {
        nginx_rows.clear();
        for (kind, agent) in [(COUNT, &kept), (NEW_CONNECTIONS, &fresh)] {
            let batch = count(requests);
            let (total, _) = nginx.run(counted, agent, &through, &batch)?;
            nginx_rows.push(Row::of(kind, &batch, total));
        }
    }
    let nginx_new_connection = new_connection_cost(&nginx_rows)?;
    Ok(Report {
        requests_per_kind: requests,
        replica: rows,
        replica_new_connection,
        nginx: nginx_rows,
        nginx_new_connection,
    })
}

fn print_report(report: &Report) {
    println!("instructions per request ({} requests a kind):", report.requests_per_kind);
    println!("{:<34} {:>6} {:>14}", "replica", "status", "instructions");
    for row in &report.replica {
        println!("{:<34} {:>6} {:>14}", row.kind, row.status, row.instructions_per_request);
    }
    println!("{:<34} {:>6} {:>14}", "new connection", "", report.replica_new_connection);
    println!("{:<34} {:>6} {:>14}", "nginx (proxying to the replica)", "status", "instructions");
    for row in &report.nginx {
        println!("{:<34} {:>6} {:>14}", row.kind, row.status, row.instructions_per_request);
    }
    println!("{:<34} {:>6} {:>14}", "new client connection", "", report.nginx_new_connection);
}

const COUNT: &str = "count";
const NEW_CONNECTIONS: &str = "count, a new connection each";

/// The count on a new connection each, less the count on a kept one.
fn new_connection_cost(rows: &[Row]) -> Result<i64> {
    let cost = |kind: &str| {
        rows.iter()
            .find(|row| row.kind == kind)
            .map(|row| row.instructions_per_request as i64)
            .with_context(|| format!("no row {kind}"))
    };
    Ok(cost(NEW_CONNECTIONS)? - cost(COUNT)?)
}

/// An agent that keeps one connection for all its requests, or opens one a request.
fn agent(keep_alive: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(usize::from(keep_alive))
        .max_idle_connections_per_host(usize::from(keep_alive))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Contest-shaped, each of the same size in every round, so that runs repeat.
fn person(round: &str, index: usize) -> String {
    format!(
        r#"{{"apelido":"{round}{index:07}","nome":"Pessoa {index:07}","nascimento":"2000-10-01","stack":["Rust","Go"]}}"#
    )
}

fn create(body: &str) -> Request {
    Request { method: Method::Post(body.to_owned()), path: "/pessoas".into(), expected: 201 }
}

fn get(path: String, expected: u16) -> Request {
    Request { method: Method::Get, path, expected }
}

fn count(requests: usize) -> Vec<Request> {
    (0..requests).map(|_| get("/contagem-pessoas".into(), 200)).collect()
}

/// Every kind after the creates, given the paths of the people they created.
fn kinds(requests: usize, created: &[String]) -> Result<Vec<(&'static str, Vec<Request>)>> {
    ensure!(created.len() == requests, "{} of {requests} creates gave a Location", created.len());
    let each = |make: &dyn Fn(usize) -> Request| (0..requests).map(make).collect::<Vec<_>>();
    let invalid = r#"{"apelido":"x","nome":"Nome","nascimento":"2023-02-29","stack":null}"#;
    let mistyped = r#"{"apelido":"x","nome":1,"nascimento":"2000-10-01","stack":null}"#;
    Ok(vec![
        ("create, a rule broken", each(&|_| Request { expected: 422, ..create(invalid) })),
        ("create, a field mistyped", each(&|_| Request { expected: 400, ..create(mistyped) })),
        ("lookup by id", each(&|i| get(created[i].clone(), 200))),
        (
            "lookup, unknown id",
            each(&|i| get(format!("/pessoas/00000000-0000-4000-8000-{i:012}"), 404)),
        ),
        // Every person has the stack item, so each answer holds the most a search gives (50).
        ("search, 50 people found", each(&|_| get("/pessoas?t=Rust".into(), 200))),
        ("search, nobody found", each(&|_| get("/pessoas?t=zzzzzz".into(), 200))),
        ("search without t", each(&|_| get("/pessoas".into(), 400))),
        (COUNT, count(requests)),
    ])
}

/// A service of the stack running under callgrind, collecting nothing until told to.
struct Callgrind<'a> {
    sh: &'a Shell,
    pid: String,
    /// The `HOST` the service runs with, if it is not this process's.
    host: Option<&'a str>,
    out_file: PathBuf,
    dumps: usize,
}

impl<'a> Callgrind<'a> {
    fn of(
        sh: &'a Shell,
        stack: &Stack,
        out_dir: &Path,
        name: &str,
        host: Option<&'a str>,
    ) -> Result<Callgrind<'a>> {
        let pid = stack.pid_of(name)?.to_string();
        Ok(Callgrind { sh, pid, host, out_file: callgrind_file(out_dir, name), dumps: 0 })
    }

    /// Sends `batch` to `base` through `agent`, checking each status, and returns the
    /// instructions the process executed meanwhile (when `counted`; 0 otherwise) and the
    /// `Location` headers it answered.
    fn run(
        &mut self,
        counted: bool,
        agent: &ureq::Agent,
        base: &str,
        batch: &[Request],
    ) -> Result<(u64, Vec<String>)> {
        if counted {
            self.control("--instr=on")?;
        }
        let locations = send(agent, base, batch);
        if !counted {
            return Ok((0, locations?));
        }
        self.control("--instr=off")?;
        let locations = locations?;
        self.control("--dump")?;
        self.dumps += 1;
        let dump = PathBuf::from(format!("{}.{}", self.out_file.display(), self.dumps));
        let text = std::fs::read_to_string(&dump)
            .with_context(|| format!("callgrind wrote no {}", dump.display()))?;
        Ok((total_instructions(&text).with_context(|| dump.display().to_string())?, locations))
    }

    fn control(&self, request: &str) -> Result<()> {
        let pid = &self.pid;
        let control = cmd!(self.sh, "callgrind_control {request} {pid}");
        run_quietly(match self.host {
            Some(host) => control.env("HOST", host),
            None => control,
        })
    }
}

/// Sends each request of `batch` in turn, reading each answer whole.
fn send(agent: &ureq::Agent, base: &str, batch: &[Request]) -> Result<Vec<String>> {
    let mut locations = Vec::new();
    for request in batch {
        let url = format!("{base}{}", request.path);
        let mut response = match &request.method {
            Method::Get => agent.get(&url).call(),
            Method::Post(body) => {
                agent.post(&url).header("content-type", "application/json").send(body.as_str())
            }
        }
        .with_context(|| url.clone())?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().with_context(|| url.clone())?;
        ensure!(
            status == request.expected,
            "{url}: {status} instead of {}: {body}",
            request.expected
        );
        if let Some(location) = response.headers().get("location") {
            locations.push(location.to_str()?.to_owned());
        }
    }
    Ok(locations)
}

/// The total of the first event (`Ir` first, as callgrind counts by default) in a callgrind
/// dump: its `totals:` line, or the `summary:` line older versions wrote.
fn total_instructions(dump: &str) -> Result<u64> {
    let events =
        dump.lines().find_map(|line| line.strip_prefix("events:")).context("no events: line")?;
    ensure!(events.split_whitespace().next() == Some("Ir"), "the first event is not Ir: {events}");
    let line = |prefix: &str| dump.lines().find_map(|line| line.strip_prefix(prefix));
    let total =
        line("totals:").or_else(|| line("summary:")).context("no totals: or summary: line")?;
    let first = total.split_whitespace().next().context("an empty totals: line")?;
    first.parse().with_context(|| format!("{first:?} is not a count"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head and tail of a dump callgrind 3.19 wrote with `callgrind_control --dump`.
    const DUMP: &str = "\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /work/target/release/rinha
part: 3


desc: I1 cache: 
desc: D1 cache: 
desc: LL cache: 

desc: Timerange: Basic block 1000 - 2000
desc: Trigger: dump

positions: line
events: Ir
summary: 1234567


ob=(1) /work/target/release/rinha
fl=(1) ???
fn=(1) main
0 42

totals: 1234567
";

    #[test]
    fn the_total_is_read_from_the_totals_line() {
        assert_eq!(total_instructions(DUMP).unwrap(), 1_234_567);
        let without_totals = DUMP.replace("totals: 1234567\n", "");
        assert_eq!(total_instructions(&without_totals).unwrap(), 1_234_567);
    }

    #[test]
    fn a_dump_without_instructions_or_totals_is_refused() {
        let other_event = DUMP.replace("events: Ir", "events: Dr");
        assert!(total_instructions(&other_event).is_err());
        let no_totals = DUMP.replace("summary: 1234567\n", "").replace("totals: 1234567\n", "");
        assert!(total_instructions(&no_totals).is_err());
        let garbled = DUMP.replace("totals: 1234567", "totals: many");
        assert!(total_instructions(&garbled).is_err());
    }

    #[test]
    fn a_new_connection_costs_what_the_count_costs_beyond_a_kept_one() {
        let batch = count(4);
        let rows = [Row::of(COUNT, &batch, 4_000), Row::of(NEW_CONNECTIONS, &batch, 10_000)];
        assert_eq!((rows[0].status, rows[0].instructions_per_request), (200, 1_000));
        assert_eq!(new_connection_cost(&rows).unwrap(), 1_500);
    }
}
