//! Searches and writes kept apart from what the rest of the database does: a transaction left
//! open elsewhere, rows written behind the API's back, a connection lost mid-commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{TestApp, db_client, fresh_database, pessoa, settings};

async fn found(app: &TestApp, term: &str) -> usize {
    let response = app.get(&format!("/pessoas?t={term}")).await;
    assert_eq!(response.status(), 200, "searching {term}");
    response.json::<Vec<Value>>().await.unwrap().len()
}

#[tokio::test]
async fn catch_ups_stay_cheap_while_another_session_holds_a_transaction_open() {
    let app = TestApp::spawn().await;
    let mut other = db_client(&app.database_url).await;
    let open = other.transaction().await.unwrap();
    // More rows than a page, so that they take more than one page once committed.
    open.batch_execute(
        "SELECT txid_current(); \
         INSERT INTO pessoas (id, apelido, nome, nascimento) \
         SELECT gen_random_uuid(), 'pendente' || i, 'Aberta', '2000-01-01' \
         FROM generate_series(1, 12000) AS i",
    )
    .await
    .unwrap();
    // Rows since the open transaction began, which a catch-up bounded by the oldest
    // transaction running would read again each time.
    db_client(&app.database_url)
        .await
        .batch_execute(
            "INSERT INTO pessoas (id, apelido, nome, nascimento) \
             SELECT gen_random_uuid(), 'antes' || i, 'Nome', '1990-01-01' \
             FROM generate_series(1, 1000) AS i",
        )
        .await
        .unwrap();
    assert_eq!(found(&app, "antes1000").await, 1);

    let mut read_per_round = Vec::new();
    for round in 0..20 {
        let before = app.metric("mirror_catch_up_rows_total").await;
        app.create(&pessoa(&format!("ronda{round}"))).await;
        assert_eq!(found(&app, &format!("ronda{round}")).await, 1);
        read_per_round.push(app.metric("mirror_catch_up_rows_total").await - before);
    }
    assert!(
        read_per_round.iter().all(|&rows| rows <= 2.0),
        "rows read per catch-up: {read_per_round:?}"
    );
    assert_eq!(found(&app, "pendente1").await, 0, "not committed yet");
    open.commit().await.unwrap();
    for term in ["pendente5999", "pendente12000"] {
        assert_eq!(
            found(&app, term).await,
            1,
            "{term}, committed, found at once"
        );
    }
}

#[tokio::test]
async fn searches_arriving_together_share_catch_ups() {
    let app = TestApp::spawn().await;
    app.create(&pessoa("junto")).await;
    let before = app.metric("mirror_catch_ups_total").await;
    let searches: Vec<_> = (0..200)
        .map(|_| {
            let http = app.http.clone();
            let url = format!("{}/pessoas?t=junto", app.address);
            tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
        })
        .collect();
    for search in searches {
        assert_eq!(search.await.unwrap(), 200);
    }
    let catch_ups = app.metric("mirror_catch_ups_total").await - before;
    assert!(
        (1.0..100.0).contains(&catch_ups),
        "{catch_ups} catch-ups for 200 searches"
    );
}

#[tokio::test]
async fn rows_that_do_not_read_as_a_person_are_skipped_and_counted_once() {
    let app = TestApp::spawn().await;
    // Only a writer other than the API can store a null stack item or a year past 9999.
    db_client(&app.database_url)
        .await
        .batch_execute(
            "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) VALUES \
             (gen_random_uuid(), 'nulo', 'Pilha', '2000-01-01', ARRAY['Rust', NULL]), \
             (gen_random_uuid(), 'futuro', 'Data', '10000-01-01', NULL), \
             (gen_random_uuid(), 'valido', 'Bom', '2000-01-01', ARRAY['Rust'])",
        )
        .await
        .unwrap();
    assert_eq!(found(&app, "valido").await, 1);
    assert_eq!(found(&app, "rust").await, 1);
    app.create(&pessoa("depois")).await;
    assert_eq!(found(&app, "depois").await, 1, "catch-ups go on");
    assert_eq!(app.metric("mirror_undecodable_rows_total").await, 2.0);

    // A replica starting now loads past them.
    let restarted = TestApp::spawn_on(&app.database_url).await;
    assert_eq!(found(&restarted, "valido").await, 1);
    assert_eq!(found(&restarted, "depois").await, 1);
    assert_eq!(restarted.metric("mirror_undecodable_rows_total").await, 2.0);
    assert_eq!(restarted.count().await, 4);
}

#[tokio::test]
async fn a_post_whose_commit_answer_is_lost_is_created_when_its_row_is_stored() {
    let database = fresh_database().await;
    // Applies the schema.
    drop(TestApp::spawn_on(&database).await);
    let proxied = through_proxy(&database, b"perdido").await;
    let app = TestApp::spawn_with(settings(&proxied)).await;

    let response = app.post(&pessoa("perdido")).await;
    assert_eq!(
        response.status(),
        201,
        "the answer to its INSERT was lost, but the row was committed"
    );
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(app.get(&location).await.status(), 200);
    assert_eq!(app.count().await, 1);
    assert_eq!(found(&app, "perdido").await, 1);
}

/// `database_url` through a proxy that, the first time a client sends `marker`, passes it on,
/// drops what the database answers, and closes both ends half a second later: the database ran
/// the statement (and committed it), and the client lost its answer with the connection.
async fn through_proxy(database_url: &str, marker: &'static [u8]) -> String {
    let (head, rest) = database_url.split_once('@').expect("user@host:port");
    let (server, tail) = rest.split_once('/').expect("host:port/database");
    let server = server.to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let cut_once = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&server).await.unwrap();
            tokio::spawn(relay(client, server, marker, cut_once.clone()));
        }
    });
    format!("{head}@{proxy}/{tail}")
}

async fn relay(client: TcpStream, server: TcpStream, marker: &[u8], cut_once: Arc<AtomicBool>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let answers = tokio::spawn({
        let cut = cut.clone();
        async move {
            let mut buffer = vec![0; 64 << 10];
            while let Ok(read @ 1..) = from_server.read(&mut buffer).await {
                if cut.load(Ordering::SeqCst) {
                    continue;
                }
                if to_client.write_all(&buffer[..read]).await.is_err() {
                    break;
                }
            }
            to_client
        }
    });
    let mut buffer = vec![0; 64 << 10];
    while let Ok(read @ 1..) = from_client.read(&mut buffer).await {
        let sent = &buffer[..read];
        let carries_marker = sent.windows(marker.len()).any(|window| window == marker);
        if carries_marker && !cut_once.swap(true, Ordering::SeqCst) {
            cut.store(true, Ordering::SeqCst);
            to_server.write_all(sent).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            answers.abort();
            return;
        }
        if to_server.write_all(sent).await.is_err() {
            break;
        }
    }
    answers.abort();
}

#[tokio::test]
async fn a_search_sharing_a_catch_up_still_sees_every_person_created_before_it() {
    let writer = TestApp::spawn().await;
    let reader = Arc::new(TestApp::spawn_on(&writer.database_url).await);
    let writer = Arc::new(writer);
    // Searches on one replica keep its catch-ups busy while people are created on the other,
    // so that many a search arrives while a catch-up whose snapshot is older is under way.
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (writer, reader) = (writer.clone(), reader.clone());
            tokio::spawn(async move {
                for round in 0..15 {
                    let apelido = format!("visto{task}x{round}");
                    writer.create(&pessoa(&apelido)).await;
                    assert_eq!(found(&reader, &apelido).await, 1, "{apelido}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}
