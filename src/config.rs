//! Configuration from the environment, with defaults that work against a local PostgreSQL.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: a `postgres://` connection string.
    pub database_url: String,
    /// `HOST`: the address to listen on; every interface by default, as a container needs.
    pub host: IpAddr,
    /// `PORT`: the HTTP port.
    pub port: u16,
    /// `METRICS_PORT`: the port of a second listener, on the same `HOST`, that serves only
    /// `/metrics`, which the API port then answers `404`: a Service or load balancer in front of
    /// the API port cannot expose them. Without it, `/metrics` is served on `PORT`.
    pub metrics_port: Option<u16>,
    /// `DB_POOL_SIZE`: connections per replica, shared by reads and the writers.
    pub pool_size: usize,
    /// `DB_WRITERS`: how many INSERTs a replica may have in flight at once; fewer than the pool.
    pub writers: usize,
    /// `BATCH_MAX`: the most records a writer puts in one INSERT.
    pub batch_max: usize,
    /// `DB_TIMEOUT_MS`: how long a request waits on the database before it is answered `503`.
    pub db_timeout: Duration,
    /// `MEMORY_LIMIT_MB`: the replica's memory budget in MiB; without it, its cgroup's limit.
    pub memory_limit_bytes: Option<u64>,
    /// `MAX_CONNECTIONS`: the most connections a replica serves at once; more wait to be
    /// accepted.
    pub max_connections: usize,
    /// `HEADER_TIMEOUT_MS`: how long a connection may take to send a request's head, idle time
    /// before it included, before it is closed.
    pub header_timeout: Duration,
    /// `BODY_TIMEOUT_MS`: how long a client may take to send a request's body before it is
    /// answered `408`.
    pub body_timeout: Duration,
    /// `SHUTDOWN_GRACE_MS`: how long a replica told to stop waits for its open requests before
    /// it closes their connections.
    pub shutdown_grace: Duration,
    /// `DRAIN_MS`: how long a replica told to stop (and no longer accepting) goes on answering
    /// on its open connections, closing each after its answer; longer than nginx keeps an idle
    /// upstream connection, so that nginx never sends a request down one the replica is closing.
    pub drain: Duration,
    /// `ID_SLOT`: 0 to 255, the last byte of every id this replica makes, so that nginx sends a
    /// lookup to the replica that stored the person; without it, that byte is random. Only a
    /// shortcut: any replica finds any person.
    pub id_slot: Option<u8>,
    /// `DB_PROBE_INTERVAL_MS`: how often a background probe checks that the database can be
    /// reached (a TCP connection to it, see `store/probe.rs`).
    pub probe_interval: Duration,
    /// `DB_PROBE_TIMEOUT_MS`: how long the probe's connection may take before the replica
    /// takes the database for out of reach and answers `503` at once until a probe connects.
    pub probe_timeout: Duration,
}

#[derive(Debug)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so that tests need not touch the process environment.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let number = |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| {
            let Some(text) = lookup(name) else {
                return Ok(default);
            };
            match text.trim().parse::<u64>() {
                Ok(value) if range.contains(&value) => Ok(value),
                _ => Err(ConfigError(format!(
                    "{name}={text:?} is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ))),
            }
        };
        let pool_size = number("DB_POOL_SIZE", 8, 2..=1000)? as usize;
        let writers = number("DB_WRITERS", 4, 1..=1000)? as usize;
        if writers >= pool_size {
            return Err(ConfigError(format!(
                "DB_WRITERS={writers} leaves no connection for reads in a pool of {pool_size} \
                 (DB_POOL_SIZE): it must be smaller"
            )));
        }
        let port = number("PORT", 8080, 0..=65535)? as u16;
        let metrics_port = match lookup("METRICS_PORT") {
            None => None,
            Some(_) => Some(number("METRICS_PORT", 0, 0..=65535)? as u16),
        };
        if metrics_port.is_some_and(|metrics_port| metrics_port == port && port != 0) {
            return Err(ConfigError(format!(
                "METRICS_PORT={port} is PORT too: the metrics need a port of their own"
            )));
        }
        Ok(Settings {
            database_url: lookup("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
            host: match lookup("HOST") {
                None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some(text) => text.trim().parse().map_err(|_| {
                    ConfigError(format!("HOST={text:?} is not an IPv4 or IPv6 address"))
                })?,
            },
            port,
            metrics_port,
            pool_size,
            writers,
            batch_max: number("BATCH_MAX", 256, 1..=10_000)? as usize,
            db_timeout: Duration::from_millis(number("DB_TIMEOUT_MS", 5000, 1..=600_000)?),
            memory_limit_bytes: match lookup("MEMORY_LIMIT_MB") {
                None => None,
                Some(_) => Some(number("MEMORY_LIMIT_MB", 0, 1..=1 << 30)? << 20),
            },
            max_connections: number("MAX_CONNECTIONS", 4096, 1..=1_000_000)? as usize,
            header_timeout: Duration::from_millis(number(
                "HEADER_TIMEOUT_MS",
                10_000,
                1..=600_000,
            )?),
            body_timeout: Duration::from_millis(number("BODY_TIMEOUT_MS", 10_000, 1..=600_000)?),
            shutdown_grace: Duration::from_millis(number("SHUTDOWN_GRACE_MS", 5000, 0..=600_000)?),
            drain: Duration::from_millis(number("DRAIN_MS", 3000, 0..=600_000)?),
            id_slot: match lookup("ID_SLOT") {
                None => None,
                Some(_) => Some(number("ID_SLOT", 0, 0..=255)? as u8),
            },
            probe_interval: Duration::from_millis(number(
                "DB_PROBE_INTERVAL_MS",
                250,
                1..=600_000,
            )?),
            probe_timeout: Duration::from_millis(number("DB_PROBE_TIMEOUT_MS", 1000, 1..=600_000)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_without_environment() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.metrics_port, None);
        assert_eq!(s.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(s.pool_size, 8);
        assert_eq!(s.writers, 4);
        assert_eq!(s.batch_max, 256);
        assert_eq!(s.db_timeout, Duration::from_secs(5));
        assert_eq!(s.memory_limit_bytes, None);
        assert_eq!(s.header_timeout, Duration::from_secs(10));
        assert_eq!(s.body_timeout, Duration::from_secs(10));
        assert_eq!(s.shutdown_grace, Duration::from_secs(5));
        assert_eq!(s.drain, Duration::from_secs(3));
        assert_eq!(s.max_connections, 4096);
        assert_eq!(s.id_slot, None);
        assert_eq!(s.probe_interval, Duration::from_millis(250));
        assert_eq!(s.probe_timeout, Duration::from_secs(1));
        assert!(s.database_url.starts_with("postgres://"));
    }

    #[test]
    fn values_from_environment() {
        let s = settings(&[
            ("PORT", "9001"),
            ("METRICS_PORT", "9101"),
            ("HOST", "127.0.0.1"),
            ("DB_POOL_SIZE", "4"),
            ("DB_WRITERS", "2"),
            ("BATCH_MAX", "64"),
            ("DB_TIMEOUT_MS", "250"),
            ("MEMORY_LIMIT_MB", "300"),
            ("HEADER_TIMEOUT_MS", "300"),
            ("BODY_TIMEOUT_MS", "400"),
            ("SHUTDOWN_GRACE_MS", "500"),
            ("DRAIN_MS", "600"),
            ("MAX_CONNECTIONS", "16"),
            ("DATABASE_URL", "postgres://u:p@db/rinha"),
            ("ID_SLOT", "200"),
            ("DB_PROBE_INTERVAL_MS", "100"),
            ("DB_PROBE_TIMEOUT_MS", "700"),
        ])
        .unwrap();
        assert_eq!(s.port, 9001);
        assert_eq!(s.metrics_port, Some(9101));
        assert_eq!(s.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s.pool_size, 4);
        assert_eq!(s.writers, 2);
        assert_eq!(s.batch_max, 64);
        assert_eq!(s.db_timeout, Duration::from_millis(250));
        assert_eq!(s.memory_limit_bytes, Some(300 << 20));
        assert_eq!(s.header_timeout, Duration::from_millis(300));
        assert_eq!(s.body_timeout, Duration::from_millis(400));
        assert_eq!(s.shutdown_grace, Duration::from_millis(500));
        assert_eq!(s.drain, Duration::from_millis(600));
        assert_eq!(s.max_connections, 16);
        assert_eq!(s.database_url, "postgres://u:p@db/rinha");
        assert_eq!(s.id_slot, Some(200));
        assert_eq!(s.probe_interval, Duration::from_millis(100));
        assert_eq!(s.probe_timeout, Duration::from_millis(700));
    }

    #[test]
    fn bad_values_are_reported_by_name() {
        let err = settings(&[("PORT", "70000")]).unwrap_err();
        assert!(err.to_string().contains("PORT"));
        assert!(settings(&[("BATCH_MAX", "0")]).is_err());
        assert!(settings(&[("DB_POOL_SIZE", "many")]).is_err());
        assert!(settings(&[("MEMORY_LIMIT_MB", "0")]).is_err());
        assert!(settings(&[("ID_SLOT", "256")]).is_err());
        assert!(settings(&[("METRICS_PORT", "70000")]).is_err());
        let err = settings(&[("PORT", "9001"), ("METRICS_PORT", "9001")]).unwrap_err();
        assert!(err.to_string().contains("METRICS_PORT"), "{err}");
        let err = settings(&[("METRICS_PORT", "8080")]).unwrap_err();
        assert!(err.to_string().contains("METRICS_PORT"), "{err}");
        let err = settings(&[("HOST", "localhost")]).unwrap_err();
        assert!(err.to_string().contains("HOST"), "{err}");
    }

    #[test]
    fn writers_leave_connections_for_reads() {
        let err = settings(&[("DB_POOL_SIZE", "4")]).unwrap_err();
        assert!(err.to_string().contains("DB_WRITERS=4"), "{err}");
        assert!(settings(&[("DB_POOL_SIZE", "4"), ("DB_WRITERS", "3")]).is_ok());
        assert!(settings(&[("DB_WRITERS", "0")]).is_err());
    }
}
