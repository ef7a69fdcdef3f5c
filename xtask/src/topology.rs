//! The one reader of compose files, and the topology `docker/compose.yml` describes: which
//! service is the database, which are the replicas and which balances them, on which ports,
//! under which limits and with which environment. Nothing else in xtask writes these down.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

pub const COMPOSE_FILE: &str = "docker/compose.yml";
pub const HOST_COMPOSE_FILE: &str = "docker/compose.host.yml";
/// Ids carry their replica's slot in one byte.
pub const MAX_REPLICAS: usize = 256;

/// A service's `deploy.resources.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPUs, as a fraction of one core (`cpus: "0.25"`).
    pub cpus: f64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub image: Option<String>,
    /// `None` for services outside the 1.5 CPU budget (measuring aids).
    pub limits: Option<Limits>,
    pub environment: BTreeMap<String, String>,
    /// Built from this repository (`build:`): the API.
    pub built_here: bool,
    /// The host side of each `ports:` entry.
    pub published_ports: Vec<u16>,
    /// `restart:`, the policy for a container that exits.
    pub restart: Option<String>,
}

/// A compose file, or the model a compose front end resolves from one.
#[derive(Debug, Clone, PartialEq)]
pub struct Compose {
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
}

impl Compose {
    pub fn read(path: &Path) -> Result<Compose> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Compose::parse(&text).with_context(|| path.display().to_string())
    }

    pub fn parse(text: &str) -> Result<Compose> {
        let mut document: Value = serde_yaml_ng::from_str(text)?;
        // Compose files share a block between services with merge keys (`<<: *anchor`); a key
        // written in the mapping wins over a merged one.
        document.apply_merge()?;
        let services = document["services"].as_mapping().context("no services")?.iter();
        let services = services.map(|(name, service)| {
            let name = scalar(name).context("a service name is not a scalar")?;
            let parsed = Service::of(service).with_context(|| format!("services.{name}"))?;
            Ok((name, parsed))
        });
        let name = document["name"].as_str().map(str::to_owned);
        Ok(Compose { name, services: services.collect::<Result<_>>()? })
    }

    /// The limits of every service that has them.
    #[cfg(test)]
    pub fn limits(&self) -> BTreeMap<&str, Limits> {
        self.services
            .iter()
            .filter_map(|(name, service)| Some((name.as_str(), service.limits?)))
            .collect()
    }
}

impl Service {
    fn of(service: &Value) -> Result<Service> {
        let mut environment = BTreeMap::new();
        match &service["environment"] {
            Value::Null => {}
            Value::Mapping(entries) => {
                for (name, value) in entries {
                    let value = if value.is_null() { Some(String::new()) } else { scalar(value) };
                    let entry = scalar(name).zip(value).context("an environment entry")?;
                    environment.insert(entry.0, entry.1);
                }
            }
            _ => bail!("environment is not a mapping"),
        }
        let ports = service["ports"].as_sequence().map(Vec::as_slice).unwrap_or_default();
        let published_ports = ports.iter().map(|port| {
            let port = scalar(port).context("a port is not a scalar")?;
            let host_side = port.rsplit(':').nth(1).unwrap_or(&port);
            host_side.parse().with_context(|| format!("port {port:?}"))
        });
        let limits = &service["deploy"]["resources"]["limits"];
        let limits = match limits.is_null() {
            true => None,
            false => {
                let cpus = scalar(&limits["cpus"]).and_then(|cpus| cpus.trim().parse().ok());
                let cpus = cpus.filter(|cpus: &f64| *cpus > 0.0 && cpus.is_finite());
                let memory =
                    scalar(&limits["memory"]).context("no deploy.resources.limits.memory")?;
                Some(Limits {
                    cpus: cpus.context("deploy.resources.limits.cpus is not a positive number")?,
                    memory_bytes: parse_memory(&memory)?,
                })
            }
        };
        Ok(Service {
            image: service["image"].as_str().map(str::to_owned),
            limits,
            environment,
            built_here: !service["build"].is_null(),
            published_ports: published_ports.collect::<Result<_>>()?,
            restart: service["restart"].as_str().map(str::to_owned),
        })
    }
}

/// The roles of docker/compose.yml's services. The replicas are the services built from this
/// repository, the database is the host their `DATABASE_URL` names, and the load balancer is the
/// one other service under the budget's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub compose: Compose,
    pub database: String,
    pub database_port: u16,
    /// Name and `PORT`, in name order.
    pub replicas: Vec<(String, u16)>,
    pub load_balancer: String,
    pub load_balancer_port: u16,
}

impl Topology {
    pub fn load(root: &Path) -> Result<Topology> {
        let path = root.join(COMPOSE_FILE);
        Topology::of(Compose::read(&path)?).with_context(|| path.display().to_string())
    }

    fn of(compose: Compose) -> Result<Topology> {
        let mut replicas = Vec::new();
        let mut database = None;
        for (name, service) in compose.services.iter().filter(|(_, service)| service.built_here) {
            let env = |key: &str| {
                service.environment.get(key).with_context(|| format!("{name} has no {key}"))
            };
            replicas.push((name.clone(), env("PORT")?.parse().context(format!("{name}'s PORT"))?));
            let address = database_address(env("DATABASE_URL")?)
                .with_context(|| format!("{name}'s DATABASE_URL"))?;
            ensure!(
                database.get_or_insert(address.clone()) == &address,
                "the replicas name different databases"
            );
        }
        let (database, database_port) =
            database.context("no service is built from this repository (`build:`)")?;
        let mut balancers = compose.services.iter().filter(|(name, service)| {
            service.limits.is_some() && **name != database && !service.built_here
        });
        let (load_balancer, balancer) =
            balancers.next().context("no load balancer under limits")?;
        ensure!(
            balancers.next().is_none(),
            "more than one service besides the replicas and the database has limits"
        );
        let load_balancer_port = *balancer
            .published_ports
            .first()
            .with_context(|| format!("{load_balancer} publishes no port"))?;
        let topology = Topology {
            database,
            database_port,
            replicas,
            load_balancer: load_balancer.clone(),
            load_balancer_port,
            compose: compose.clone(),
        };
        for name in topology.budgeted() {
            topology.limits(name)?;
        }
        Ok(topology)
    }

    /// This topology with `count` replicas in place of compose's, made from its first: named
    /// after it (api1, api2, … apiN), on consecutive ports from its own, each with its `ID_SLOT`
    /// (its index), and sharing evenly what compose gives its replicas together: CPU, memory
    /// and database connections (`DB_POOL_SIZE`, with `DB_WRITERS` in the same proportion).
    /// `database_connections` (PostgreSQL's `max_connections`, less what others need) must
    /// cover every pool.
    pub fn with_replicas(mut self, count: usize, database_connections: usize) -> Result<Topology> {
        ensure!(
            (1..=MAX_REPLICAS).contains(&count),
            "--replicas {count}: from 1 to {MAX_REPLICAS}"
        );
        let (first, first_port) = self.replicas.first().cloned().context("no replica")?;
        let template = self.service(&first)?.clone();
        let mut cpus = 0.0;
        let mut memory_bytes = 0;
        let mut pool = 0;
        for (name, _) in &self.replicas {
            let limits = self.limits(name)?;
            cpus += limits.cpus;
            memory_bytes += limits.memory_bytes;
            pool += self.number(name, "DB_POOL_SIZE")?;
        }
        let template_pool = self.number(&first, "DB_POOL_SIZE")?;
        let template_writers = self.number(&first, "DB_WRITERS")?;
        // A replica needs a connection for reads beside its writers.
        let pool_each = (pool / count).max(2);
        let writers_each = (pool_each * template_writers / template_pool).clamp(1, pool_each - 1);
        let needed = count * pool_each;
        ensure!(
            needed <= database_connections,
            "{count} replicas need {needed} database connections (a pool of {pool_each} each), \
             more than the {database_connections} PostgreSQL offers them: raise \
             max_connections in docker/postgresql.conf"
        );
        let metrics_port = self.metrics_port(&first)?;
        let prefix = first.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned();
        for (name, _) in std::mem::take(&mut self.replicas) {
            self.compose.services.remove(&name);
        }
        for index in 0..count {
            let name = format!("{prefix}{}", index + 1);
            let port = first_port + index as u16;
            let mut service = template.clone();
            service.limits = Some(Limits {
                cpus: cpus / count as f64,
                memory_bytes: memory_bytes / count as u64,
            });
            let environment = &mut service.environment;
            environment.insert("PORT".to_owned(), port.to_string());
            environment.insert("ID_SLOT".to_owned(), index.to_string());
            environment.insert("DB_POOL_SIZE".to_owned(), pool_each.to_string());
            environment.insert("DB_WRITERS".to_owned(), writers_each.to_string());
            service.published_ports = vec![port];
            if metrics_port != first_port {
                let metrics_port = metrics_port + index as u16;
                environment.insert("METRICS_PORT".to_owned(), metrics_port.to_string());
                service.published_ports.push(metrics_port);
            }
            self.compose.services.insert(name.clone(), service);
            self.replicas.push((name, port));
        }
        let ports = self.ports();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        ensure!(distinct.len() == ports.len(), "{count} replicas' ports collide: {ports:?}");
        Ok(self)
    }

    /// Replica `name`'s environment variable `key`, a whole number.
    fn number(&self, name: &str, key: &str) -> Result<usize> {
        let value = self.service(name)?.environment.get(key);
        let value = value.with_context(|| format!("{name} has no {key}"))?;
        value.parse().with_context(|| format!("{name}'s {key}"))
    }

    /// The services under the contest's budget, in start order.
    pub fn budgeted(&self) -> Vec<&str> {
        let replicas = self.replicas.iter().map(|(name, _)| name.as_str());
        std::iter::once(self.database.as_str())
            .chain(replicas)
            .chain([self.load_balancer.as_str()])
            .collect()
    }

    /// Replica `name`'s `PORT`.
    pub fn replica_port(&self, name: &str) -> Result<u16> {
        let replica = self.replicas.iter().find(|(replica, _)| replica == name);
        replica.map(|(_, port)| *port).with_context(|| format!("no replica {name}"))
    }

    pub fn limits(&self, name: &str) -> Result<Limits> {
        self.service(name)?.limits.with_context(|| format!("{name} has no deploy.resources.limits"))
    }

    pub fn service(&self, name: &str) -> Result<&Service> {
        self.compose.services.get(name).with_context(|| format!("no service {name}"))
    }

    /// Every port the stack listens on, database first.
    pub fn ports(&self) -> Vec<u16> {
        let replicas = self.replicas.iter().map(|(_, port)| *port);
        // A replica without METRICS_PORT serves /metrics on its API port.
        let metrics = self.replicas.iter().filter_map(|(name, port)| {
            self.metrics_port(name).ok().filter(|metrics_port| metrics_port != port)
        });
        std::iter::once(self.database_port)
            .chain(replicas)
            .chain([self.load_balancer_port])
            .chain(metrics)
            .collect()
    }

    /// The port replica `name` serves /metrics on: its METRICS_PORT, or else its API port.
    pub fn metrics_port(&self, name: &str) -> Result<u16> {
        let port = self.replica_port(name)?;
        match self.service(name)?.environment.get("METRICS_PORT") {
            Some(metrics_port) => metrics_port.parse().context(format!("{name}'s METRICS_PORT")),
            None => Ok(port),
        }
    }
}

/// The host and port of `postgres://user:password@host:port/database`.
fn database_address(url: &str) -> Result<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split_once('@').map_or(rest, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or_default();
    let (host, port) = authority.split_once(':').unwrap_or((authority, "5432"));
    Ok((host.to_owned(), port.parse()?))
}

/// A scalar as compose reads it: `PORT: 8081` is `PORT: "8081"`.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Parses a compose byte value (`128M`, `2304m`, `1.5g`, `512mb`, `1073741824`): the units are
/// powers of 1024, in either case, with an optional trailing `b`.
fn parse_memory(text: &str) -> Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let without_b = lower.strip_suffix('b').unwrap_or(&lower);
    let shift = ["k", "m", "g", "t"].iter().position(|unit| without_b.ends_with(unit));
    let number = shift.map_or(without_b, |_| &without_b[..without_b.len() - 1]);
    match number.trim().parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => {
            Ok((value * shift.map_or(1u64, |shift| 1 << (10 * (shift + 1))) as f64).round() as u64)
        }
        _ => bail!("memory limit {text:?} is not a byte value such as 256M"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_compose_file_has_the_contest_topology() {
        let topology = Topology::load(&crate::workspace::repo_root()).unwrap();
        assert_eq!(topology.budgeted(), ["db", "api1", "api2", "nginx"]);
        assert_eq!(topology.ports(), [5432, 8081, 8082, 9999, 9081, 9082]);
        assert_eq!(topology.service("api1").unwrap().published_ports, [8081, 9081]);
        assert_eq!(topology.metrics_port("api2").unwrap(), 9082);
        assert_eq!(topology.service("db").unwrap().environment["POSTGRES_DB"], "rinha");
        assert!(topology.limits("prometheus").is_err());
    }

    #[test]
    fn replicas_made_from_the_first_share_the_replicas_budget() {
        let compose = Topology::load(&crate::repo_root()).unwrap();
        let same = compose.clone().with_replicas(2, 37).unwrap();
        assert_eq!(same, compose, "two replicas are compose's own");

        let four = compose.clone().with_replicas(4, 37).unwrap();
        assert_eq!(four.budgeted(), ["db", "api1", "api2", "api3", "api4", "nginx"]);
        assert_eq!(four.replica_port("api4").unwrap(), 8084);
        assert_eq!(four.metrics_port("api4").unwrap(), 9084);
        let total = |topology: &Topology, of: fn(Limits) -> f64| -> f64 {
            let replicas = topology.replicas.iter();
            replicas.map(|(name, _)| of(topology.limits(name).unwrap())).sum()
        };
        for of in [|limits: Limits| limits.cpus, |limits: Limits| limits.memory_bytes as f64] {
            assert!((total(&four, of) - total(&compose, of)).abs() < 1e-6);
        }
        let env = &four.service("api3").unwrap().environment;
        assert_eq!(env["ID_SLOT"], "2");
        assert_eq!((env["DB_POOL_SIZE"].as_str(), env["DB_WRITERS"].as_str()), ("4", "2"));
        assert_eq!(four.limits("db").unwrap(), compose.limits("db").unwrap());

        // Pools never shrink below a reader and a writer, so many replicas need more connections.
        let error = compose.clone().with_replicas(19, 37).unwrap_err();
        assert!(error.to_string().contains("max_connections"), "{error}");
        assert!(compose.with_replicas(0, 37).is_err());
    }

    #[test]
    fn merges_and_bare_numbers() {
        let compose = r#"
x-api: &api
  build: .
  environment: { DATABASE_URL: "postgres://p:p@db:5432/rinha", PORT: 8081 }
  deploy: { resources: { limits: { cpus: 0.25, memory: 256mb } } }
services:
  api1: *api
  api2:
    <<: *api
    environment: { PORT: 8082, DATABASE_URL: "postgres://db/rinha" }
  lb: { ports: [9999], deploy: { resources: { limits: { cpus: "0.15", memory: 128M } } } }
  db: { deploy: { resources: { limits: { cpus: "0.85", memory: 1G } } } }
"#;
        let topology = Topology::of(Compose::parse(compose).unwrap()).unwrap();
        assert_eq!(topology.replicas, [("api1".to_owned(), 8081), ("api2".to_owned(), 8082)]);
        assert_eq!(topology.ports(), [5432, 8081, 8082, 9999]);
        assert_eq!(topology.metrics_port("api1").unwrap(), 8081);
        assert_eq!(
            topology.limits("api2").unwrap(),
            Limits { cpus: 0.25, memory_bytes: 256 << 20 }
        );
        assert_eq!(topology.limits("db").unwrap().memory_bytes, 1 << 30);
    }

    #[test]
    fn memory_units_are_powers_of_1024() {
        assert_eq!(parse_memory("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512KB").unwrap(), 512 << 10);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("100b").unwrap(), 100);
        for bad in ["", "M", "-1M", "0", "12x", "1..5g"] {
            assert!(parse_memory(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn malformed_limits_name_their_service() {
        let compose = "services: { db: { deploy: { resources: { limits: { cpus: none } } } } }";
        let error = Compose::parse(compose).unwrap_err();
        assert!(format!("{error:#}").contains("services.db"), "{error:#}");
    }
}
