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
use serde_json::json;
use xshell::{Shell, cmd};

use crate::stack::{Layout, Stack, callgrind_file};
use crate::topology::Topology;
use crate::workspace::{repo_root, run_quietly};

const COUNT: &str = "count";
const NEW_CONNECTIONS: &str = "count, a new connection each";

/// One request of a batch (a POST when it has a body), and the status it must get.
struct Request {
    path: String,
    body: Option<String>,
    expected: u16,
}

/// What a batch of one kind cost one process, per request; a row without a status is the
/// difference of two others.
#[derive(Serialize)]
struct Row {
    process: String,
    kind: &'static str,
    status: Option<u16>,
    instructions_per_request: i64,
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
    let stack = Stack::start(sh, 0, &Layout::default(), Some(out_dir.clone()))?;
    let rows = measure(sh, &stack, &out_dir, requests);
    stack.stop()?;
    let rows = rows?;
    println!("instructions per request ({requests} requests a kind):");
    println!("{:<8} {:<34} {:>6} {:>12}", "process", "kind", "status", "instructions");
    for Row { process, kind, status, instructions_per_request } in &rows {
        let status = status.map(|status| status.to_string()).unwrap_or_default();
        println!("{process:<8} {kind:<34} {status:>6} {instructions_per_request:>12}");
    }
    let json = out_dir.join("instructions.json");
    let report = json!({ "requests_per_kind": requests, "rows": rows });
    sh.write_file(&json, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", json.display());
    Ok(())
}

fn measure(sh: &Shell, stack: &Stack, out_dir: &Path, requests: usize) -> Result<Vec<Row>> {
    let topology = Topology::load(&repo_root())?;
    let (kept, fresh) = (agent(true), agent(false));
    let counts = || (0..requests).map(|_| get("/contagem-pessoas".into(), 200)).collect();
    let mut rows = Vec::new();
    // The replica listens on `HOST`, which valgrind also puts in the names of the pipes
    // `callgrind_control` reaches it by; nginx inherits this process's.
    let (name, port) = &topology.replicas[0];
    let mut replica = Callgrind::of(sh, stack, out_dir, name, Some("127.0.0.1"), *port)?;
    // The first round is a warm-up, uncounted: the first use of a code path or of a pooled
    // database connection (which prepares its statements) is not what a request costs.
    for (round, counted) in [("w", false), ("m", true)] {
        let creates = (0..requests).map(|i| post(person(round, i), 201)).collect();
        let created = replica.run(counted.then_some("create"), &kept, creates, &mut rows)?;
        ensure!(
            created.len() == requests,
            "{} of {requests} creates gave a Location",
            created.len()
        );
        for (kind, batch) in kinds(&created) {
            replica.run(counted.then_some(kind), &kept, batch, &mut rows)?;
        }
        replica.run(counted.then_some(NEW_CONNECTIONS), &fresh, counts(), &mut rows)?;
    }
    let (name, port) = (&topology.load_balancer, topology.load_balancer_port);
    let mut nginx = Callgrind::of(sh, stack, out_dir, name, None, port)?;
    for counted in [false, true] {
        nginx.run(counted.then_some(COUNT), &kept, counts(), &mut rows)?;
        nginx.run(counted.then_some(NEW_CONNECTIONS), &fresh, counts(), &mut rows)?;
    }
    let new_connections = [&replica.name, &nginx.name].map(|name| new_connection(&rows, name));
    rows.extend(new_connections.into_iter().collect::<Result<Vec<_>>>()?);
    Ok(rows)
}

/// What a new connection costs `process` beyond a request on a kept one: the count on a new
/// connection each, less the count on a kept one.
fn new_connection(rows: &[Row], process: &str) -> Result<Row> {
    let cost = |kind: &str| {
        let row = rows.iter().find(|row| row.process == process && row.kind == kind);
        row.map(|row| row.instructions_per_request).with_context(|| format!("no {kind} row"))
    };
    Ok(Row {
        process: process.to_owned(),
        kind: "a new connection, beyond a kept one",
        status: None,
        instructions_per_request: cost(NEW_CONNECTIONS)? - cost(COUNT)?,
    })
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

fn post(body: String, expected: u16) -> Request {
    Request { path: "/pessoas".into(), body: Some(body), expected }
}

fn get(path: String, expected: u16) -> Request {
    Request { path, body: None, expected }
}

/// Every kind after the creates, given the paths of the people they created.
fn kinds(created: &[String]) -> Vec<(&'static str, Vec<Request>)> {
    let each = |make: &dyn Fn(usize) -> Request| (0..created.len()).map(make).collect();
    let invalid = r#"{"apelido":"x","nome":"Nome","nascimento":"2023-02-29","stack":null}"#;
    let mistyped = r#"{"apelido":"x","nome":1,"nascimento":"2000-10-01","stack":null}"#;
    let unknown = |i| get(format!("/pessoas/00000000-0000-4000-8000-{i:012}"), 404);
    vec![
        ("create, a rule broken", each(&|_| post(invalid.into(), 422))),
        ("create, a field mistyped", each(&|_| post(mistyped.into(), 400))),
        ("lookup by id", each(&|i| get(created[i].clone(), 200))),
        ("lookup, unknown id", each(&unknown)),
        // Every person has the stack item, so each answer holds the most a search gives (50).
        ("search, 50 people found", each(&|_| get("/pessoas?t=Rust".into(), 200))),
        ("search, nobody found", each(&|_| get("/pessoas?t=zzzzzz".into(), 200))),
        ("search without t", each(&|_| get("/pessoas".into(), 400))),
        (COUNT, each(&|_| get("/contagem-pessoas".into(), 200))),
    ]
}

/// A service of the stack running under callgrind, collecting nothing until told to.
struct Callgrind<'a> {
    sh: &'a Shell,
    name: String,
    pid: String,
    /// The `HOST` the service runs with, if it is not this process's.
    host: Option<&'a str>,
    base_url: String,
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
        port: u16,
    ) -> Result<Callgrind<'a>> {
        Ok(Callgrind {
            sh,
            name: name.to_owned(),
            pid: stack.pid_of(name)?.to_string(),
            host,
            base_url: format!("http://127.0.0.1:{port}"),
            out_file: callgrind_file(out_dir, name),
            dumps: 0,
        })
    }

    /// Sends `batch` through `agent`, checking each status, and returns the `Location` headers
    /// it answered. With a `kind`, the instructions the process executed meanwhile are counted
    /// and added to `rows`.
    fn run(
        &mut self,
        kind: Option<&'static str>,
        agent: &ureq::Agent,
        batch: Vec<Request>,
        rows: &mut Vec<Row>,
    ) -> Result<Vec<String>> {
        let Some(kind) = kind else { return send(agent, &self.base_url, &batch) };
        self.control("--instr=on")?;
        let sent = send(agent, &self.base_url, &batch);
        self.control("--instr=off")?;
        let locations = sent?;
        self.control("--dump")?;
        self.dumps += 1;
        let dump = PathBuf::from(format!("{}.{}", self.out_file.display(), self.dumps));
        let text = std::fs::read_to_string(&dump)
            .with_context(|| format!("callgrind wrote no {}", dump.display()))?;
        let total = total_instructions(&text).with_context(|| dump.display().to_string())?;
        rows.push(Row {
            process: self.name.clone(),
            kind,
            status: batch.first().map(|request| request.expected),
            instructions_per_request: (total / batch.len().max(1) as u64) as i64,
        });
        Ok(locations)
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
fn send(agent: &ureq::Agent, base_url: &str, batch: &[Request]) -> Result<Vec<String>> {
    let mut locations = Vec::new();
    for request in batch {
        let url = format!("{base_url}{}", request.path);
        let mut response = match &request.body {
            None => agent.get(&url).call(),
            Some(body) => {
                agent.post(&url).header("content-type", "application/json").send(body.as_str())
            }
        }
        .with_context(|| url.clone())?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().with_context(|| url.clone())?;
        ensure!(status == request.expected, "{url}: {status}, not {}: {body}", request.expected);
        if let Some(location) = response.headers().get("location") {
            locations.push(location.to_str()?.to_owned());
        }
    }
    Ok(locations)
}

/// The total of the first event (`Ir` first, as callgrind counts by default) in a callgrind
/// dump: its `totals:` line, or the `summary:` line older versions wrote.
fn total_instructions(dump: &str) -> Result<u64> {
    let line = |prefix: &str| dump.lines().find_map(|line| line.strip_prefix(prefix));
    let events = line("events:").context("no events: line")?;
    ensure!(events.split_whitespace().next() == Some("Ir"), "the first event is not Ir: {events}");
    let total =
        line("totals:").or_else(|| line("summary:")).context("no totals: or summary: line")?;
    let first = total.split_whitespace().next().context("an empty totals: line")?;
    first.parse().with_context(|| format!("{first:?} is not a count"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines that matter of a dump callgrind 3.19 wrote with `callgrind_control --dump`.
    const DUMP: &str = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\n\
        desc: Trigger: dump\npositions: line\nevents: Ir\nsummary: 1234567\n\n\
        ob=(1) /work/target/release/rinha\nfn=(1) main\n0 42\n\ntotals: 1234567\n";

    #[test]
    fn the_total_is_read_from_the_totals_line_or_else_the_summary() {
        assert_eq!(total_instructions(DUMP).unwrap(), 1_234_567);
        let without_totals = DUMP.replace("totals: 1234567\n", "");
        assert_eq!(total_instructions(&without_totals).unwrap(), 1_234_567);
        let other_event = DUMP.replace("events: Ir", "events: Dr");
        assert!(total_instructions(&other_event).is_err());
        assert!(total_instructions(&without_totals.replace("summary: 1234567\n", "")).is_err());
        assert!(total_instructions(&DUMP.replace("totals: 1234567", "totals: many")).is_err());
    }

    #[test]
    fn a_new_connection_costs_what_the_count_costs_beyond_a_kept_one() {
        let row = |kind, instructions_per_request| Row {
            process: "nginx".into(),
            kind,
            status: Some(200),
            instructions_per_request,
        };
        let rows = [row(COUNT, 1_000), row(NEW_CONNECTIONS, 2_500)];
        assert_eq!(new_connection(&rows, "nginx").unwrap().instructions_per_request, 1_500);
        assert!(new_connection(&rows, "api1").is_err());
    }
}
