//! `docker/nginx.conf` in front of two in-process replicas: what one hostile request through
//! the public entry point can and cannot do. Needs nginx (`apt-get install -y nginx-light`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{TestApp, fresh_database};

/// nginx running `docker/nginx.conf` with the replicas' and its own ports swapped in, and its
/// scratch files in a directory of its own.
struct Nginx {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl Nginx {
    fn start(replica_ports: [&str; 2]) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
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
        std::fs::write(&config_path, config).unwrap();
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
        }
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

async fn stack() -> (TestApp, TestApp, Nginx, reqwest::Client) {
    let database = fresh_database().await;
    let api1 = TestApp::spawn_on(&database).await;
    let api2 = TestApp::spawn_on(&database).await;
    let port = |app: &TestApp| app.address.rsplit(':').next().unwrap().to_owned();
    let (port1, port2) = (port(&api1), port(&api2));
    let nginx = Nginx::start([&port1, &port2]);
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(response) = http
            .get(format!("{}/contagem-pessoas", nginx.address))
            .send()
            .await
            && response.status() == 200
        {
            return (api1, api2, nginx, http);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx did not come up: {}", nginx.error_log());
}

#[tokio::test]
async fn oversized_bodies_are_refused_by_nginx_and_never_take_a_replica_out() {
    let (_api1, _api2, nginx, http) = stack().await;
    let huge = format!(
        r#"{{"apelido":"a","nome":"n","nascimento":"2000-01-01","stack":["{}"]}}"#,
        "x".repeat(600 * 1024)
    );
    for _ in 0..10 {
        let response = http
            .post(format!("{}/pessoas", nginx.address))
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{}", nginx.error_log());
    }
    // A body the replicas never read (GET) makes them close with data unread.
    for _ in 0..4 {
        let response = http
            .get(format!("{}/contagem-pessoas", nginx.address))
            .body("x".repeat(60 * 1024))
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), 502, "{}", nginx.error_log());
    }
    for _ in 0..20 {
        let response = http
            .get(format!("{}/contagem-pessoas", nginx.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", nginx.error_log());
    }
}

#[tokio::test]
async fn metrics_are_never_served_through_nginx() {
    let (_api1, _api2, nginx, http) = stack().await;
    for path in [
        "/metrics",
        "/metrics/",
        "/metrics/x",
        "/metricsx",
        "//metrics",
        "/%6detrics",
        "/pessoas/../metrics",
    ] {
        let response = http
            .get(format!("{}{path}", nginx.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "GET {path} through nginx");
        // nginx's own page, not the replica's JSON: the request never reached a replica.
        assert_eq!(
            response.headers()["content-type"],
            "text/html",
            "GET {path} through nginx"
        );
    }
}
