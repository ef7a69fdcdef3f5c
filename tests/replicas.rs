//! Two replicas over one database, and writes racing for the same apelido.

mod support;

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
async fn a_search_sees_a_row_committed_after_newer_ones() {
    let app = TestApp::spawn().await;
    let search = |term: &'static str| {
        let app = &app;
        async move {
            let found: Vec<Value> = app
                .get(&format!("/pessoas?t={term}"))
                .await
                .json()
                .await
                .unwrap();
            found.len()
        }
    };
    // An older transaction inserts and stays open...
    let mut early = support::db_client(&app.database_url).await;
    let early = early.transaction().await.unwrap();
    early
        .batch_execute(
            "INSERT INTO pessoas (id, apelido, nome, nascimento) \
             VALUES (gen_random_uuid(), 'antigo', 'Primeiro', '2000-01-01')",
        )
        .await
        .unwrap();
    // ...while a newer one commits, and a search catches up past it.
    app.create(&pessoa("recente")).await;
    assert_eq!(search("recente").await, 1);
    assert_eq!(search("antigo").await, 0, "not committed yet");
    early.commit().await.unwrap();
    assert_eq!(search("antigo").await, 1, "committed last, found at once");
}

/// The value of an unlabelled series in Prometheus text.
fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
        .parse()
        .unwrap()
}
