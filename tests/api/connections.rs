//! What needs a real socket: clients that stall, more clients than a replica takes, and
//! bodies in transfer codings.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestApp, fresh_database, pessoa, settings};

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

/// Sends `request` on a new connection and returns the start of the answer.
async fn exchange(app: &TestApp, request: &[u8]) -> String {
    let mut stream = connect(app).await;
    // The server may answer and close before reading everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut answer = vec![0; 64];
    let read = stream.read(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

#[tokio::test]
async fn a_chunked_body_is_read_only_up_to_the_limit() {
    let app = TestApp::spawn().await;
    let huge = format!(
        r#"{{"apelido":"a","nome":"n","nascimento":"2000-01-01","stack":["{}"]}}"#,
        "x".repeat(70 * 1024)
    );
    // Without Content-Length, the size is known only as the body is read.
    let mut request = format!(
        "POST /pessoas HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        huge.len()
    )
    .into_bytes();
    request.extend_from_slice(huge.as_bytes());
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let status_line = exchange(&app, &request).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_get_501() {
    let app = TestApp::spawn().await;
    let body = pessoa("codificada").to_string();
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    for codings in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: identity, chunked\r\n",
    ] {
        let request = format!(
            "POST /pessoas HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             {codings}Connection: close\r\n\r\n{chunked}"
        );
        let status_line = exchange(&app, request.as_bytes()).await;
        assert!(
            status_line.starts_with("HTTP/1.1 501"),
            "{codings}: {status_line}"
        );
    }
    assert_eq!(app.count().await, 0);
    let request = format!(
        "POST /pessoas HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n{chunked}"
    );
    let status_line = exchange(&app, request.as_bytes()).await;
    assert!(status_line.starts_with("HTTP/1.1 201"), "{status_line}");
}
