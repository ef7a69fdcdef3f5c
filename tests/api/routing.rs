//! Routing and refusals in-process, through `warp::test`, without a socket: each resource has
//! exactly one path, a method a path does not offer gets 405, and what the API refuses (bodies
//! too large, malformed or breaking a rule, searches without a term) is refused before anything
//! is stored.

use bytes::Bytes;
use rinha::http::{AppState, api};
use serde_json::{Value, json};
use warp::http::Response;
use warp::{Filter, Reply};

use crate::support::{fresh_database, settings};

/// The API's filter over a fresh database. The mirror loads everyone at start, so even routes
/// that never query need a database that answers.
async fn state() -> AppState {
    let settings = settings(&fresh_database().await);
    let (state, _tasks) = rinha::startup::state(&settings)
        .await
        .expect("the replica's state builds");
    state
}

/// The API's filter, as a replica serves it.
async fn filter() -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone
{
    api(state().await)
}

async fn post<F>(filter: &F, body: impl Into<Bytes>) -> Response<Bytes>
where
    F: Filter + 'static,
    F::Extract: Reply + Send,
{
    warp::test::request()
        .method("POST")
        .path("/pessoas")
        .header("content-type", "application/json")
        .body(body.into())
        .reply(filter)
        .await
}

/// The count the API reports, to show that nothing refused was stored.
async fn count<F>(filter: &F) -> String
where
    F: Filter + 'static,
    F::Extract: Reply + Send,
{
    let response = warp::test::request()
        .path("/contagem-pessoas")
        .reply(filter)
        .await;
    assert_eq!(response.status(), 200);
    String::from_utf8(response.body().to_vec()).unwrap()
}

#[tokio::test]
async fn only_exact_paths_are_served() {
    let filter = filter().await;
    for path in ["/metrics", "/contagem-pessoas", "/pessoas?t=x"] {
        let response = warp::test::request().path(path).reply(&filter).await;
        assert_eq!(response.status(), 200, "GET {path}");
    }
    let id = uuid::Uuid::new_v4();
    for path in [
        "/metrics/".to_owned(),
        "/metrics//".to_owned(),
        "//metrics".to_owned(),
        "/metrics/x".to_owned(),
        "/metricsx".to_owned(),
        "/contagem-pessoas/".to_owned(),
        "/pessoas/?t=x".to_owned(),
        "//pessoas?t=x".to_owned(),
        format!("/pessoas/{id}/"),
        format!("/pessoas//{id}"),
    ] {
        let response = warp::test::request().path(&path).reply(&filter).await;
        assert_eq!(response.status(), 404, "GET {path}");
    }
    let response = warp::test::request()
        .method("POST")
        .path("/pessoas/")
        .header("content-type", "application/json")
        .body(r#"{"apelido":"barra","nome":"Barra","nascimento":"2000-01-01"}"#)
        .reply(&filter)
        .await;
    assert_eq!(response.status(), 404, "POST /pessoas/");
}

#[tokio::test]
async fn unknown_paths_get_404_and_methods_a_path_does_not_offer_405() {
    let filter = filter().await;
    for path in ["/", "/pessoa"] {
        let response = warp::test::request().path(path).reply(&filter).await;
        assert_eq!(response.status(), 404, "GET {path}");
    }
    let id = uuid::Uuid::now_v7();
    for (method, path, allow) in [
        ("DELETE", "/pessoas".to_owned(), "GET, HEAD, POST"),
        ("PATCH", "/pessoas".to_owned(), "GET, HEAD, POST"),
        ("PUT", format!("/pessoas/{id}"), "GET, HEAD"),
        ("POST", format!("/pessoas/{id}"), "GET, HEAD"),
        ("PUT", "/contagem-pessoas".to_owned(), "GET, HEAD"),
        ("DELETE", "/metrics".to_owned(), "GET, HEAD"),
    ] {
        let response = warp::test::request()
            .method(method)
            .path(&path)
            .reply(&filter)
            .await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_404() {
    let filter = filter().await;
    let unknown = format!("/pessoas/{}", uuid::Uuid::new_v4());
    for path in [unknown.as_str(), "/pessoas/not-a-uuid", "/pessoas/1/2"] {
        let response = warp::test::request().path(path).reply(&filter).await;
        assert_eq!(response.status(), 404, "GET {path}");
    }
}

#[tokio::test]
async fn search_without_a_term_gets_400() {
    let filter = filter().await;
    for path in ["/pessoas", "/pessoas?t=", "/pessoas?q=x"] {
        let response = warp::test::request().path(path).reply(&filter).await;
        assert_eq!(response.status(), 400, "GET {path}");
    }
}

#[tokio::test]
async fn a_body_declared_too_large_gets_413() {
    let filter = filter().await;
    let huge = format!(
        r#"{{"apelido":"a","nome":"n","nascimento":"2000-01-01","stack":["{}"]}}"#,
        "x".repeat(70 * 1024)
    );
    assert_eq!(post(&filter, huge).await.status(), 413);
    assert_eq!(count(&filter).await, "0");
}

#[tokio::test]
async fn rule_violations_get_422() {
    let filter = filter().await;
    let long = |n| "x".repeat(n);
    let cases = [
        json!({"apelido": null, "nome": "n", "nascimento": "2000-01-01"}),
        json!({"nome": "n", "nascimento": "2000-01-01"}),
        json!({"apelido": "a", "nome": null, "nascimento": "2000-01-01"}),
        json!({"apelido": "a", "nascimento": "2000-01-01"}),
        json!({"apelido": "a", "nome": "n", "nascimento": null}),
        json!({"apelido": "a", "nome": "n"}),
        json!({"apelido": long(33), "nome": "n", "nascimento": "2000-01-01"}),
        json!({"apelido": "a", "nome": long(101), "nascimento": "2000-01-01"}),
        json!({"apelido": "a", "nome": "n", "nascimento": "2000-01-01", "stack": [long(33)]}),
        json!({"apelido": "a", "nome": "n", "nascimento": "2023-02-29"}),
        json!({"apelido": "a", "nome": "n", "nascimento": "2000-13-01"}),
        json!({"apelido": "a", "nome": "n", "nascimento": "2000-02-30"}),
        json!({"apelido": "a", "nome": "n", "nascimento": "12-12-2000"}),
        json!({"apelido": "a", "nome": "n", "nascimento": "?!?!?"}),
        json!({"apelido": "a\u{0}b", "nome": "n", "nascimento": "2000-01-01"}),
    ];
    for body in &cases {
        let response = post(&filter, body.to_string()).await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = serde_json::from_slice(response.body()).unwrap();
        assert!(error["error"].is_string(), "{error}");
    }
    assert_eq!(count(&filter).await, "0", "nothing invalid is stored");
}

#[tokio::test]
async fn shape_errors_get_400() {
    let filter = filter().await;
    let cases = [
        "",
        "{",
        "not json",
        "[]",
        "42",
        r#"{"apelido":"a","nome":1,"nascimento":"2000-01-01"}"#,
        r#"{"apelido":"a","nome":"n","nascimento":10}"#,
        r#"{"apelido":"a","nome":"n","nascimento":"2000-01-01","stack":"PHP"}"#,
        r#"{"apelido":"a","nome":"n","nascimento":"2000-01-01","stack":[1,"PHP"]}"#,
        r#"{"apelido":"a","nome":"n","nascimento":"2000-01-01","stack":1}"#,
        r#"{"apelido":"\ud800","nome":"n","nascimento":"2000-01-01"}"#,
    ];
    for body in cases {
        assert_eq!(post(&filter, body).await.status(), 400, "{body}");
    }
    assert_eq!(count(&filter).await, "0");
}
