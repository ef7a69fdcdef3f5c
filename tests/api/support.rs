//! Spawning the app against a fresh database, in-process or as the real binary.

pub mod postgres;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rinha::config::Settings;
use rinha::startup::Application;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A new, empty database on the test server; returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    server_admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    postgres::server_url_template().replace("{db}", &name)
}

/// A connection to the test server's `postgres` database, to manage the tests' databases.
async fn server_admin() -> tokio_postgres::Client {
    db_client(&postgres::server_url_template().replace("{db}", "postgres")).await
}

/// Makes the database of `database_url` refuse connections and ends those it has, as a
/// database that goes down does; or lets it accept them again. The server stays up for the
/// other tests' databases.
pub async fn set_reachable(database_url: &str, reachable: bool) {
    let name = database_url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("a database name in the URL");
    let admin = server_admin().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}"
        ))
        .await
        .expect("change whether the database accepts connections");
    if !reachable {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await
            .expect("end the database's connections");
    }
}

pub fn settings(database_url: &str) -> Settings {
    Settings {
        database_url: database_url.to_owned(),
        host: std::net::Ipv4Addr::UNSPECIFIED.into(),
        port: 0,
        metrics_port: None,
        pool_size: 8,
        writers: 4,
        batch_max: 256,
        db_timeout: Duration::from_secs(2),
        memory_limit_bytes: None,
        max_connections: 4096,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(5),
        // Tests stop their replicas at once unless they test the drain.
        drain: Duration::ZERO,
        id_slot: None,
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(300),
    }
}

/// One replica running inside the test process.
pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_on(&fresh_database().await).await
    }

    /// A replica over an existing database, as a second replica would be.
    pub async fn spawn_on(database_url: &str) -> TestApp {
        TestApp::spawn_with(settings(database_url)).await
    }

    pub async fn spawn_with(settings: Settings) -> TestApp {
        let app = Application::build(&settings).await.expect("the app starts");
        let address = format!("http://127.0.0.1:{}", app.local_addr().port());
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = stop.await;
        }));
        TestApp {
            address,
            database_url: settings.database_url,
            http: reqwest::Client::new(),
            shutdown: Some(shutdown),
        }
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.post_raw(body.to_string()).await
    }

    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}/pessoas", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /pessoas answers")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} answers: {e}"))
    }

    /// The value of the sample `name` the app's `/metrics` serves now.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.get("/metrics").await.text().await.unwrap(), name)
    }

    /// Creates a person and returns the `Location` it got.
    pub async fn create(&self, body: &Value) -> String {
        let response = self.post(body).await;
        assert_eq!(response.status(), 201, "creating {body}");
        response.headers()["location"]
            .to_str()
            .expect("ASCII location")
            .to_owned()
    }

    pub async fn count(&self) -> i64 {
        let response = self.get("/contagem-pessoas").await;
        assert_eq!(response.status(), 200);
        response
            .text()
            .await
            .unwrap()
            .parse()
            .expect("a whole number")
    }

    /// Tells the replica to stop, as SIGTERM does, without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A valid person with the given apelido.
pub fn pessoa(apelido: &str) -> Value {
    json!({
        "apelido": apelido,
        "nome": format!("Nome de {apelido}"),
        "nascimento": "1990-05-17",
        "stack": ["Rust", "PostgreSQL"],
    })
}

/// The `rinha` binary as a separate process, as it runs in production.
pub struct AppProcess {
    pub child: Child,
    pub address: String,
}

impl AppProcess {
    pub async fn start(database_url: &str) -> AppProcess {
        AppProcess::start_with(database_url, &[]).await
    }

    /// The binary with more environment variables, or different ones.
    pub async fn start_with(database_url: &str, env: &[(&str, &str)]) -> AppProcess {
        AppProcess::start_logging(database_url, env, Stdio::inherit()).await
    }

    /// The binary with its standard error sent to `stderr`.
    pub async fn start_logging(
        database_url: &str,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> AppProcess {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rinha"))
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("DB_TIMEOUT_MS", "2000")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the rinha binary");
        let host = env
            .iter()
            .find_map(|(name, value)| (*name == "HOST").then_some(*value))
            .unwrap_or("127.0.0.1");
        // Owned from here on, so that dropping it (on any panic below) ends the process.
        let process = AppProcess {
            child,
            address: format!("http://{host}:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(response) = http
                .get(format!("{}/contagem-pessoas", process.address))
                .send()
                .await
                && response.status() == 200
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the rinha binary did not become ready on port {port}");
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the process did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection for checking what the database holds, bypassing the API.
pub async fn db_client(database_url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// How many people the database holds, read past every replica.
pub async fn stored_people(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM pessoas", &[])
        .await
        .unwrap()
        .get(0)
}

/// The value of the sample `name` (with its labels, if any) in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
        .parse()
        .unwrap()
}

/// A port no socket uses now, for a server a test starts as a process of its own. It lies below
/// Linux's range of ephemeral ports (32768 and up), where an outgoing connection may take one
/// between this check and the server's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Each test binary starts at its own place in the range, and each call takes the next port.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 12_000;
    let _ = NEXT.compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = 20_000 + (NEXT.fetch_add(1, Ordering::SeqCst) % 12_000) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// PostgreSQL's plan for `sql` with `params`, one line of it per line.
pub async fn explain(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    let rows = db.query(&format!("EXPLAIN {sql}"), params).await.unwrap();
    rows.iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}
