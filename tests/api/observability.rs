//! The metrics listener (`METRICS_PORT`), and the dashboard and alert rules held to what a
//! replica exports: Grafana does not run here, so a metric renamed in the code or misspelt in a
//! panel or a rule would otherwise go unnoticed until someone looks at an empty chart.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::Method;
use rinha::startup::Application;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::support::{fresh_database, pessoa, settings};

const DASHBOARD: &str = "deploy/observability/dashboards/rinha.json";
const ALERT_RULES: &str = "deploy/observability/alerts.yaml";

/// Series that Prometheus makes itself for every target, rather than scrapes.
const SCRAPE_SERIES: [&str; 1] = ["up"];

/// A replica with a metrics listener: its API and metrics base URLs, and its stop.
async fn replica_with_metrics_port() -> (String, String, oneshot::Sender<()>) {
    let settings = rinha::config::Settings {
        metrics_port: Some(0),
        ..settings(&fresh_database().await)
    };
    let app = Application::build(&settings).await.expect("the app starts");
    let api = format!("http://127.0.0.1:{}", app.local_addr().port());
    let metrics_port = app.metrics_addr().expect("a metrics listener").port();
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    (api, metrics, stop)
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_port() {
    let (api, metrics, _stop) = replica_with_metrics_port().await;
    let http = reqwest::Client::new();
    let status = |method: Method, url: String| {
        let request = http.request(method, &url);
        async move {
            request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"))
                .status()
        }
    };
    assert_eq!(
        status(Method::GET, format!("{api}/contagem-pessoas")).await,
        200
    );
    for path in ["/metrics", "/metrics/", "/metrics/x"] {
        assert_eq!(
            status(Method::GET, format!("{api}{path}")).await,
            404,
            "{path}"
        );
    }
    // Not 405: the API port offers no /metrics at all.
    assert_eq!(status(Method::POST, format!("{api}/metrics")).await, 404);

    let scrape = http.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap();
    assert!(text.contains("\nhttp_requests_total{"), "{text}");
    for path in ["/contagem-pessoas", "/pessoas", "/metrics/"] {
        assert_eq!(
            status(Method::GET, format!("{metrics}{path}")).await,
            404,
            "{path}"
        );
    }
}

#[tokio::test]
async fn dashboard_and_alert_rules_read_only_exported_metrics() {
    let (api, metrics, _stop) = replica_with_metrics_port().await;
    let http = reqwest::Client::new();
    // Every route once, so that each labelled family has a series to show.
    let created = http
        .post(format!("{api}/pessoas"))
        .json(&pessoa("observed"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for path in [
        "/pessoas?t=observed",
        "/contagem-pessoas",
        "/pessoas/nobody",
    ] {
        http.get(format!("{api}{path}")).send().await.unwrap();
    }
    let text = http
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = exported_names(&text);
    assert!(
        exported.contains("mirror_catch_up_duration_seconds_count"),
        "{exported:?}"
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(DASHBOARD)).unwrap()).unwrap();
    let mut panel_queries = Vec::new();
    collect_expressions(&dashboard, &mut panel_queries);
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(root.join(ALERT_RULES)).unwrap()).unwrap();
    let rule_queries: Vec<String> = rules["spec"]["groups"]
        .as_sequence()
        .expect("spec.groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("rules").iter())
        .map(|rule| rule["expr"].as_str().expect("a rule's expr").to_owned())
        .collect();
    assert!(panel_queries.len() >= 8, "{panel_queries:?}");
    assert!(rule_queries.len() >= 6, "{rule_queries:?}");

    for (source, queries) in [(DASHBOARD, panel_queries), (ALERT_RULES, rule_queries)] {
        for query in queries {
            let names = metric_names(&query);
            assert!(!names.is_empty(), "{source}: no metric in {query:?}");
            for name in names {
                assert!(
                    exported.contains(&name) || SCRAPE_SERIES.contains(&name.as_str()),
                    "{source}: {name} (in {query:?}) is not among the exported {exported:?}"
                );
            }
        }
    }
}

/// The names of the series in a text exposition.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// Every `expr` string in a Grafana dashboard: the panels' queries.
fn collect_expressions(value: &Value, queries: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                match (key.as_str(), field) {
                    ("expr", Value::String(query)) => queries.push(query.clone()),
                    _ => collect_expressions(field, queries),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_expressions(item, queries)),
        _ => {}
    }
}

/// The metric names a PromQL expression reads: its identifiers, less functions and aggregations
/// (followed by a parenthesis), keywords, the labels of matchers (`{...}`) and of grouping
/// clauses (`by (...)`), ranges (`[5m]`), strings, numbers and Grafana's `$variables`.
fn metric_names(query: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 8] = [
        "and", "or", "unless", "bool", "offset", "inf", "nan", "atop",
    ];
    // May stand before their grouping (`sum by (route) (...)`), so not always before a '('.
    const AGGREGATIONS: [&str; 14] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = query.chars().collect();
    let mut names = BTreeSet::new();
    let mut at = 0;
    // Skips from an opening character to its closing one, past any quoted string inside.
    let skip_to = |mut at: usize, close: char| {
        while at < chars.len() && chars[at] != close {
            if chars[at] == '"' || chars[at] == '\'' {
                let quote = chars[at];
                at += 1;
                while at < chars.len() && chars[at] != quote {
                    at += if chars[at] == '\\' { 2 } else { 1 };
                }
            }
            at += 1;
        }
        at + 1
    };
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while at < chars.len() {
        let c = chars[at];
        if c == '{' {
            at = skip_to(at, '}');
        } else if c == '[' {
            at = skip_to(at, ']');
        } else if c == '"' || c == '\'' {
            at = skip_to(at + 1, c);
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable, a number or a duration: the whole word.
            at += 1;
            while at < chars.len() && is_word(chars[at]) {
                at += 1;
            }
        } else if is_word(c) {
            let start = at;
            while at < chars.len() && is_word(chars[at]) {
                at += 1;
            }
            let word: String = chars[start..at].iter().collect();
            let next = chars[at..].iter().find(|c| !c.is_whitespace());
            if LABEL_LISTS.contains(&word.as_str()) {
                if next == Some(&'(') {
                    let open = at + chars[at..].iter().position(|&c| c == '(').unwrap_or(0);
                    at = skip_to(open, ')');
                }
            } else if next != Some(&'(')
                && !KEYWORDS.contains(&word.to_lowercase().as_str())
                && !AGGREGATIONS.contains(&word.as_str())
            {
                names.insert(word);
            }
        } else {
            at += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let query = r#"histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{route=~"GET .*", job="$job"}[$__rate_interval]))) > 0.05"#;
    assert_eq!(
        metric_names(query),
        BTreeSet::from(["http_request_duration_seconds_bucket".to_owned()])
    );
    let query = "sum(rate(http_requests_total{status=~\"5..\"}[5m])) by (instance) / on (instance) group_left sum(rate(http_requests_total[5m])) by (instance) or vector(0) and up == 0";
    assert_eq!(
        metric_names(query),
        BTreeSet::from(["http_requests_total".to_owned(), "up".to_owned()])
    );
    assert_eq!(
        metric_names("max_over_time(mirror_full[10m] offset 1h) == bool 1e3"),
        BTreeSet::from(["mirror_full".to_owned()])
    );
}
