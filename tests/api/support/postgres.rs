//! Throwaway PostgreSQL clusters for the tests.
//!
//! With `DATABASE_URL` set, tests create their databases on that server. Without it, the
//! test process starts one cluster of its own (initdb in a temporary directory, as the `postgres` user
//! when run as root, since PostgreSQL refuses to run as root) on a free loopback port. A small
//! watchdog stops the cluster and deletes its directory once the test process has exited,
//! because Rust tests have no hook that runs after the last test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates and starts a new cluster, stopped and deleted when this process exits.
    fn start_new() -> Cluster {
        let bin = postgres_bin_dir();
        let dir = std::env::temp_dir().join(format!("rinha-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if running_as_root() {
            run(Command::new("chown").arg("postgres:").arg(&dir));
        }
        let data = dir.join("data");
        run(as_postgres(&bin.join("initdb"))
            .arg("--pgdata")
            .arg(&data)
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"]));
        let cluster = Cluster {
            bin,
            dir,
            port: free_port(),
        };
        cluster.start();
        cluster.stop_when_this_process_exits();
        cluster
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 \
             -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        // fsync is off only to keep the test suite quick; production configs keep it on.
        run(as_postgres(&self.bin.join("pg_ctl"))
            .arg("--pgdata")
            .arg(self.dir.join("data"))
            .arg("--log")
            .arg(self.dir.join("log"))
            .args(["--wait", "--options", &options, "start"]));
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    #[expect(
        clippy::zombie_processes,
        reason = "the watchdog must outlive this process, so it is never waited for"
    )]
    fn stop_when_this_process_exits(&self) {
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {runas} {pg_ctl} --pgdata {data} --mode=immediate stop >/dev/null 2>&1; \
             rm -rf {dir}",
            pid = std::process::id(),
            runas = if running_as_root() {
                "runuser -u postgres --"
            } else {
                ""
            },
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster watchdog");
    }
}

/// The server the tests create their databases on, as a URL with `{db}` for the database name.
pub fn server_url_template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) => with_database(&url, "{db}"),
        Err(_) => {
            let cluster = Box::leak(Box::new(Cluster::start_new()));
            cluster.url("{db}")
        }
    })
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..authority_end])
}

/// PostgreSQL's server binaries: from PATH (as in a Nix shell), else `pg_config`, else the
/// newest of Debian's `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists());
    if let Some(dir) = on_path {
        return dir;
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    installed.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    installed.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries found (initdb): install them \
             (apt-get install postgresql) or set DATABASE_URL to a server the tests may use"
        )
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}

fn run(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u:p@h:5432/app?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
