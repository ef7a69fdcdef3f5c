//! The replay binary against a small in-memory service on loopback that follows the API contract, at a
//! scale that keeps the run to a few seconds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Default)]
struct People {
    by_apelido: HashMap<String, usize>,
    requests: u64,
    /// Answer 500 to every n-th creation, to see failures reported.
    fail_every: Option<u64>,
}

async fn handle(
    request: Request<Incoming>,
    people: Arc<Mutex<People>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let mut people = people.lock().unwrap();
    people.requests += 1;
    let reply = |status: StatusCode, text: String| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        response
    };
    let path = parts.uri.path();
    let response = match (&parts.method, path) {
        (&Method::POST, "/pessoas") => {
            if people
                .fail_every
                .is_some_and(|every| people.requests.is_multiple_of(every))
            {
                reply(StatusCode::INTERNAL_SERVER_ERROR, String::new())
            } else if serde_json::from_slice::<Value>(&body).is_err() {
                reply(StatusCode::BAD_REQUEST, String::new())
            } else {
                match replay::validation::accepted_apelido(&body) {
                    Some(apelido) if !people.by_apelido.contains_key(&apelido) => {
                        let id = people.by_apelido.len();
                        people.by_apelido.insert(apelido, id);
                        let mut response = reply(StatusCode::CREATED, String::new());
                        response
                            .headers_mut()
                            .insert("location", format!("/pessoas/{id}").parse().unwrap());
                        response
                    }
                    _ => reply(StatusCode::UNPROCESSABLE_ENTITY, String::new()),
                }
            }
        }
        (&Method::GET, "/pessoas")
            if parts
                .uri
                .query()
                .is_some_and(|query| query.starts_with("t=")) =>
        {
            reply(StatusCode::OK, "[]".to_owned())
        }
        (&Method::GET, "/pessoas") => reply(StatusCode::BAD_REQUEST, String::new()),
        (&Method::GET, "/contagem-pessoas") => {
            reply(StatusCode::OK, people.by_apelido.len().to_string())
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            format!(
                "# TYPE http_requests_total counter\nhttp_requests_total{{route=\"any\"}} {}\n",
                people.requests
            ),
        ),
        (&Method::GET, other) => match other
            .strip_prefix("/pessoas/")
            .and_then(|id| id.parse::<usize>().ok())
        {
            Some(id) if id < people.by_apelido.len() => reply(StatusCode::OK, "{}".to_owned()),
            _ => reply(StatusCode::NOT_FOUND, String::new()),
        },
        _ => reply(StatusCode::NOT_FOUND, String::new()),
    };
    Ok(response)
}

/// Starts the service on a free loopback port, on a thread of its own.
fn start_service(fail_every: Option<u64>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let people = Arc::new(Mutex::new(People {
        fail_every,
        ..People::default()
    }));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let people = Arc::clone(&people);
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(request, Arc::clone(&people)));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    address
}

fn scratch_directory(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("replay-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

fn replay(arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(arguments)
        .output()
        .unwrap()
}

/// A short run judged by `checks` (`--strict`, `--assert ...`, `--junit FILE`).
fn run_against(address: SocketAddr, directory: &Path, checks: &[&str]) -> std::process::Output {
    let payloads = directory.join("payloads.tsv");
    let generated = replay(&[
        "payloads",
        "--out",
        payloads.to_str().unwrap(),
        "--count",
        "3000",
        "--seed",
        "5",
    ]);
    assert!(generated.status.success());
    let terms = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/termos-busca.tsv");
    let base_url = format!("http://{address}");
    let metrics_url = format!("http://{address}/metrics");
    let out = directory.join("out");
    let arguments = [
        "run",
        "--payloads",
        payloads.to_str().unwrap(),
        "--terms",
        terms.to_str().unwrap(),
        "--base-url",
        &base_url,
        "--scale",
        "0.02",
        "--metrics",
        &metrics_url,
        "--out",
        out.to_str().unwrap(),
    ];
    replay(&[&arguments[..], checks].concat())
}

fn read_summary(directory: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(directory.join("out/summary.json")).unwrap())
        .unwrap()
}

#[test]
fn a_correct_service_passes_with_every_session_accounted_for() {
    let directory = scratch_directory("pass");
    let output = run_against(start_service(None), &directory, &["--strict"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("PASS: count "),
        "{stdout}"
    );

    let summary = read_summary(&directory);
    let arrivals = replay::simulation::schedule(0.02, 1.0, replay::simulation::DEFAULT_SEED);
    let creation = arrivals
        .iter()
        .filter(|arrival| arrival.scenario == replay::simulation::Scenario::Creation)
        .count();
    assert_eq!(summary["creation_sessions"], creation as u64);
    assert_eq!(summary["requests"]["criação"]["count"], creation as u64);
    assert_eq!(summary["requests"]["all"]["ko"], 0);
    assert!(summary["expected_count"].as_u64().unwrap() > 0);
    assert_eq!(summary["count_after"], summary["expected_count"]);
    assert_eq!(summary["created_201"], summary["expected_count"]);
    // Every 201 is followed by a lookup of the location it gave.
    assert_eq!(
        summary["requests"]["consulta"]["count"],
        summary["created_201"]
    );
    assert!(summary["replay_cpu_seconds"].as_f64().unwrap() > 0.0);

    // Gatling's layout: what the contest's results script reads is the OK requests' p99, in whole ms.
    let stats: Value = serde_json::from_str(
        &std::fs::read_to_string(directory.join("out/js/stats.json")).unwrap(),
    )
    .unwrap();
    let p99_ok = summary["requests"]["all"]["times"]["ok"]["p99_ms"]
        .as_f64()
        .unwrap();
    assert_eq!(
        stats["stats"]["percentiles4"]["ok"].as_f64().unwrap(),
        p99_ok.round()
    );
    assert_eq!(
        stats["stats"]["numberOfRequests"]["total"],
        summary["requests"]["all"]["count"]
    );
    assert_eq!(
        stats["contents"]["req_criac-a-o-ce502"]["stats"]["numberOfRequests"]["ok"],
        summary["requests"]["criação"]["ok"]
    );
    assert!(directory.join("out/js/stats.js").exists());

    let report = std::fs::read_to_string(directory.join("out/report.html")).unwrap();
    assert!(
        report.matches("<svg").count() >= 5,
        "four run charts and the scraped request counter"
    );
    assert!(report.contains("http_requests_total"));

    // The stack's figures arrive after the run and are merged in by `report`.
    let stack = directory.join("stack.json");
    std::fs::write(&stack, r#"{"services": {"api1": {"cpu_seconds": 1.5, "peak_memory_bytes": 1048576, "cpu_limit": 0.25, "memory_limit_bytes": 268435456}}}"#).unwrap();
    let out = directory.join("out");
    let rerendered = replay(&[
        "report",
        "--out",
        out.to_str().unwrap(),
        "--stack-json",
        stack.to_str().unwrap(),
        "--strict",
    ]);
    assert!(rerendered.status.success());
    assert_eq!(
        read_summary(&directory)["stack"]["services"]["api1"]["cpu_seconds"],
        1.5
    );
    assert!(String::from_utf8_lossy(&rerendered.stdout).contains("api1"));
    std::fs::remove_dir_all(directory).unwrap();
}

#[test]
fn server_errors_are_kos_and_fail_a_strict_run() {
    let directory = scratch_directory("fail");
    let junit = directory.join("junit.xml");
    let output = run_against(
        start_service(Some(25)),
        &directory,
        &[
            "--assert",
            "p99.ok<60s",
            "--assert",
            "ko=0",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("FAIL: "),
        "{stdout}"
    );
    assert!(stdout.contains("status.find.in(201, 422, 400), but actually found 500"));
    let summary = read_summary(&directory);
    assert!(summary["requests"]["criação"]["ko"].as_u64().unwrap() > 0);
    assert_eq!(summary["verdict"]["pass"], false);
    let checks: Vec<(&str, bool)> = summary["verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| {
            (
                check["assertion"].as_str().unwrap(),
                check["pass"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(checks, [("p99.ok<60s", true), ("ko=0", false)]);
    let junit = std::fs::read_to_string(junit).unwrap();
    assert!(junit.contains("tests=\"2\" failures=\"1\""), "{junit}");
    assert_eq!(junit.matches("<failure ").count(), 1, "{junit}");
    assert!(junit.contains("name=\"ko=0\"><failure"), "{junit}");

    // The same run judged again, by a condition it meets, passes.
    let out = directory.join("out");
    let again = replay(&["report", "--out", out.to_str().unwrap(), "--assert", "ok>0"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("PASS: "));
    std::fs::remove_dir_all(directory).unwrap();
}

#[test]
fn a_gatling_report_is_judged_by_the_same_conditions() {
    let directory = scratch_directory("judge");
    std::fs::create_dir_all(directory.join("js")).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gatling-3.9-stats.json");
    std::fs::copy(fixture, directory.join("js/stats.json")).unwrap();
    let junit = directory.join("junit.xml");
    let judge = |conditions: &[&str]| {
        let mut arguments = vec!["judge", directory.to_str().unwrap(), "--count", "46225"];
        arguments.extend(
            conditions
                .iter()
                .flat_map(|condition| ["--assert", condition]),
        );
        arguments.extend(["--junit", junit.to_str().unwrap()]);
        replay(&arguments)
    };

    let passed = judge(&["p99.ok<18s", "count>=46000", "busca válida:ok>9000"]);
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stdout)
    );
    assert!(String::from_utf8_lossy(&passed.stdout).contains("PASS: 3 conditions hold"));

    // The contest's run had 3,140 KOs.
    let failed = judge(&["ko=0", "count>=46300", "p99.ok<=17418ms"]);
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(stdout.contains("FAIL ko=0: ko 3140"), "{stdout}");
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.contains("tests=\"3\" failures=\"2\""), "{junit}");
    std::fs::remove_dir_all(directory).unwrap();
}
