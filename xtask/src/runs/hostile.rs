//! `--fault hostile-writer`: one client stores people whose stacks are as large as the contract
//! allows, every item distinct and holding one rare term, while four others search for that
//! term: first 49 people, one short of a search's 50, so that a search finds too few to stop
//! early, then 500 more. The searches and the writes are timed here; the replay's traffic, the
//! legitimate clients', is timed by the replay as in any run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::workspace::repo_root;

/// In every item; no person of the contest's payloads has it.
pub const TERM: &str = "zq";
/// One short of the 50 people a search returns.
const FIRST: usize = 49;
const THEN: usize = 500;
const SEARCHERS: usize = 4;
/// Each searcher's pace: a search at most this often.
const SEARCH_EVERY: Duration = Duration::from_millis(100);
/// How long the searches go on once the last person is stored.
const SEARCHING_AFTER: Duration = Duration::from_secs(10);
/// The replicas' body limit (and nginx's `client_max_body_size`).
const BODY_LIMIT: usize = 64 * 1024;
/// Each search for the term must answer within this.
pub const SEARCH_WITHIN_MS: f64 = 200.0;

/// How many items a stack may hold: openapi.yaml's `maxItems` for the new person's stack, or,
/// without one, as many as fit in the body limit.
fn items_allowed() -> Result<Option<usize>> {
    let text = std::fs::read_to_string(repo_root().join("openapi.yaml"))?;
    let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let schemas = &document["components"]["schemas"];
    let stack = schemas
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(_, schema)| &schema["properties"]["stack"])
        .find(|stack| !stack["items"]["maxLength"].is_null())
        .context("no schema in openapi.yaml bounds a stack's items")?;
    Ok(stack["maxItems"].as_u64().map(|items| items as usize))
}

/// Person `index`'s body: distinct items, each with [`TERM`], as many as allowed.
fn body(run: u64, index: usize, items: Option<usize>) -> String {
    let mut body = format!(
        r#"{{"apelido":"hostil{run}-{index}","nome":"Hostil","nascimento":"2000-01-01","stack":["#
    );
    for item in 0.. {
        let next = format!("\"{TERM}{index:04}{item:06}\"");
        let full =
            items.is_some_and(|items| item == items) || body.len() + next.len() + 3 > BODY_LIMIT;
        if full {
            break;
        }
        if item > 0 {
            body.push(',');
        }
        body.push_str(&next);
    }
    body.push_str("]}");
    body
}

/// Runs the hostile client against `base_url` and returns what it measured.
pub fn run(base_url: &str) -> Result<Value> {
    let items = items_allowed()?;
    let agent = agent();
    let run = crate::workspace::unix_now() as u64 % 1_000_000;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut post = |index: usize| -> Result<()> {
        let response = agent
            .post(format!("{base_url}/pessoas"))
            .header("content-type", "application/json")
            .send(body(run, index, items))?;
        *statuses.entry(response.status().as_u16()).or_default() += 1;
        Ok(())
    };
    let started = Instant::now();
    for index in 0..FIRST {
        post(index)?;
    }
    let stop = AtomicBool::new(false);
    let searches = thread::scope(|scope| -> Result<Vec<(u16, f64, usize)>> {
        let searchers: Vec<_> =
            (0..SEARCHERS).map(|_| scope.spawn(|| search_until(base_url, &stop))).collect();
        let written = (FIRST..FIRST + THEN).try_for_each(&mut post);
        thread::sleep(SEARCHING_AFTER);
        stop.store(true, Ordering::Relaxed);
        let mut searches = Vec::new();
        for searcher in searchers {
            searches.extend(searcher.join().expect("a searcher does not panic")?);
        }
        written.map(|()| searches)
    })?;
    let mut times: Vec<f64> = searches.iter().map(|(_, ms, _)| *ms).collect();
    times.sort_by(f64::total_cmp);
    let percentile = |p: f64| times.get(((times.len() as f64 * p).ceil() as usize).max(1) - 1);
    let mut search_statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for (status, _, _) in &searches {
        *search_statuses.entry(*status).or_default() += 1;
    }
    Ok(json!({
        "term": TERM,
        "items_per_person": body(run, 0, items).matches(TERM).count(),
        "posts": statuses,
        "searches": searches.len(),
        "search_statuses": search_statuses,
        "search_p50_ms": percentile(0.5),
        "search_p99_ms": percentile(0.99),
        "search_max_ms": times.last(),
        "most_people_found": searches.iter().map(|(_, _, people)| *people).max(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Searches for [`TERM`] at its pace until `stop`: each search's status, milliseconds and the
/// people it found.
fn search_until(base_url: &str, stop: &AtomicBool) -> Result<Vec<(u16, f64, usize)>> {
    let agent = agent();
    let mut searches = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut response = agent.get(format!("{base_url}/pessoas?t={TERM}")).call()?;
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(u64::MAX).read_to_string()?;
        let elapsed = started.elapsed();
        let people = serde_json::from_str::<Vec<Value>>(&text).map_or(0, |people| people.len());
        searches.push((status, elapsed.as_secs_f64() * 1000.0, people));
        thread::sleep(SEARCH_EVERY.saturating_sub(elapsed));
    }
    Ok(searches)
}

/// An HTTP client that takes any status as an answer and gives up on a request after 30 s.
pub fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    ureq::Agent::new_with_config(config)
}

/// What the run must show: every search for the term answered `200` within
/// [`SEARCH_WITHIN_MS`], and, in `summary` (the replay's), the legitimate clients' writes and
/// searches at a p99 within `legitimate_within_ms`.
pub fn problems(measured: &Value, summary: &Value, legitimate_within_ms: f64) -> Vec<String> {
    let mut problems = Vec::new();
    let slowest = measured["search_max_ms"].as_f64().unwrap_or(f64::INFINITY);
    if slowest > SEARCH_WITHIN_MS {
        problems.push(format!(
            "a search for {TERM:?} took {slowest:.1} ms, more than {SEARCH_WITHIN_MS} ms"
        ));
    }
    let statuses = measured["search_statuses"].as_object();
    let not_ok: u64 = statuses
        .into_iter()
        .flatten()
        .filter(|(status, _)| *status != "200")
        .map(|(_, count)| count.as_u64().unwrap_or(0))
        .sum();
    if not_ok > 0 || statuses.is_none_or(|statuses| statuses.is_empty()) {
        problems.push(format!("{not_ok} searches for {TERM:?} not answered 200, or none made"));
    }
    for request in ["criação", "busca válida", "busca inválida"] {
        let p99 = summary["requests"][request]["times"]["ok"]["p99_ms"].as_f64();
        match p99 {
            Some(p99) if p99 <= legitimate_within_ms => {}
            p99 => problems
                .push(format!("{request}: p99 {p99:?} ms, more than {legitimate_within_ms} ms")),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_hold_as_many_distinct_items_as_allowed() {
        let capped = body(7, 3, Some(100));
        let person: Value = serde_json::from_str(&capped).unwrap();
        let items = person["stack"].as_array().unwrap();
        assert_eq!(items.len(), 100);
        assert!(items.iter().all(|item| item.as_str().unwrap().contains(TERM)));
        let uncapped = body(7, 3, None);
        assert!(uncapped.len() <= BODY_LIMIT && uncapped.len() > BODY_LIMIT - 20);
        let person: Value = serde_json::from_str(&uncapped).unwrap();
        let mut items: Vec<&str> =
            person["stack"].as_array().unwrap().iter().map(|item| item.as_str().unwrap()).collect();
        let count = items.len();
        items.sort_unstable();
        items.dedup();
        assert_eq!(items.len(), count, "distinct");
        assert!(items.iter().all(|item| item.chars().count() <= 32));
        assert!(!body(7, 4, None).contains(items[0]), "distinct across people");
    }

    #[test]
    fn slow_or_failed_searches_and_a_slow_legitimate_p99_are_problems() {
        let summary = |p99: f64| {
            let times = json!({"times": {"ok": {"p99_ms": p99}}});
            json!({"requests": {"criação": times, "busca válida": times, "busca inválida": times}})
        };
        let fine = json!({"search_max_ms": 120.0, "search_statuses": {"200": 40}});
        assert!(problems(&fine, &summary(10.0), 50.0).is_empty());
        let slow = json!({"search_max_ms": 250.0, "search_statuses": {"200": 39, "503": 1}});
        assert_eq!(problems(&slow, &summary(60.0), 50.0).len(), 5);
    }
}
