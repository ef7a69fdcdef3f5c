//! Routing in-process, through `warp::test`, without a socket: each resource has exactly one
//! path.

mod support;

use std::sync::Arc;

use rinha::metrics::Metrics;
use rinha::mirror::Mirror;
use rinha::routes::{AppState, api};
use rinha::store::Store;
use rinha::writer::Writer;
use support::{fresh_database, settings};

/// The API's filter over a fresh database. The mirror loads everyone at start, so even routes
/// that never query need a database that answers.
async fn state() -> AppState {
    let settings = settings(&fresh_database().await);
    let store = Store::new(&settings).expect("a valid URL");
    store.migrate().await.expect("the schema applies");
    let mirror = Arc::new(
        Mirror::load(store.clone(), usize::MAX)
            .await
            .expect("the mirror loads"),
    );
    let metrics = Arc::new(Metrics::new());
    let (writer, _writers) = Writer::spawn(
        store.clone(),
        settings.writers,
        settings.batch_max,
        settings.db_timeout,
        metrics.clone(),
    );
    AppState {
        store,
        mirror,
        writer,
        metrics,
        body_timeout: settings.body_timeout,
    }
}

#[tokio::test]
async fn only_exact_paths_are_served() {
    let filter = api(state().await);
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
