//! `docker/nginx.conf` in front of two in-process replicas: what one hostile request through
//! the public entry point can and cannot do. Needs nginx (`apt-get install -y nginx-light`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rinha::config::Settings;

use crate::partition::Link;
use crate::support::{TestApp, free_port, fresh_database, metric_value, pessoa, settings};

/// nginx running `docker/nginx.conf` with the replicas' and its own ports swapped in, and its
/// scratch files in a directory of its own; with a client to send it requests.
struct Nginx {
    child: Child,
    address: String,
    dir: PathBuf,
    http: reqwest::Client,
}

impl Nginx {
    /// nginx with its configuration passed through `edit` first.
    fn start_with(replica_ports: [&str; 2], edit: impl FnOnce(String) -> String) -> Nginx {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("rinha-nginx-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        // When the tests run as root, nginx's workers run as nobody and spill bodies here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/nginx.conf"),
        )
        .unwrap();
        let mut config = template
            .replace(
                "server api1:8081",
                &format!("server 127.0.0.1:{}", replica_ports[0]),
            )
            .replace(
                "server api2:8082",
                &format!("server 127.0.0.1:{}", replica_ports[1]),
            )
            .replace("listen 9999", &format!("listen 127.0.0.1:{port}"));
        let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .map(|kind| format!("    {kind}_temp_path {};\n", dir.join(kind).display()))
            .collect();
        config = config.replacen("http {\n", &format!("http {{\n{temp_paths}"), 1);
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, edit(config)).unwrap();
        let child = Command::new(locate_nginx())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        Nginx {
            child,
            address: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    async fn post(&self, body: &serde_json::Value) -> reqwest::Response {
        let request = self.http.post(self.url("/pessoas")).json(body);
        request.send().await.unwrap()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not KILL: the master takes its workers down with it.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn locate_nginx() -> PathBuf {
    let search_path = std::env::var_os("PATH").unwrap_or_default();
    // Debian keeps nginx in /usr/sbin, which is not on every user's PATH.
    std::env::split_paths(&search_path)
        .chain(std::iter::once(PathBuf::from("/usr/sbin")))
        .map(|dir| dir.join("nginx"))
        .find(|binary| binary.is_file())
        .expect("nginx on PATH or in /usr/sbin (apt-get install -y nginx-light)")
}

async fn stack() -> (TestApp, TestApp, Nginx) {
    let database = fresh_database().await;
    stack_on([&database, &database]).await
}

/// Two replicas, each on its own URL of one database.
async fn stack_on(database_urls: [&str; 2]) -> (TestApp, TestApp, Nginx) {
    stack_edited(database_urls, |config| config).await
}

/// Two replicas, each on its own URL of one database, behind nginx's configuration passed
/// through `edit`.
async fn stack_edited(
    database_urls: [&str; 2],
    edit: impl FnOnce(String) -> String,
) -> (TestApp, TestApp, Nginx) {
    // As docker/compose.yml sets them.
    let replica = |slot: u8| {
        TestApp::spawn_with(Settings {
            id_slot: Some(slot),
            ..settings(database_urls[usize::from(slot)])
        })
    };
    let api1 = replica(0).await;
    let api2 = replica(1).await;
    let port = |app: &TestApp| app.address.rsplit(':').next().unwrap().to_owned();
    let (port1, port2) = (port(&api1), port(&api2));
    let nginx = Nginx::start_with([&port1, &port2], edit);
    for _ in 0..200 {
        if let Ok(response) = nginx.http.get(nginx.url("/contagem-pessoas")).send().await
            && response.status() == 200
        {
            return (api1, api2, nginx);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx did not come up: {}", nginx.error_log());
}

#[tokio::test]
async fn oversized_bodies_are_refused_by_nginx_and_never_take_a_replica_out() {
    let (_api1, _api2, nginx) = stack().await;
    let huge = format!(
        r#"{{"apelido":"a","nome":"n","nascimento":"2000-01-01","stack":["{}"]}}"#,
        "x".repeat(600 * 1024)
    );
    for _ in 0..10 {
        let response = nginx
            .http
            .post(nginx.url("/pessoas"))
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{}", nginx.error_log());
    }
    // A body the replicas never read (GET) makes them close with data unread.
    for _ in 0..4 {
        let response = nginx
            .http
            .get(nginx.url("/contagem-pessoas"))
            .body("x".repeat(60 * 1024))
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), 502, "{}", nginx.error_log());
    }
    for _ in 0..20 {
        let response = nginx.get("/contagem-pessoas").await;
        assert_eq!(response.status(), 200, "{}", nginx.error_log());
    }
}

#[tokio::test]
async fn metrics_are_never_served_through_nginx() {
    let (_api1, _api2, nginx) = stack().await;
    for path in [
        "/metrics",
        "/metrics/",
        "/metrics/x",
        "/metricsx",
        "//metrics",
        "/%6detrics",
        "/pessoas/../metrics",
    ] {
        let response = nginx.get(path).await;
        assert_eq!(response.status(), 404, "GET {path} through nginx");
        // nginx's own page, not the replica's JSON: the request never reached a replica.
        assert_eq!(
            response.headers()["content-type"],
            "text/html",
            "GET {path} through nginx"
        );
    }
}

#[tokio::test]
async fn a_lookup_goes_to_the_replica_that_stored_the_person_or_else_to_the_other() {
    let (mut api1, api2, nginx) = stack().await;
    let mut locations = Vec::new();
    for i in 0..20 {
        let response = nginx.post(&pessoa(&format!("roteado{i}"))).await;
        assert_eq!(response.status(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let found = nginx.get(&location).await;
        assert_eq!(found.status(), 200, "{location}");
        locations.push(location);
    }
    for api in [&api1, &api2] {
        let metrics = api.get("/metrics").await.text().await.unwrap();
        let answered = |route_status: &str| {
            metric_value(&metrics, &format!("http_requests_total{{{route_status}}}"))
        };
        assert_eq!(
            answered(r#"route="GET /pessoas/:id",status="200""#),
            answered(r#"route="POST /pessoas",status="201""#),
            "{}: each lookup at the replica that stored the person",
            api.address
        );
    }
    // With api1 gone, its people are looked up on api2, in the database.
    api1.begin_stop();
    let gone = format!("{}/contagem-pessoas", api1.address);
    while nginx.http.get(&gone).send().await.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for location in &locations {
        let found = nginx.get(location).await;
        assert_eq!(found.status(), 200, "{location}: {}", nginx.error_log());
    }
}

#[tokio::test]
async fn reads_answered_503_by_a_replica_cut_off_from_its_database_are_answered_by_the_other() {
    let database = fresh_database().await;
    let link = Link::to(&database).await;
    let (_api1, api2, nginx) = stack_on([&link.url(&database), &database]).await;
    let mut locations = Vec::new();
    for i in 0..4 {
        let response = nginx.post(&pessoa(&format!("cortado{i}"))).await;
        assert_eq!(response.status(), 201);
        locations.push(response.headers()["location"].to_str().unwrap().to_owned());
    }
    link.set_cut(true).await;
    // api1's probe finds its database gone and it answers 503 at once from then on.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let unknown = format!("/pessoas/{}", uuid::Uuid::now_v7());
    for path in ["/contagem-pessoas", "/pessoas?t=cortado", unknown.as_str()] {
        for _ in 0..6 {
            let status = nginx.get(path).await.status();
            let expected = if path == unknown { 404 } else { 200 };
            assert_eq!(status, expected, "GET {path}: {}", nginx.error_log());
        }
    }
    // api1's ids too, whether api1 holds them in memory or not.
    for location in &locations {
        assert_eq!(nginx.get(location).await.status(), 200, "{location}");
    }
    let metrics = api2.get("/metrics").await.text().await.unwrap();
    assert!(
        metric_value(
            &metrics,
            r#"http_requests_total{route="GET /contagem-pessoas",status="200"}"#
        ) >= 6.0
    );
}

#[tokio::test]
async fn once_every_replica_answered_503_nginx_sends_to_them_again_as_soon_as_they_recover() {
    let database = fresh_database().await;
    let links = [Link::to(&database).await, Link::to(&database).await];
    let urls = links.each_ref().map(|link| link.url(&database));
    let (api1, api2, nginx) = stack_on([&urls[0], &urls[1]]).await;
    // The database out of reach of both, as while it restarts.
    for link in &links {
        link.set_cut(true).await;
    }
    answers(&api1, 503).await;
    answers(&api2, 503).await;
    // Were nginx to leave out replicas that fail, these would be enough.
    for _ in 0..6 {
        let status = nginx.get("/contagem-pessoas").await.status();
        assert_eq!(
            status,
            503,
            "the replicas' own answer: {}",
            nginx.error_log()
        );
    }
    for link in &links {
        link.set_cut(false).await;
    }
    answers(&api1, 200).await;
    answers(&api2, 200).await;
    // Within those 2 s: the replicas are sent requests again at once, not refused with 502.
    let status = nginx.get("/contagem-pessoas").await.status();
    assert_eq!(status, 200, "{}", nginx.error_log());
}

#[tokio::test]
async fn writes_answered_503_by_a_replica_cut_off_from_its_database_are_stored_by_the_other() {
    let database = fresh_database().await;
    let link = Link::to(&database).await;
    let (_api1, _api2, nginx) = stack_on([&link.url(&database), &database]).await;
    link.set_cut(true).await;
    // api1's probe finds its database gone and it answers 503 at once from then on.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for i in 0..10 {
        let response = nginx.post(&pessoa(&format!("reenviado{i}"))).await;
        assert_eq!(response.status(), 201, "{}", nginx.error_log());
    }
    let db = crate::support::db_client(&database).await;
    assert_eq!(
        crate::support::stored_people(&db).await,
        10,
        "each stored once"
    );
}

#[tokio::test]
async fn a_replica_that_answered_503_and_recovered_answers_everything_once_the_other_stops() {
    let database = fresh_database().await;
    let link = Link::to(&database).await;
    // Were nginx to leave out a replica that failed, it would be for longer than this test.
    let left_out_long = |config: String| config.replace("fail_timeout=2s", "fail_timeout=60s");
    let (api1, mut api2, nginx) =
        stack_edited([&link.url(&database), &database], left_out_long).await;
    link.set_cut(true).await;
    // api1's probe finds its database gone and it answers 503 at once from then on.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..6 {
        let status = nginx.get("/contagem-pessoas").await.status();
        assert_eq!(
            status,
            200,
            "api2 answers in api1's stead: {}",
            nginx.error_log()
        );
    }
    link.set_cut(false).await;
    answers(&api1, 200).await;
    // Then api2 stops, as in a rolling restart: every request must reach api1.
    api2.begin_stop();
    let gone = format!("{}/contagem-pessoas", api2.address);
    while nginx.http.get(&gone).send().await.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..8 {
        let status = nginx.get("/contagem-pessoas").await.status();
        assert_eq!(status, 200, "{}", nginx.error_log());
        let response = nginx.post(&pessoa(&format!("sobrevivente{i}"))).await;
        assert_eq!(response.status(), 201, "{}", nginx.error_log());
    }
}

/// Waits until `api` answers a count with `status`, for at most 5 s.
async fn answers(api: &TestApp, status: u16) {
    for _ in 0..200 {
        if api.get("/contagem-pessoas").await.status() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} never answered {status}", api.address);
}
