//! `cargo xtask http-fuzz`: generated request lines, headers and bodies, sent as raw bytes to
//! each replica's own ports (the API's and the metrics') and through the load balancer, as `cargo xtask up` runs them
//! (release build). After every case each replica must answer a health request from the same
//! process, and at the end none may have counted a panic. No answer may be a server error but
//! `501` (a transfer coding not implemented) and `505` (an HTTP version not supported), the two
//! RFC 9112 and RFC 9110 prescribe.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use xshell::Shell;

use crate::stack::{Layout, Stack};
use crate::topology::Topology;
use crate::workspace::repo_root;

/// How long a case's answer may take: most come at once, and a request the server is still
/// waiting on (a body shorter than announced) is abandoned.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// Request lines that once ended a replica: the target has no path, and warp's path filter
/// panicked on it. Each must get `400` straight from a replica.
const REGRESSIONS: [&str; 2] = [
    "CONNECT 127.0.0.1:5432 HTTP/1.1\r\nHost: 127.0.0.1:5432\r\n\r\n",
    "GET contagem-pessoas HTTP/1.1\r\nHost: rinha\r\n\r\n",
];

pub fn http_fuzz(sh: &Shell, cases: usize, seed: u64) -> Result<()> {
    let started_here = match Stack::load()? {
        Some(stack) if stack.is_running()? => None,
        Some(stack) => {
            stack.stop()?;
            Some(Stack::start(sh, 0, &Layout::default(), None)?)
        }
        None => Some(Stack::start(sh, 0, &Layout::default(), None)?),
    };
    let outcome = fuzz(cases, seed);
    if let Some(stack) = started_here {
        stack.stop()?;
    }
    outcome
}

fn fuzz(cases: usize, seed: u64) -> Result<()> {
    let topology = Topology::load(&repo_root())?;
    let stack = Stack::load()?.context("the native stack is not up")?;
    let replicas: Vec<Replica> = topology
        .replicas
        .iter()
        .map(|(name, port)| {
            let metrics_port = topology.metrics_port(name)?;
            Ok(Replica { name: name.clone(), port: *port, metrics_port, pid: stack.pid_of(name)? })
        })
        .collect::<Result<_>>()?;
    // Every port of the stack but the database's.
    let mut ports = topology.ports();
    ports.retain(|port| *port != topology.database_port);

    for request in REGRESSIONS {
        for replica in &replicas {
            for port in [replica.port, replica.metrics_port] {
                let answer = exchange(port, request.as_bytes())?;
                ensure!(
                    answer.status == Some(400),
                    "{request:?} to {} on port {port} got {answer:?}, not 400",
                    replica.name
                );
                replica.check(request.as_bytes())?;
            }
        }
    }

    let started = Instant::now();
    let mut generator = Generator::new(seed);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut refused = Vec::new();
    for case in 0..cases {
        let request = generator.case();
        let port = ports[case % ports.len()];
        let answer = exchange(port, &request)?;
        let status = answer.status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        *statuses.entry(status).or_default() += 1;
        if answer.status.is_some_and(|status| status >= 500 && status != 501 && status != 505) {
            refused.push(format!("port {port}: {} for {}", answer.head, shown(&request)));
        }
        for replica in &replicas {
            replica.check(&request)?;
        }
    }
    for replica in &replicas {
        let panics = replica.panics()?;
        ensure!(panics == 0, "{} counted {panics} panics", replica.name);
    }
    let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    println!(
        "{} generated cases (seed {seed}) and {} regression lines in {:.1} s; every replica \
         kept its process and counted no panic; answers {}",
        cases,
        REGRESSIONS.len(),
        started.elapsed().as_secs_f64(),
        statuses.join(", ")
    );
    if !refused.is_empty() {
        bail!("{} server errors:\n{}", refused.len(), refused.join("\n"));
    }
    Ok(())
}

struct Replica {
    name: String,
    port: u16,
    metrics_port: u16,
    pid: i32,
}

impl Replica {
    /// Fails unless the process that was fuzzed still runs and answers.
    fn check(&self, after: &[u8]) -> Result<()> {
        let answer = exchange(self.port, b"GET /contagem-pessoas HTTP/1.1\r\nHost: rinha\r\n\r\n")?;
        let pid = Stack::live_pid(&self.name)?;
        ensure!(
            answer.status == Some(200) && pid == Some(self.pid),
            "{} (pid {}) is no longer serving (now pid {pid:?}, health {answer:?}) after {}",
            self.name,
            self.pid,
            shown(after)
        );
        Ok(())
    }

    fn panics(&self) -> Result<u64> {
        let request = b"GET /metrics HTTP/1.1\r\nHost: rinha\r\nConnection: close\r\n\r\n";
        let mut stream = connect(self.metrics_port)?;
        stream.write_all(request)?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        let line = text.lines().find(|line| line.starts_with("panics_total "));
        let value = line.and_then(|line| line.split_whitespace().nth(1)?.parse().ok());
        value.with_context(|| format!("{} exports no panics_total", self.name))
    }
}

/// What came back for one case.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    /// The status line, as received.
    head: String,
}

fn connect(port: u16) -> Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("nothing accepts connections on port {port}"))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(stream)
}

/// Sends `request` on a new connection and reads the answer's head.
fn exchange(port: u16, request: &[u8]) -> Result<Answer> {
    let mut stream = connect(port)?;
    // A server may answer and close before it has read everything.
    let _ = stream.write_all(request);
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
    }
    let text = String::from_utf8_lossy(&received);
    let head = text.lines().next().unwrap_or_default().to_owned();
    let status = head.strip_prefix("HTTP/1.").and_then(|rest| rest.get(2..5)?.parse().ok());
    Ok(Answer { status, head })
}

/// A request for a message: printable, and cut short.
fn shown(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(&request[..request.len().min(300)]);
    format!("{:?}{}", text, if request.len() > 300 { " …" } else { "" })
}

/// Each list's first entry is plain.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PRI", "get",
    "post", "connect", "Get", "FOO", "M-SEARCH", "", "G ET", "GET\t", "\0GET", "GÉT",
];

/// Every target form: origin, absolute, authority, asterisk, empty, over-long, and malformed.
fn targets() -> Vec<String> {
    let mut targets: Vec<String> = [
        "/pessoas",
        "/pessoas?t=a",
        "/pessoas?t=%ZZ",
        "/pessoas?t=",
        "/pessoas/0190d7a4-5a1e-7c3b-9f0e-6b2f3c1d4e5f",
        "/pessoas/x",
        "/contagem-pessoas",
        "/metrics",
        "/",
        "//",
        "/pessoas/../metrics",
        "/%2e%2e/metrics",
        "/%00",
        "/pessoas?t=a b",
        "/pessoas#fragmento",
        "http://127.0.0.1/contagem-pessoas",
        "http://rinha",
        "HTTP://rinha/pessoas?t=a",
        "https://rinha/contagem-pessoas",
        "ftp://rinha/x",
        "http://user:senha@rinha/contagem-pessoas",
        "http://[::1]:8081/pessoas?t=a",
        "127.0.0.1:5432",
        "localhost:8081",
        "[::1]:80",
        "contagem-pessoas",
        "pessoas?t=a",
        "*",
        "",
        "?t=a",
        "#x",
        "/\u{7f}",
    ]
    .map(str::to_owned)
    .into();
    targets.push(format!("/{}", "a".repeat(8_000)));
    targets.push(format!("/pessoas?t={}", "a".repeat(70_000)));
    targets
}

const VERSIONS: &[&str] = &[
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/0.9",
    "HTTP/2.0",
    "HTTP/2",
    "HTTP/1.2",
    "HTTP/9.9",
    "http/1.1",
    "HTTP/1.1 ",
    "",
    "HTTP/11",
    "HTTP/1.1 extra",
];

/// Header lines beside `Host`: duplicate and conflicting framing, obs-fold, odd names and
/// values.
fn headers() -> Vec<String> {
    let mut headers: Vec<String> = [
        "Content-Length: 2",
        "Content-Length: 2\r\nContent-Length: 2",
        "Content-Length: 2\r\nContent-Length: 3",
        "Content-Length: 2, 2",
        "Content-Length: -1",
        "Content-Length: +2",
        "Content-Length: 0x2",
        "Content-Length: 99999999999999999999",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: identity",
        "Transfer-Encoding: chunked\r\nContent-Length: 2",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding : chunked",
        "Expect: 100-continue",
        "Expect: tea",
        "Connection: close",
        "Connection: upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__",
        "Connection: keep-alive, te",
        "Content-Type: application/json; charset=utf-16",
        "X-Dobrado: a\r\n b",
        "Host: outro",
        "Host:",
        "Sem-dois-pontos",
        "X-Nul: a\0b",
        "X-Del: a\u{7f}b",
        "X-Latin: a\u{ff}b",
        "\0: x",
        ": vazio",
    ]
    .map(str::to_owned)
    .into();
    headers.push(format!("X-Longo: {}", "a".repeat(20_000)));
    headers.push((0..200).map(|i| format!("X-{i}: {i}")).collect::<Vec<_>>().join("\r\n"));
    headers
}

const BODIES: &[&str] = &[
    "",
    "{}",
    r#"{"apelido":"fuzz","nome":"Fuzz","nascimento":"2000-01-01","stack":null}"#,
    "{\"apelido\":",
    "2\r\n{}\r\n0\r\n\r\n",
    "zz\r\n{}\r\n0\r\n\r\n",
    "2;ext=1\r\n{}\r\n0\r\nTrailer: x\r\n\r\n",
    "ffffffffffffffffff\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
];

/// Request cases from a seed: each a method, a target and a version, then the `Host` header
/// (or not), up to three other header lines, a body, and now and then a bare `\n` for line
/// ends or a few bytes changed at random.
struct Generator {
    random: fastrand::Rng,
    targets: Vec<String>,
    headers: Vec<String>,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        Generator { random: fastrand::Rng::with_seed(seed), targets: targets(), headers: headers() }
    }

    fn case(&mut self) -> Vec<u8> {
        let random = &mut self.random;
        // Half the time the first, plain, entry of a list, so that a hostile header or body is
        // often carried by a request line the server accepts.
        let mut index = |len: usize| if random.bool() { 0 } else { random.usize(..len) };
        let method = METHODS[index(METHODS.len())].to_owned();
        let target = self.targets[index(self.targets.len())].clone();
        let version = VERSIONS[index(VERSIONS.len())].to_owned();
        let mut lines = vec![format!("{method} {target} {version}")];
        if random.u8(..10) > 0 {
            lines.push("Host: rinha".to_owned());
        }
        for _ in 0..random.usize(..=3) {
            lines.push(self.headers[random.usize(..self.headers.len())].clone());
        }
        let end = if random.u8(..10) == 0 { "\n" } else { "\r\n" };
        let mut request = format!("{}{end}{end}", lines.join(end)).into_bytes();
        request.extend_from_slice(BODIES[random.usize(..BODIES.len())].as_bytes());
        if random.u8(..5) == 0 {
            for _ in 0..random.usize(1..=3) {
                let at = random.usize(..request.len());
                match random.u8(..3) {
                    0 => request[at] = random.u8(..),
                    1 => request.insert(at, random.u8(..)),
                    _ => drop(request.remove(at)),
                }
            }
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_cases() {
        let cases = |seed| {
            let mut generator = Generator::new(seed);
            (0..50).map(|_| generator.case()).collect::<Vec<_>>()
        };
        assert_eq!(cases(7), cases(7));
        assert_ne!(cases(7), cases(8));
    }

    #[test]
    fn a_few_thousand_cases_cover_every_method_target_and_version() {
        let mut generator = Generator::new(2023);
        let cases: Vec<String> =
            (0..3_000).map(|_| String::from_utf8_lossy(&generator.case()).into_owned()).collect();
        let starts = |prefix: String| cases.iter().any(|case| case.starts_with(&prefix));
        for method in METHODS {
            assert!(starts(format!("{method} ")), "no case with method {method:?}");
        }
        let first_lines: Vec<&str> = cases.iter().filter_map(|case| case.lines().next()).collect();
        for target in targets() {
            let with_target = |line: &&str| line.contains(&format!(" {target} "));
            assert!(first_lines.iter().any(with_target), "no case with target {target:.40}");
        }
        for version in VERSIONS {
            let line_end =
                |case: &String| case.lines().next().is_some_and(|line| line.ends_with(version));
            assert!(cases.iter().any(line_end), "no case with version {version:?}");
        }
        assert!(cases.iter().any(|case| case.contains("\r\n b")), "no obs-fold");
        assert!(cases.iter().any(|case| case.contains("Content-Length: 2\r\nContent-Length: 3")));
    }
}
