//! One replay of the simulation against a running service, from the feeder files to the output files.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::assertion::Assertion;
use crate::cli::RunOptions;
use crate::client::{Target, UserConnection, encode_query_value};
use crate::metrics::{self, ReplicaScrape};
use crate::payloads::{PAYLOAD_COLUMN, TERM_COLUMN, read_feeder};
use crate::report::{self, Series};
use crate::rng::SplitMix64;
use crate::simulation::{self, Arrival, Scenario, UserPlan};
use crate::statistics::{self, InjectionLag, Recorder, Timeline, UserSpan};
use crate::summary::{Summary, Verdict, read_stack};
use crate::{gatling, rusage, validation};

const PAUSE_MIN_MS: u64 = 1;
const PAUSE_MAX_MS: u64 = 30;
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Runs the simulation, judges it by `assertions`, writes `summary.json`, `series.json`, `report.html` and
/// Gatling's `js/stats.json` and `js/stats.js` into `--out`, and returns the summary.
pub fn run(options: &RunOptions, assertions: &[Assertion]) -> Result<Summary, String> {
    let payloads: Vec<Bytes> = read_feeder(&options.payloads, PAYLOAD_COLUMN)?
        .into_iter()
        .map(Bytes::from)
        .collect();
    let terms = read_feeder(&options.terms, TERM_COLUMN)?;
    let arrivals = simulation::schedule(options.scale, options.rate, options.seed);
    let sessions = |scenario| {
        arrivals
            .iter()
            .filter(|arrival| arrival.scenario == scenario)
            .count()
    };
    let creation_sessions = sessions(Scenario::Creation);
    // The circular feeder hands out payloads in file order, starting over at the end.
    let sent = payloads.iter().cycle().take(creation_sessions);
    let expected_count = validation::expected_people(sent.map(|payload| &payload[..]));
    std::fs::create_dir_all(&options.out)
        .map_err(|error| format!("{}: {error}", options.out.display()))?;

    rusage::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("runtime: {error}"))?;
    let observed = runtime.block_on(drive(options, &arrivals, payloads, &terms))?;

    let run = observed.duration;
    let requests = statistics::request_stats(&observed.recorder.requests, run);
    let stack = options.stack_json.as_deref().and_then(|path| {
        read_stack(path)
            .map_err(|error| eprintln!("stack figures left out: {error}"))
            .ok()
    });
    let mut summary = Summary {
        base_url: options.base_url.clone(),
        payloads_file: options.payloads.display().to_string(),
        terms_file: options.terms.display().to_string(),
        scale: options.scale,
        rate: options.rate,
        seed: options.seed,
        started_at_unix_seconds: observed.started_at_unix_seconds,
        duration_seconds: run.as_secs_f64(),
        creation_sessions: creation_sessions as u64,
        valid_search_sessions: sessions(Scenario::ValidSearch) as u64,
        invalid_search_sessions: sessions(Scenario::InvalidSearch) as u64,
        errors: statistics::errors(&observed.recorder.requests),
        requests,
        created_201: observed.recorder.created_201,
        count_before: observed.count_before,
        count_after: observed.count_after,
        expected_count: expected_count as u64,
        stack,
        replay_cpu_seconds: observed.cpu_seconds,
        replay_peak_rss_bytes: rusage::peak_rss_bytes(),
        injection_lag: InjectionLag::of(&observed.recorder.users),
        verdict: Verdict::default(),
    };
    summary.judge(assertions);
    let series = Series {
        timeline: Timeline::of(&observed.recorder, run),
        service_metrics: metrics::charts(&observed.scrapes),
    };
    write_outputs(&options.out, &summary, &series)?;
    Ok(summary)
}

/// Renders an earlier run's outputs again, judged by `assertions`, adding the stack's resource figures when
/// given.
pub fn rerender(
    out: &Path,
    stack_json: Option<&Path>,
    assertions: &[Assertion],
) -> Result<Summary, String> {
    let read = |name: &str| {
        let path = out.join(name);
        std::fs::read_to_string(&path).map_err(|error| format!("{}: {error}", path.display()))
    };
    let mut summary: Summary =
        serde_json::from_str(&read("summary.json")?).map_err(|error| error.to_string())?;
    let series: Series =
        serde_json::from_str(&read("series.json")?).map_err(|error| error.to_string())?;
    if let Some(path) = stack_json {
        summary.stack = Some(read_stack(path)?);
    }
    summary.judge(assertions);
    write_outputs(out, &summary, &series)?;
    Ok(summary)
}

fn write_outputs(out: &Path, summary: &Summary, series: &Series) -> Result<(), String> {
    let write = |name: &str, contents: String| {
        let path = out.join(name);
        std::fs::write(&path, contents).map_err(|error| format!("{}: {error}", path.display()))
    };
    write(
        "summary.json",
        serde_json::to_string_pretty(summary).map_err(|error| error.to_string())? + "\n",
    )?;
    write(
        "series.json",
        serde_json::to_string(series).map_err(|error| error.to_string())?,
    )?;
    write("report.html", report::render(summary, series))?;
    gatling::write(out, summary)
}

struct Observed {
    recorder: Recorder,
    scrapes: Vec<ReplicaScrape>,
    duration: Duration,
    started_at_unix_seconds: f64,
    count_before: Option<u64>,
    count_after: Option<u64>,
    cpu_seconds: f64,
}

async fn drive(
    options: &RunOptions,
    arrivals: &[Arrival],
    payloads: Vec<Bytes>,
    terms: &[String],
) -> Result<Observed, String> {
    let target = Target::resolve(&options.base_url, options.private_network).await?;
    let target = Arc::new(target.connected_from(&options.source_addresses));
    let count_before = Some(count_people(&target).await.map_err(|error| {
        format!(
            "the service does not answer GET /contagem-pessoas at {}: {error}",
            options.base_url
        )
    })?);
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let cpu_before = rusage::cpu_seconds();
    let started_at_unix_seconds = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    let started = Instant::now();
    let (stop, stopped) = watch::channel(false);

    let injection = async {
        inject(
            arrivals,
            &payloads,
            terms,
            &target,
            &recorder,
            options.seed,
            started,
        )
        .await;
        let _ = stop.send(true);
    };
    let (scrapes, (), ()) = tokio::join!(
        metrics::scrape_until(
            &options.metrics,
            options.private_network,
            started,
            stopped.clone()
        ),
        injection,
        progress(&recorder, arrivals.len(), started, stopped),
    );
    let duration = started.elapsed();
    let cpu_seconds = rusage::cpu_seconds() - cpu_before;
    let count_after = count_people(&target)
        .await
        .map_err(|error| eprintln!("count after the run: {error}"))
        .ok();
    let recorder = std::mem::take(
        &mut *recorder
            .lock()
            .expect("no user panics while holding the recorder"),
    );
    Ok(Observed {
        recorder,
        scrapes,
        duration,
        started_at_unix_seconds,
        count_before,
        count_after,
        cpu_seconds,
    })
}

/// Starts every user at its scheduled time whether or not earlier users have finished (an open workload),
/// then waits for the last one.
async fn inject(
    arrivals: &[Arrival],
    payloads: &[Bytes],
    terms: &[String],
    target: &Arc<Target>,
    recorder: &Arc<Mutex<Recorder>>,
    seed: i64,
    started: Instant,
) {
    let mut pauses = SplitMix64::new(seed as u64);
    let search_path = target.path("/pessoas");
    let (mut creation_users, mut search_users) = (0usize, 0usize);
    let mut users = JoinSet::new();
    for arrival in arrivals {
        let due = started + arrival.at;
        tokio::time::sleep_until(due.into()).await;
        let lag = Instant::now().saturating_duration_since(due);
        let plan = match arrival.scenario {
            Scenario::Creation => {
                let payload = payloads[creation_users % payloads.len()].clone();
                creation_users += 1;
                let pause = Duration::from_millis(pauses.between(PAUSE_MIN_MS, PAUSE_MAX_MS));
                UserPlan::Creation { payload, pause }
            }
            Scenario::ValidSearch => {
                let term = &terms[search_users % terms.len()];
                search_users += 1;
                UserPlan::ValidSearch {
                    path: format!("{search_path}?t={}", encode_query_value(term)),
                }
            }
            Scenario::InvalidSearch => UserPlan::InvalidSearch,
        };
        let (target, recorder) = (Arc::clone(target), Arc::clone(recorder));
        users.spawn(async move {
            let user_started = started.elapsed();
            let outcome = simulation::run_user(plan, &target, started).await;
            let span = UserSpan {
                started: user_started,
                ended: started.elapsed(),
                lag,
            };
            let mut recorder = recorder
                .lock()
                .expect("no user panics while holding the recorder");
            recorder.requests.extend(outcome.requests);
            recorder.users.push(span);
            recorder.created_201 += u64::from(outcome.created);
        });
        // Reap finished users as we go so the set holds only those still running.
        while let Some(finished) = users.try_join_next() {
            finished.expect("virtual users do not panic");
        }
    }
    while let Some(finished) = users.join_next().await {
        finished.expect("virtual users do not panic");
    }
}

/// A line on stderr every ten seconds, like Gatling's periodic console output.
async fn progress(
    recorder: &Mutex<Recorder>,
    total_users: usize,
    started: Instant,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker =
        tokio::time::interval_at((started + PROGRESS_INTERVAL).into(), PROGRESS_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        let recorder = recorder
            .lock()
            .expect("no user panics while holding the recorder");
        let ko = recorder
            .requests
            .iter()
            .filter(|record| record.failure.is_some())
            .count();
        eprintln!(
            "{:>4.0} s: {} of {total_users} users done, {} requests, {ko} KO",
            started.elapsed().as_secs_f64(),
            recorder.users.len(),
            recorder.requests.len()
        );
    }
}

async fn count_people(target: &Target) -> Result<u64, String> {
    let response = UserConnection::new(target)
        .get(&target.path("/contagem-pessoas"))
        .await
        .map_err(|failure| failure.to_string())?;
    if response.status != 200 {
        return Err(format!("status {}", response.status));
    }
    let body = String::from_utf8_lossy(&response.body);
    body.trim()
        .parse()
        .map_err(|_| format!("not a count: {body:?}"))
}
