//! The native stack's PostgreSQL: a private cluster configured from `docker/postgresql.conf`,
//! owned and run by the `postgres` user when started as root (PostgreSQL refuses to run as root).

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{Uid, User};

/// Where Debian installs PostgreSQL 15's server programs; elsewhere they are looked up on PATH.
const DEBIAN_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
const PROGRAMS: [&str; 5] = ["initdb", "postgres", "pg_isready", "createdb", "psql"];
/// The credentials the compose stacks use, so one DATABASE_URL shape serves every stack.
pub const USER: &str = "postgres";
pub const PASSWORD: &str = "postgres";
pub const DATABASE: &str = "rinha";

pub struct Postgres {
    bin_dir: PathBuf,
    /// The account the cluster belongs to when started as root; `None` runs it as the caller.
    owner: Option<User>,
}

impl Postgres {
    pub fn locate() -> Result<Postgres, String> {
        let search_path = std::env::var_os("PATH").unwrap_or_default();
        let candidates = std::iter::once(PathBuf::from(DEBIAN_BIN_DIR))
            .chain(std::env::split_paths(&search_path));
        let bin_dir = candidates
            .into_iter()
            .find(|dir| PROGRAMS.iter().all(|program| dir.join(program).is_file()))
            .ok_or_else(|| {
                format!(
                    "PostgreSQL 15 server programs ({}) not found in {DEBIAN_BIN_DIR} or on PATH: \
                     install them with `apt-get install -y postgresql-15` (Debian), or run the \
                     compose stack (docker/compose.yml) instead",
                    PROGRAMS.join(", ")
                )
            })?;
        let owner = if Uid::effective().is_root() {
            let user = User::from_name(USER)
                .map_err(|error| format!("cannot look up the {USER} user: {error}"))?
                .ok_or_else(|| {
                    format!(
                        "PostgreSQL refuses to run as root and there is no `{USER}` user: \
                         `apt-get install -y postgresql-15` creates it"
                    )
                })?;
            Some(user)
        } else {
            None
        };
        Ok(Postgres { bin_dir, owner })
    }

    /// Creates a cluster in `data_dir` (which must not exist) with the settings of `config`.
    pub fn init_cluster(&self, data_dir: &Path, config: &Path) -> Result<(), String> {
        let parent = data_dir.parent().expect("the data directory has a parent");
        std::fs::create_dir_all(parent)
            .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        self.give(parent)?;
        let password_file = parent.join("password");
        std::fs::write(&password_file, PASSWORD)
            .map_err(|error| format!("cannot write {}: {error}", password_file.display()))?;
        self.give(&password_file)?;
        let mut initdb = self.command("initdb");
        initdb
            .arg("--pgdata")
            .arg(data_dir)
            .args([
                "--username",
                USER,
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
            ])
            .args(["--auth-local", "peer", "--auth-host", "scram-sha-256"])
            .arg("--pwfile")
            .arg(&password_file);
        let outcome = run_quietly(&mut initdb);
        let _ = std::fs::remove_file(&password_file);
        outcome?;
        let cluster_config = data_dir.join("postgresql.conf");
        std::fs::copy(config, &cluster_config).map_err(|error| {
            format!("cannot copy {} into the cluster: {error}", config.display())
        })?;
        self.give(&cluster_config)
    }

    /// The server, bound to loopback only: the shared configuration listens everywhere, which
    /// suits a container's private network but not a host.
    pub fn server(&self, data_dir: &Path, port: u16, socket_dir: &Path) -> Command {
        let mut server = self.command("postgres");
        server
            .arg("-D")
            .arg(data_dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket_dir.display()));
        server
    }

    pub fn is_ready(&self, port: u16) -> bool {
        self.command("pg_isready")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--timeout",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    pub fn create_database(&self, port: u16) -> Result<(), String> {
        run_quietly(
            self.command("createdb")
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--username",
                    USER,
                ])
                .arg(DATABASE)
                .env("PGPASSWORD", PASSWORD),
        )
    }

    /// Applies the schema and fills the table with `count` generated people (the replay's
    /// `people` command, through `COPY`), then gathers the planner's statistics, as a table
    /// that grew over time would have them.
    pub fn preload(
        &self,
        port: u16,
        schema: &Path,
        people: &mut Command,
        count: u64,
    ) -> Result<(), String> {
        let psql = |sql: &str| {
            let mut command = self.command("psql");
            command
                .args(["--quiet", "--no-psqlrc", "--set", "ON_ERROR_STOP=1"])
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--username", USER, "--dbname", DATABASE, "--command", sql])
                .env("PGPASSWORD", PASSWORD);
            command
        };
        let schema_sql = std::fs::read_to_string(schema)
            .map_err(|error| format!("cannot read {}: {error}", schema.display()))?;
        run_quietly(&mut psql(&schema_sql))?;
        let mut generator = people
            .arg("people")
            .args(["--count", &count.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run the replay: {error}"))?;
        let rows = generator.stdout.take().expect("piped");
        let copied = psql("COPY pessoas (id, apelido, nome, nascimento, stack) FROM STDIN")
            .stdin(rows)
            .output()
            .map_err(|error| format!("cannot run psql: {error}"))?;
        let generated = generator.wait().map_err(|error| error.to_string())?;
        if !copied.status.success() || !generated.success() {
            return Err(format!(
                "preloading {count} people failed (psql {}, replay {generated}): {}",
                copied.status,
                String::from_utf8_lossy(&copied.stderr)
            ));
        }
        run_quietly(&mut psql("ANALYZE pessoas"))
    }

    /// `program` from the server's directory, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        if let Some(owner) = &self.owner {
            // Dropping from root also clears root's supplementary groups.
            command.uid(owner.uid.as_raw()).gid(owner.gid.as_raw());
            command.env("HOME", &owner.dir).env("USER", &owner.name);
            // The caller's directory may be closed to the owner.
            command.current_dir("/");
        }
        command
    }

    fn give(&self, path: &Path) -> Result<(), String> {
        match &self.owner {
            Some(owner) => chown(path, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
                .map_err(|error| format!("cannot give {} to {USER}: {error}", path.display())),
            None => Ok(()),
        }
    }
}

/// Runs a setup step, showing its output only when it fails.
fn run_quietly(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
