//! Connections that misbehave: clients that stall, and more clients than a replica takes.

mod support;

use std::time::{Duration, Instant};

use support::{TestApp, fresh_database, settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("the replica accepts")
}

/// Everything the server sends until it closes the connection, and how long that took; fails
/// when it is still open after `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection is still open after {limit:?}");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let mut slow = settings(&fresh_database().await);
    slow.header_timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(slow).await;

    let mut silent = connect(&app).await;
    let mut partial = connect(&app).await;
    partial
        .write_all(b"GET /contagem-pessoas HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    for stream in [&mut silent, &mut partial] {
        let (answer, took) = until_closed(stream, Duration::from_secs(5)).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
        assert!(took < Duration::from_secs(2), "closed after {took:?}");
    }
    // A client that sends its requests in time is served as before.
    assert_eq!(app.get("/contagem-pessoas").await.status(), 200);
}

#[tokio::test]
async fn a_body_that_stops_short_gets_408() {
    let mut slow = settings(&fresh_database().await);
    slow.body_timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(slow).await;

    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /pessoas HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"apelido\":",
        )
        .await
        .unwrap();
    let (answer, took) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn connections_past_the_cap_wait_to_be_accepted() {
    let mut capped = settings(&fresh_database().await);
    capped.max_connections = 2;
    let app = TestApp::spawn_with(capped).await;

    let idle = [connect(&app).await, connect(&app).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = tokio::spawn({
        let url = format!("{}/contagem-pessoas", app.address);
        async move { reqwest::get(url).await.map(|response| response.status()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a third connection was served");
    drop(idle);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a connection closes")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}
