//! The process as it runs in production: signals, crashes, and a database that goes away.

use std::time::{Duration, Instant};

use crate::support::{
    AppProcess, TestApp, db_client, free_port, fresh_database, metric_value, pessoa, set_reachable,
    settings, stored_people,
};

/// Sends `count` creations at once and returns the statuses and locations of those answered.
async fn burst(address: &str, prefix: &str, count: usize) -> Vec<(u16, Option<String>)> {
    let http = reqwest::Client::new();
    let requests = (0..count).map(|i| {
        let http = http.clone();
        let url = format!("{address}/pessoas");
        let body = pessoa(&format!("{prefix}{i}"));
        async move {
            let response = http.post(url).json(&body).send().await.ok()?;
            let location = response
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            Some((response.status().as_u16(), location))
        }
    });
    futures_util::future::join_all(requests)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Returns once the app has committed something, so that a signal lands mid-burst.
async fn wait_for_first_write(database: &str) {
    let db = db_client(database).await;
    for _ in 0..500 {
        let stored = stored_people(&db).await;
        if stored > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("nothing was written");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_writes_and_exits_zero() {
    let database = fresh_database().await;
    let mut app = AppProcess::start(&database).await;
    let address = app.address.clone();
    let writes = tokio::spawn(async move { burst(&address, "parada", 400).await });
    wait_for_first_write(&database).await;
    app.signal("TERM");
    let answered = writes.await.unwrap();
    let status = app.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");

    assert!(
        answered.iter().all(|(status, _)| *status == 201),
        "{answered:?}"
    );
    let stored = stored_people(&db_client(&database).await).await;
    assert_eq!(
        stored as usize,
        answered.len(),
        "every 201 is stored, nothing else"
    );
    assert!(!answered.is_empty());
}

#[tokio::test]
async fn a_killed_replica_loses_nothing_it_acknowledged() {
    let database = fresh_database().await;
    let app = AppProcess::start(&database).await;
    let address = app.address.clone();
    let writes = tokio::spawn(async move { burst(&address, "queda", 400).await });
    wait_for_first_write(&database).await;
    app.signal("KILL");
    let answered = writes.await.unwrap();

    let db = db_client(&database).await;
    for (status, location) in answered.iter().filter(|(status, _)| *status == 201) {
        let id: uuid::Uuid = location.as_ref().unwrap()["/pessoas/".len()..]
            .parse()
            .unwrap();
        let rows = db
            .query("SELECT 1 FROM pessoas WHERE id = $1", &[&id])
            .await
            .unwrap();
        assert_eq!(
            rows.len(),
            1,
            "{status} {location:?} was acknowledged but is not stored"
        );
    }
}

#[tokio::test]
async fn a_database_out_of_reach_gives_quick_503s_then_recovers() {
    let app = TestApp::spawn().await;
    let location = app.create(&pessoa("antes")).await;

    set_reachable(&app.database_url, false).await;
    // A person the replica stored itself is in its memory, and people never change.
    assert_eq!(app.get(&location).await.status(), 200);
    let unknown = format!("/pessoas/{}", uuid::Uuid::now_v7());
    for path in [unknown.as_str(), "/contagem-pessoas", "/pessoas?t=ant"] {
        let started = Instant::now();
        let response = app.get(path).await;
        assert_eq!(response.status(), 503, "{path} while the database is down");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} answered quickly"
        );
    }
    let started = Instant::now();
    assert_eq!(app.post(&pessoa("durante")).await.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(5));

    set_reachable(&app.database_url, true).await;
    let mut recovered = false;
    for _ in 0..100 {
        if app.get("/contagem-pessoas").await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the replica recovers by itself");
    assert_eq!(app.get(&location).await.status(), 200);
    app.create(&pessoa("depois")).await;
    assert_eq!(app.count().await, 2);
}

#[tokio::test]
async fn a_write_answered_503_for_being_slow_is_not_stored() {
    let database = fresh_database().await;
    let mut slow = settings(&database);
    slow.db_timeout = Duration::from_millis(500);
    let app = TestApp::spawn_with(slow).await;

    // Another session is inserting the same apelido and has not committed, so the INSERT
    // waits on it past the timeout.
    let mut blocker = db_client(&database).await;
    let holding = blocker.transaction().await.unwrap();
    holding
        .batch_execute(
            "INSERT INTO pessoas (id, apelido, nome, nascimento) \
             VALUES (gen_random_uuid(), 'lento', 'Outro', '2000-01-01')",
        )
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(app.post(&pessoa("lento")).await.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Once the other session gives up, a write still waiting would go through.
    holding.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let db = db_client(&database).await;
    let stored: i64 = db
        .query_one("SELECT count(*) FROM pessoas WHERE apelido = 'lento'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored, 0,
        "the database cancelled the write it was answered 503 for"
    );
    assert_eq!(
        app.post(&pessoa("lento")).await.status(),
        201,
        "and it can be sent again"
    );
}

#[tokio::test]
async fn a_stalled_client_delays_sigterm_by_at_most_the_grace() {
    use tokio::io::AsyncWriteExt;
    let database = fresh_database().await;
    let mut app = AppProcess::start_with(
        &database,
        &[("BODY_TIMEOUT_MS", "60000"), ("SHUTDOWN_GRACE_MS", "1000")],
    )
    .await;
    // A request whose body stops short: in flight until the client sends the rest.
    let mut stalled = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    stalled
        .write_all(
            b"POST /pessoas HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"apelido\":",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    app.signal("TERM");
    let status = app.wait(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(900),
        "the request had its grace: exited after {:?}",
        signalled.elapsed()
    );
    drop(stalled);
}

#[tokio::test]
async fn host_chooses_the_one_address_listened_on() {
    let database = fresh_database().await;
    let app = AppProcess::start_with(&database, &[("HOST", "127.0.0.2")]).await;
    let port = app.address.rsplit(':').next().unwrap();
    let other = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await;
    assert!(other.is_err(), "127.0.0.1:{port} accepted a connection");
    let healthcheck = std::process::Command::new(env!("CARGO_BIN_EXE_rinha"))
        .arg("healthcheck")
        .env("HOST", "127.0.0.2")
        .env("PORT", port)
        .status()
        .unwrap();
    assert!(healthcheck.success(), "the healthcheck probes HOST");
}

#[tokio::test]
async fn time_waiting_for_a_writer_counts_against_the_timeout_and_is_never_stored() {
    let database = fresh_database().await;
    let mut queued = settings(&database);
    queued.db_timeout = Duration::from_millis(400);
    queued.writers = 1;
    queued.batch_max = 1;
    let app = TestApp::spawn_with(queued).await;

    // Every INSERT waits on this lock until the database cancels it, so the one writer takes
    // 400 ms a job and the later jobs wait in its queue.
    let mut blocker = db_client(&database).await;
    let holding = blocker.transaction().await.unwrap();
    holding
        .batch_execute("LOCK TABLE pessoas IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let posts = (0..5).map(|i| {
        let app = &app;
        async move {
            let status = app.post(&pessoa(&format!("fila{i}"))).await.status();
            (status, started.elapsed())
        }
    });
    let answered = futures_util::future::join_all(posts).await;
    holding.rollback().await.unwrap();
    for (status, took) in &answered {
        assert_eq!(*status, 503, "{answered:?}");
        // At most one whole INSERT waited for, then its own (no more than two timeouts).
        assert!(*took < Duration::from_millis(1300), "{answered:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = stored_people(&db_client(&database).await).await;
    assert_eq!(stored, 0, "a write answered 503 was stored");
}

#[tokio::test]
async fn a_migration_cut_off_by_the_timeout_leaves_no_lock_behind() {
    use rinha::store::{SCHEMA_LOCK_KEY, Store};
    let database = fresh_database().await;
    let mut timed = settings(&database);
    timed.db_timeout = Duration::from_secs(2);
    let store = Store::new(&timed).unwrap();
    store.migrate().await.unwrap();
    // As a replica of another release finds it: a schema to apply.
    db_client(&database)
        .await
        .batch_execute("UPDATE rinha_schema SET applied = 'an older schema'")
        .await
        .unwrap();

    // The migration waits 1.5 s for the schema lock, then its ALTER TABLE waits on a table
    // lock until the database cancels it (2 s later): the replica gives up first (3 s in all),
    // with the schema lock taken.
    let other_replica = db_client(&database).await;
    other_replica
        .execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK_KEY])
        .await
        .unwrap();
    let mut reader = db_client(&database).await;
    let reading = reader.transaction().await.unwrap();
    reading
        .batch_execute("LOCK TABLE pessoas IN SHARE MODE")
        .await
        .unwrap();
    let migrating = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    other_replica
        .execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK_KEY])
        .await
        .unwrap();
    assert!(migrating.await.unwrap().is_err(), "the migration timed out");

    let observer = db_client(&database).await;
    let mut held = i64::MAX;
    for _ in 0..50 {
        held = observer
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if held == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held, 0, "a pooled connection still holds the schema lock");
    reading.rollback().await.unwrap();
    // Kept open until here: closing the pool would close the connection, and its lock with it.
    drop(store);
}

#[tokio::test]
async fn an_outage_is_logged_when_it_begins_and_ends_not_per_request() {
    let database = fresh_database().await;
    let log_path = std::env::temp_dir().join(format!("rinha-{}.log", uuid::Uuid::new_v4()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut app = AppProcess::start_logging(&database, &[], log.into()).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| http.get(format!("{}{path}", app.address)).send();

    set_reachable(&database, false).await;
    for _ in 0..6 {
        assert_eq!(get("/contagem-pessoas").await.unwrap().status(), 503);
    }
    let response = http
        .post(format!("{}/pessoas", app.address))
        .json(&pessoa("fora"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    set_reachable(&database, true).await;
    let mut recovered = false;
    for _ in 0..100 {
        if get("/contagem-pessoas").await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the replica recovers by itself");
    app.signal("TERM");
    assert!(app.wait(Duration::from_secs(10)).await.success());

    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let outage: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("unavailable") || line.contains("available again"))
        .collect();
    assert_eq!(
        outage.len(),
        2,
        "one line as it begins, one as it ends:\n{log}"
    );
    assert!(outage[0].contains("became unavailable"), "{log}");
    let failures: u64 = outage[1]
        .split_whitespace()
        .rev()
        .nth(2)
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("a count of failures in {:?}", outage[1]));
    assert!(failures >= 7, "{log}");
}

#[tokio::test]
async fn a_replica_told_to_stop_answers_on_open_connections_while_it_drains() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Sends one request and reads what comes back until the server closes the connection or
    /// falls silent.
    async fn exchange(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /contagem-pessoas HTTP/1.1\r\nHost: rinha\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(Ok(read)) =
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer)).await
        {
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&answer).to_lowercase()
    }

    let mut app = TestApp::spawn_with(rinha::config::Settings {
        drain: Duration::from_millis(1500),
        ..settings(&fresh_database().await)
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    // An idle keep-alive connection, as nginx keeps to each replica.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    let first = exchange(&mut idle).await;
    assert!(first.starts_with("http/1.1 200"), "{first}");
    assert!(!first.contains("connection: close"), "{first}");

    app.begin_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let draining = exchange(&mut idle).await;
    assert!(
        draining.starts_with("http/1.1 200") && draining.contains("connection: close"),
        "a request on an idle connection while draining is answered, and the connection then \
         closed: {draining:?}"
    );
    assert_eq!(
        TcpStream::connect(&address).await.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused,
        "a new connection is refused while draining, so a proxy sends it to another replica"
    );
}

#[tokio::test]
async fn a_request_waiting_in_the_backlog_when_a_replica_is_told_to_stop_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    // One connection at a time: a second client waits in the kernel's backlog, as one does
    // that connects just as the replica is told to stop.
    let mut app = TestApp::spawn_with(rinha::config::Settings {
        max_connections: 1,
        drain: Duration::from_millis(500),
        ..settings(&fresh_database().await)
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let request = b"GET /contagem-pessoas HTTP/1.1\r\nHost: rinha\r\n\r\n";
    let mut first = TcpStream::connect(&address).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buffer = [0u8; 4096];
    let read = first.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    let mut waiting = TcpStream::connect(&address).await.unwrap();
    waiting.write_all(request).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    app.begin_stop();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), waiting.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(
        matches!(read, Ok(Ok(_))) && answer.starts_with("http/1.1 200"),
        "a request the kernel had accepted is answered, not reset: {read:?} {answer:?}"
    );
    assert!(answer.contains("connection: close"), "{answer}");
    drop(first);
}

/// Sends `request` on a new connection and returns the answer's head and body, as far as they
/// came within a second.
async fn raw_exchange(address: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let whole = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer).to_lowercase();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|length| length.trim().parse().ok())
            .unwrap_or(0);
        body.len() >= length
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut buffer = [0u8; 4096];
    while !whole(&answer) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => answer.extend_from_slice(&buffer[..read]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_request_target_without_a_path_gets_400_and_the_process_serves_on() {
    let database = fresh_database().await;
    let metrics_port = free_port().to_string();
    let mut app = AppProcess::start_with(&database, &[("METRICS_PORT", &metrics_port)]).await;
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    for address in [&app.address, &metrics] {
        for request in [
            "CONNECT 127.0.0.1:5432 HTTP/1.1\r\nHost: 127.0.0.1:5432\r\n\r\n",
            "GET contagem-pessoas HTTP/1.1\r\nHost: rinha\r\n\r\n",
            "POST 127.0.0.1:8081 HTTP/1.1\r\nHost: rinha\r\nContent-Length: 2\r\n\r\n{}",
            "OPTIONS localhost:8081 HTTP/1.1\r\nHost: rinha\r\n\r\n",
        ] {
            let answer = raw_exchange(address, request).await;
            assert!(
                answer.starts_with("HTTP/1.1 400") && answer.contains(r#"{"error":"#),
                "{request:?} to {address} got {answer:?}"
            );
            assert!(
                app.child.try_wait().unwrap().is_none(),
                "{request:?} to {address} ended the process"
            );
        }
    }
    // The absolute form names a path, and stays served.
    let answer = raw_exchange(
        &app.address,
        "GET http://rinha/contagem-pessoas HTTP/1.1\r\nHost: rinha\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let scrape = reqwest::get(format!("{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric_value(&scrape, "panics_total"), 0.0);
}

#[tokio::test]
async fn a_replica_starts_while_another_session_keeps_a_write_open() {
    // Applying the schema again would wait for that write (its index statements lock the
    // table), until the database timeout failed the start.
    let database = fresh_database().await;
    let first = TestApp::spawn_on(&database).await;
    let mut other = db_client(&database).await;
    let open = other.transaction().await.unwrap();
    open.batch_execute(
        "INSERT INTO pessoas (id, apelido, nome, nascimento) \
         VALUES (gen_random_uuid(), 'aberto', 'Aberto', '2000-01-01')",
    )
    .await
    .unwrap();
    let second = TestApp::spawn_on(&database).await;
    second.create(&pessoa("segundo")).await;
    assert_eq!(first.count().await, 1);
    open.commit().await.unwrap();
    assert_eq!(second.count().await, 2);
}
