//! Two replicas over one database, and writes racing for the same apelido.

mod support;

use std::time::{Duration, Instant};

use rinha::writer::MERGE_EVERY_ROWS;
use serde_json::Value;
use support::{TestApp, fresh_database, pessoa};

#[tokio::test]
async fn a_record_created_on_one_replica_is_readable_at_once_on_the_other() {
    let database = fresh_database().await;
    let first = TestApp::spawn_on(&database).await;
    let second = TestApp::spawn_on(&database).await;

    for i in 0..20 {
        let location = first.create(&pessoa(&format!("visto{i}"))).await;
        let response = second.get(&location).await;
        assert_eq!(response.status(), 200, "{location} on the second replica");
        let found: Vec<Value> = second
            .get(&format!("/pessoas?t=visto{i}"))
            .await
            .json()
            .await
            .unwrap();
        assert!(
            !found.is_empty(),
            "visto{i} searchable on the second replica"
        );
    }
    assert_eq!(second.count().await, 20);
}

#[tokio::test]
async fn racing_posts_of_one_apelido_create_exactly_one() {
    let database = fresh_database().await;
    let replicas = [
        TestApp::spawn_on(&database).await,
        TestApp::spawn_on(&database).await,
    ];
    let attempts = (0..64).map(|i| {
        let replica = &replicas[i % 2];
        async move { replica.post(&pessoa("disputado")).await.status().as_u16() }
    });
    let mut statuses = futures_util::future::join_all(attempts).await;
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 422).count(),
        63,
        "{statuses:?}"
    );
    assert_eq!(replicas[0].count().await, 1);
}

#[tokio::test]
async fn concurrent_writes_are_batched_and_each_gets_its_own_answer() {
    let app = TestApp::spawn().await;
    // 300 people, every third apelido repeated, all sent at once.
    let attempts = (0..300).map(|i| {
        let app = &app;
        async move {
            app.post(&pessoa(&format!(
                "lote{}",
                i / 3 * 3 + (i % 3 != 0) as usize
            )))
            .await
        }
    });
    let responses = futures_util::future::join_all(attempts).await;
    let created = responses.iter().filter(|r| r.status() == 201).count();
    let taken = responses.iter().filter(|r| r.status() == 422).count();
    assert_eq!(created, 200);
    assert_eq!(taken, 100);
    assert_eq!(app.count().await, 200);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let batches = metric_value(&metrics, "group_commit_batch_size_count");
    let written = metric_value(&metrics, "group_commit_batch_size_sum");
    assert_eq!(written, 300.0, "every request went through the writer once");
    assert!(batches <= 300.0);
}

#[tokio::test]
async fn writes_keep_the_search_index_pending_list_short() {
    let app = TestApp::spawn().await;
    let db = support::db_client(&app.database_url).await;
    db.batch_execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        .await
        .unwrap();
    // One at a time, so that each is a batch of its own; four merges fall due on the way.
    let rows = 4 * MERGE_EVERY_ROWS + 3;
    for i in 0..rows {
        app.create(&pessoa(&format!("pendente{i}"))).await;
    }
    // Unmerged, every row would still be pending; merged, at most those written since the last
    // merge fell due are.
    let started = Instant::now();
    loop {
        let pending: i64 = db
            .query_one(
                // The number of people (heap tuples) in the pending list.
                "SELECT pending_tuples FROM pgstatginindex('pessoas_busca_trgm')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if pending < MERGE_EVERY_ROWS as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{pending} of {rows} people still pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of an unlabelled series in Prometheus text.
fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
        .parse()
        .unwrap()
}
