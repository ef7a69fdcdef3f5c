//! The native stack's PostgreSQL: a private cluster configured from `docker/postgresql.conf`,
//! owned and run by the `postgres` user when started as root (PostgreSQL refuses to run as root).

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use nix::unistd::{Uid, User};
use xshell::{Cmd, Shell, cmd};

use crate::workspace::{quietly, run_quietly};

/// Where Debian installs PostgreSQL 15's server programs; elsewhere they are looked up on PATH.
/// The configuration every cluster gets.
pub const CONFIG_FILE: &str = "docker/postgresql.conf";
const DEBIAN_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
const PROGRAMS: [&str; 5] = ["initdb", "postgres", "pg_isready", "createdb", "psql"];
/// The user the PostgreSQL images run as, and whose password the compose files give.
pub const USER: &str = "postgres";

pub struct Postgres {
    bin_dir: PathBuf,
    /// The account the cluster belongs to when started as root; `None` runs it as the caller.
    owner: Option<User>,
    /// In `/`, which the owner can reach wherever the repository is.
    sh: Shell,
    password: String,
    database: String,
    /// Where the server listens: loopback, or its namespace's address (`--netns`).
    pub host: IpAddr,
}

impl Postgres {
    /// The server programs, and the credentials the compose file gives the database service.
    pub fn locate(environment: &std::collections::BTreeMap<String, String>) -> Result<Postgres> {
        let search_path = std::env::var_os("PATH").unwrap_or_default();
        let bin_dir = std::iter::once(PathBuf::from(DEBIAN_BIN_DIR))
            .chain(std::env::split_paths(&search_path))
            .find(|dir| PROGRAMS.iter().all(|program| dir.join(program).is_file()))
            .with_context(|| {
                format!(
                    "PostgreSQL 15 server programs ({}) not found in {DEBIAN_BIN_DIR} or on PATH: \
                     install them with `apt-get install -y postgresql-15` (Debian), or run the \
                     compose stack (docker/compose.yml) instead",
                    PROGRAMS.join(", ")
                )
            })?;
        let owner = match Uid::effective().is_root() {
            true => Some(User::from_name(USER)?.with_context(|| {
                format!("PostgreSQL refuses to run as root and there is no `{USER}` user: `apt-get install -y postgresql-15` creates it")
            })?),
            false => None,
        };
        let sh = Shell::new()?;
        sh.change_dir("/");
        if let Some(owner) = &owner {
            sh.set_var("HOME", &owner.dir);
            sh.set_var("USER", &owner.name);
        }
        let setting = |key: &str| {
            environment
                .get(key)
                .cloned()
                .with_context(|| format!("the database service has no {key}"))
        };
        Ok(Postgres {
            bin_dir,
            owner,
            sh,
            password: setting("POSTGRES_PASSWORD")?,
            database: setting("POSTGRES_DB")?,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        })
    }

    /// The connections `config` (a `postgresql.conf`) leaves the replicas: `max_connections`
    /// less those reserved for superusers and those xtask's own clients (createdb, the
    /// preload) may hold meanwhile.
    pub fn connections_for_replicas(config: &str) -> Result<usize> {
        const FOR_XTASK: usize = 2;
        let setting = |name: &str, default: usize| -> Result<usize> {
            let line = config.lines().map(|line| line.split('#').next().unwrap_or_default());
            let value =
                line.filter_map(|line| line.split_once('=')).find(|(key, _)| key.trim() == name);
            match value {
                Some((_, value)) => {
                    value.trim().parse().with_context(|| format!("{name} = {value}"))
                }
                None => Ok(default),
            }
        };
        let max = setting("max_connections", 100)?;
        let reserved = setting("superuser_reserved_connections", 3)?;
        Ok(max.saturating_sub(reserved + FOR_XTASK))
    }

    pub fn url(&self, port: u16) -> String {
        format!("postgres://{USER}:{}@{}:{port}/{}", self.password, self.host, self.database)
    }

    /// Creates a cluster in `data_dir` (which must not exist) with the settings of `config`,
    /// taking password logins from loopback and, if given, from the `clients` network.
    pub fn init_cluster(
        &self,
        data_dir: &Path,
        config: &Path,
        clients: Option<&str>,
    ) -> Result<()> {
        let parent = data_dir.parent().expect("the data directory has a parent");
        self.sh.create_dir(parent)?;
        self.give(parent)?;
        let password_file = parent.join("password");
        self.sh.write_file(&password_file, &self.password)?;
        self.give(&password_file)?;
        let outcome = run_quietly(
            self.command("initdb")
                .arg("--pgdata")
                .arg(data_dir)
                .args(["--username", USER, "--encoding", "UTF8", "--locale", "C.UTF-8"])
                .args(["--auth-local", "peer", "--auth-host", "scram-sha-256", "--pwfile"])
                .arg(&password_file),
        );
        self.sh.remove_path(&password_file)?;
        outcome?;
        if let Some(clients) = clients {
            let hba = data_dir.join("pg_hba.conf");
            let rules = self.sh.read_file(&hba)?;
            self.sh.write_file(&hba, format!("{rules}host all all {clients} scram-sha-256\n"))?;
        }
        let cluster_config = data_dir.join("postgresql.conf");
        self.sh.copy_file(config, &cluster_config)?;
        self.give(&cluster_config)
    }

    /// Makes `data_dir` (which must not exist) a copy of the stopped cluster in `kept`, its
    /// folder given to the cluster's owner as [`Postgres::init_cluster`] gives it.
    pub fn copy_cluster(&self, kept: &Path, data_dir: &Path) -> Result<()> {
        let parent = data_dir.parent().expect("the data directory has a parent");
        self.sh.create_dir(parent)?;
        self.give(parent)?;
        super::preloaded::copy(&self.sh, kept, data_dir)
    }

    /// The server, bound to its one address only: the shared configuration listens everywhere,
    /// which suits a container's private network but not a host.
    pub fn server(&self, data_dir: &Path, port: u16, socket_dir: &Path) -> Command {
        let settings = [
            format!("listen_addresses={}", self.host),
            format!("port={port}"),
            format!("unix_socket_directories={}", socket_dir.display()),
        ];
        let server = self.command("postgres").arg("-D").arg(data_dir);
        settings.iter().fold(server, |server, setting| server.args(["-c", setting])).into()
    }

    pub fn is_ready(&self, port: u16) -> bool {
        let check = self.command("pg_isready").args(["--timeout", "2"]).args(self.address(port));
        quietly(check).run().is_ok()
    }

    pub fn create_database(&self, port: u16) -> Result<()> {
        let create = self.command("createdb").args(self.address(port)).args(["--username", USER]);
        run_quietly(create.arg(&self.database).env("PGPASSWORD", &self.password))
    }

    /// Applies the schema and fills the table with `count` generated people (the replay's
    /// `people` command, through `COPY`), then vacuums it and gathers the planner's statistics,
    /// as autovacuum would have done for a table that grew over time (a full mirror counts the
    /// people it leaves out through the index and the visibility map).
    pub fn preload(&self, port: u16, schema: &Path, replay: &Path, count: u64) -> Result<()> {
        let psql = |sql: &str| -> Cmd<'_> {
            self.command("psql")
                .args(["--quiet", "--no-psqlrc", "--set", "ON_ERROR_STOP=1"])
                .args(self.address(port))
                .args(["--username", USER, "--dbname", &self.database, "--command", sql])
                .env("PGPASSWORD", &self.password)
        };
        run_quietly(psql(&self.sh.read_file(schema)?))?;
        let count = count.to_string();
        let rows = cmd!(self.sh, "{replay} people --count {count}").quiet().output()?.stdout;
        run_quietly(
            psql("COPY pessoas (id, apelido, nome, nascimento, stack) FROM STDIN").stdin(rows),
        )?;
        run_quietly(psql("VACUUM (ANALYZE) pessoas"))
    }

    /// Opens a transaction that takes a transaction id, as a write does, and keeps it open and
    /// busy (a statement running, so that no idle-session timeout ends it) for `seconds`;
    /// returns when it has committed.
    pub fn hold_transaction(&self, port: u16, seconds: f64) -> Result<()> {
        let sql = format!("BEGIN; SELECT txid_current(); SELECT pg_sleep({seconds:.1}); COMMIT;");
        run_quietly(
            self.command("psql")
                .args(["--quiet", "--no-psqlrc", "--set", "ON_ERROR_STOP=1"])
                .args(self.address(port))
                .args(["--username", USER, "--dbname", &self.database, "--command", &sql])
                .env("PGPASSWORD", &self.password),
        )
    }

    /// `program` from the server's directory, run as the cluster's owner: setpriv execs it in
    /// place, so its pid (and the signals sent to it) are the program's own.
    fn command(&self, program: &str) -> Cmd<'_> {
        let program = self.bin_dir.join(program);
        let command = match &self.owner {
            Some(owner) => {
                let (uid, gid) = (owner.uid.to_string(), owner.gid.to_string());
                cmd!(self.sh, "setpriv --reuid={uid} --regid={gid} --clear-groups -- {program}")
            }
            None => cmd!(self.sh, "{program}"),
        };
        command.quiet()
    }

    fn address(&self, port: u16) -> [String; 4] {
        ["--host".into(), self.host.to_string(), "--port".into(), port.to_string()]
    }

    fn give(&self, path: &Path) -> Result<()> {
        if let Some(owner) = &self.owner {
            chown(path, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
                .with_context(|| format!("cannot give {} to {USER}", path.display()))?;
        }
        Ok(())
    }
}
