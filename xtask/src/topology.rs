//! The one reader of compose files, and the topology `docker/compose.yml` describes: which
//! service is the database, which are the replicas and which balances them, on which ports,
//! under which limits and with which environment. Nothing else in xtask writes these down.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::{Deserialize, Serialize};
use yaml_rust2::{Yaml, YamlLoader};

pub const COMPOSE_FILE: &str = "docker/compose.yml";
pub const HOST_COMPOSE_FILE: &str = "docker/compose.host.yml";

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
        let documents = YamlLoader::load_from_str(text)?;
        let document = documents.first().context("empty compose file")?;
        let services =
            field(document, "services").and_then(Yaml::as_hash).context("no `services` mapping")?;
        let services = services
            .iter()
            .map(|(name, service)| {
                let name = name.as_str().context("a service name is not a string")?;
                let service = parse_service(service).with_context(|| format!("services.{name}"))?;
                Ok((name.to_owned(), service))
            })
            .collect::<Result<_>>()?;
        Ok(Compose { name: field(document, "name").and_then(scalar), services })
    }

    /// The limits of every service that has them.
    pub fn limits(&self) -> BTreeMap<&str, Limits> {
        self.services
            .iter()
            .filter_map(|(name, service)| Some((name.as_str(), service.limits?)))
            .collect()
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
            let port = env("PORT")?.parse().with_context(|| format!("{name}'s PORT"))?;
            replicas.push((name.clone(), port));
            let address = database_address(env("DATABASE_URL")?)
                .with_context(|| format!("{name}'s DATABASE_URL"))?;
            ensure!(
                database.get_or_insert(address.clone()) == &address,
                "the replicas name different databases"
            );
        }
        ensure!(!replicas.is_empty(), "no service is built from this repository (`build:`)");
        let (database, database_port) = database.expect("there is a replica");
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

    /// The services under the contest's budget, in start order.
    pub fn budgeted(&self) -> Vec<&str> {
        let replicas = self.replicas.iter().map(|(name, _)| name.as_str());
        std::iter::once(self.database.as_str())
            .chain(replicas)
            .chain([self.load_balancer.as_str()])
            .collect()
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
        std::iter::once(self.database_port)
            .chain(replicas)
            .chain([self.load_balancer_port])
            .collect()
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

fn parse_service(service: &Yaml) -> Result<Service> {
    let limits = field(service, "deploy")
        .and_then(|deploy| field(deploy, "resources"))
        .and_then(|r| field(r, "limits"));
    let published_ports = match field(service, "ports") {
        Some(Yaml::Array(ports)) => ports
            .iter()
            .map(|port| {
                let port = scalar(port).context("a port is not a scalar")?;
                let host_side = port.rsplit(':').nth(1).unwrap_or(&port);
                host_side.parse().with_context(|| format!("port {port:?}"))
            })
            .collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    Ok(Service {
        image: field(service, "image").and_then(scalar),
        limits: limits.map(parse_limits).transpose()?,
        environment: field(service, "environment")
            .map(parse_environment)
            .transpose()?
            .unwrap_or_default(),
        built_here: field(service, "build").is_some(),
        published_ports,
    })
}

fn parse_limits(limits: &Yaml) -> Result<Limits> {
    let value = |key: &str| {
        field(limits, key)
            .and_then(scalar)
            .with_context(|| format!("no deploy.resources.limits.{key}"))
    };
    let cpus = value("cpus")?;
    let cpus = cpus.trim().parse::<f64>().ok().filter(|cpus| *cpus > 0.0 && cpus.is_finite());
    Ok(Limits {
        cpus: cpus.context("the cpus limit is not a positive number")?,
        memory_bytes: parse_memory(&value("memory")?)?,
    })
}

/// Looks `key` up in a mapping, following YAML merge keys (`<<: *anchor`), which compose files
/// use to share a block between services: a key written in the mapping wins over a merged one.
fn field<'a>(node: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    let mapping = node.as_hash()?;
    if let Some(value) = mapping.get(&Yaml::String(key.to_owned())) {
        return Some(value);
    }
    match mapping.get(&Yaml::String("<<".to_owned()))? {
        Yaml::Array(merged) => merged.iter().find_map(|source| field(source, key)),
        merged => field(merged, key),
    }
}

fn scalar(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(text) | Yaml::Real(text) => Some(text.clone()),
        Yaml::Integer(number) => Some(number.to_string()),
        Yaml::Boolean(flag) => Some(flag.to_string()),
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
    let value = number.trim().parse::<f64>().ok().filter(|value| *value > 0.0 && value.is_finite());
    let value =
        value.ok_or_else(|| anyhow!("memory limit {text:?} is not a byte value such as 256M"))?;
    let multiplier = shift.map_or(1u64, |shift| 1 << (10 * (shift + 1)));
    Ok((value * multiplier as f64).round() as u64)
}

/// `environment` is either a mapping or a list of `NAME=value` strings.
fn parse_environment(node: &Yaml) -> Result<BTreeMap<String, String>> {
    match node {
        Yaml::Hash(mapping) => mapping
            .iter()
            .map(|(name, value)| {
                let name = name.as_str().context("an environment name is not a string")?;
                let value = if value.is_null() { Some(String::new()) } else { scalar(value) };
                Ok((
                    name.to_owned(),
                    value.with_context(|| format!("environment {name} is not a scalar"))?,
                ))
            })
            .collect(),
        Yaml::Array(entries) => entries
            .iter()
            .map(|entry| {
                let entry = entry.as_str().context("an environment entry is not a string")?;
                let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
                Ok((name.to_owned(), value.to_owned()))
            })
            .collect(),
        _ => bail!("environment is neither a mapping nor a list"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPOSE: &str = r#"
x-api: &api
  image: rinha
  build: .
  environment:
    DATABASE_URL: postgres://postgres:postgres@db:5432/rinha
    PORT: 8081
  deploy:
    resources:
      limits:
        cpus: "0.25"
        memory: 256M
services:
  api1:
    <<: *api
  api2:
    <<: *api
    environment:
      - PORT=8082
      - DATABASE_URL=postgres://db/rinha
  lb:
    image: nginx
    ports: ["9999:9999"]
    deploy:
      resources:
        limits:
          cpus: 0.15
          memory: 128mb
  db:
    image: postgres:15
    deploy:
      resources:
        limits:
          cpus: '0.85'
          memory: 2304M
  prometheus:
    image: prom
    ports: ["127.0.0.1:9090:9090"]
"#;

    #[test]
    fn roles_ports_and_limits_come_from_the_file_merges_included() {
        let topology = Topology::of(Compose::parse(COMPOSE).unwrap()).unwrap();
        assert_eq!(topology.replicas, [("api1".to_owned(), 8081), ("api2".to_owned(), 8082)]);
        assert_eq!((topology.database.as_str(), topology.database_port), ("db", 5432));
        assert_eq!((topology.load_balancer.as_str(), topology.load_balancer_port), ("lb", 9999));
        assert_eq!(topology.budgeted(), ["db", "api1", "api2", "lb"]);
        assert_eq!(topology.ports(), [5432, 8081, 8082, 9999]);
        assert_eq!(
            topology.limits("api2").unwrap(),
            Limits { cpus: 0.25, memory_bytes: 256 << 20 }
        );
        assert_eq!(topology.limits("lb").unwrap(), Limits { cpus: 0.15, memory_bytes: 128 << 20 });
        assert_eq!(topology.limits("db").unwrap().memory_bytes, 2304 << 20);
        assert!(topology.limits("prometheus").is_err());
        let api1 = topology.service("api1").unwrap();
        assert_eq!(api1.environment["DATABASE_URL"], "postgres://postgres:postgres@db:5432/rinha");
        assert_eq!(topology.service("prometheus").unwrap().published_ports, [9090]);
    }

    #[test]
    fn the_shared_compose_file_has_the_contest_topology() {
        let topology = Topology::load(&crate::repo_root()).unwrap();
        assert_eq!(topology.budgeted(), ["db", "api1", "api2", "nginx"]);
        assert_eq!(topology.ports(), [5432, 8081, 8082, 9999]);
    }

    #[test]
    fn memory_units_are_powers_of_1024() {
        assert_eq!(parse_memory("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512KB").unwrap(), 512 << 10);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("100b").unwrap(), 100);
        for bad in ["", "M", "-1M", "0", "12x", "1..5g"] {
            assert!(parse_memory(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn malformed_limits_name_their_service() {
        let error = Compose::parse("services:\n  db:\n    deploy:\n      resources:\n        limits:\n          cpus: none\n          memory: 1G\n")
            .unwrap_err();
        assert!(format!("{error:#}").contains("services.db"), "{error:#}");
    }
}
