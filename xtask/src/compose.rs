//! Reads what the native stack shares with `docker/compose.yml`: each service's resource limits
//! and environment. The compose file is the one place these are written down.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use yaml_rust2::{Yaml, YamlLoader};

/// A service's `deploy.resources.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPUs, as a fraction of one core (`cpus: "0.25"`).
    pub cpus: f64,
    pub memory_bytes: u64,
}

/// What the native stack takes from one compose service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// `None` for services the limits do not cover (tools outside the 1.5 CPU budget).
    pub limits: Option<Limits>,
    pub environment: BTreeMap<String, String>,
}

/// The services of a compose file, by name.
pub fn read(path: &Path) -> Result<BTreeMap<String, Service>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    parse(&text).map_err(|error| format!("{}: {error}", path.display()))
}

fn parse(text: &str) -> Result<BTreeMap<String, Service>, String> {
    let documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
    let document = documents.first().ok_or("empty compose file")?;
    let services = field(document, "services")
        .and_then(Yaml::as_hash)
        .ok_or("no `services` mapping")?;
    services
        .iter()
        .map(|(name, service)| {
            let name = name.as_str().ok_or("a service name is not a string")?;
            let parsed =
                parse_service(service).map_err(|error| format!("services.{name}: {error}"))?;
            Ok((name.to_owned(), parsed))
        })
        .collect()
}

fn parse_service(service: &Yaml) -> Result<Service, String> {
    let limits = field(service, "deploy")
        .and_then(|deploy| field(deploy, "resources"))
        .and_then(|resources| field(resources, "limits"));
    Ok(Service {
        limits: limits.map(parse_limits).transpose()?,
        environment: field(service, "environment")
            .map(parse_environment)
            .transpose()?
            .unwrap_or_default(),
    })
}

fn parse_limits(limits: &Yaml) -> Result<Limits, String> {
    let cpus = field(limits, "cpus").ok_or("no deploy.resources.limits.cpus")?;
    let memory = field(limits, "memory").ok_or("no deploy.resources.limits.memory")?;
    Ok(Limits {
        cpus: parse_cpus(cpus)?,
        memory_bytes: parse_memory(&scalar(memory).ok_or("memory limit is not a scalar")?)?,
    })
}

/// Looks `key` up in a mapping, following YAML merge keys (`<<: *anchor`), which compose files
/// use to share a block between services.
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

fn parse_cpus(node: &Yaml) -> Result<f64, String> {
    let text = scalar(node).ok_or("cpus limit is not a scalar")?;
    match text.trim().parse::<f64>() {
        Ok(cpus) if cpus > 0.0 && cpus.is_finite() => Ok(cpus),
        _ => Err(format!("cpus limit {text:?} is not a positive number")),
    }
}

/// Parses a compose byte value (`128M`, `2304m`, `1.5g`, `512mb`, `1073741824`): the units are
/// powers of 1024, in either case, with an optional trailing `b`.
fn parse_memory(text: &str) -> Result<u64, String> {
    let invalid = || format!("memory limit {text:?} is not a byte value such as 256M");
    let lower = text.trim().to_ascii_lowercase();
    let without_b = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, multiplier) = match without_b.chars().last() {
        Some('k') => (&without_b[..without_b.len() - 1], 1u64 << 10),
        Some('m') => (&without_b[..without_b.len() - 1], 1 << 20),
        Some('g') => (&without_b[..without_b.len() - 1], 1 << 30),
        Some('t') => (&without_b[..without_b.len() - 1], 1 << 40),
        _ => (without_b, 1),
    };
    let value: f64 = number.trim().parse().map_err(|_| invalid())?;
    if !(value > 0.0 && value.is_finite()) {
        return Err(invalid());
    }
    Ok((value * multiplier as f64).round() as u64)
}

/// `environment` is either a mapping or a list of `NAME=value` strings.
fn parse_environment(node: &Yaml) -> Result<BTreeMap<String, String>, String> {
    match node {
        Yaml::Hash(mapping) => mapping
            .iter()
            .map(|(name, value)| {
                let name = name.as_str().ok_or("an environment name is not a string")?;
                let value = if value.is_null() {
                    Some(String::new())
                } else {
                    scalar(value)
                };
                let value = value.ok_or_else(|| format!("environment {name} is not a scalar"))?;
                Ok((name.to_owned(), value))
            })
            .collect(),
        Yaml::Array(entries) => entries
            .iter()
            .map(|entry| {
                let entry = entry
                    .as_str()
                    .ok_or("an environment entry is not a string")?;
                let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
                Ok((name.to_owned(), value.to_owned()))
            })
            .collect(),
        _ => Err("environment is neither a mapping nor a list".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPOSE: &str = r#"
x-api: &api
  image: rinha
  environment:
    DATABASE_URL: postgres://postgres:postgres@db:5432/rinha
    DB_POOL_SIZE: 8
  deploy:
    resources:
      limits:
        cpus: "0.25"
        memory: 256M
services:
  api1:
    <<: *api
    hostname: api1
  api2:
    <<: *api
    environment:
      - PORT=8082
      - DATABASE_URL=postgres://db/rinha
  nginx:
    image: nginx
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
"#;

    #[test]
    fn reads_limits_including_merged_blocks() {
        let services = parse(COMPOSE).unwrap();
        let names: Vec<&str> = services.keys().map(String::as_str).collect();
        assert_eq!(names, ["api1", "api2", "db", "nginx"]);
        let limits = |name: &str| services[name].limits.unwrap();
        assert_eq!(
            limits("api1"),
            Limits {
                cpus: 0.25,
                memory_bytes: 256 << 20
            }
        );
        assert_eq!(limits("api2"), limits("api1"));
        assert_eq!(
            limits("nginx"),
            Limits {
                cpus: 0.15,
                memory_bytes: 128 << 20
            }
        );
        assert_eq!(
            limits("db"),
            Limits {
                cpus: 0.85,
                memory_bytes: 2304 << 20
            }
        );
    }

    #[test]
    fn reads_environment_as_mapping_or_list() {
        let services = parse(COMPOSE).unwrap();
        assert_eq!(services["api1"].environment["DB_POOL_SIZE"], "8");
        assert_eq!(
            services["api1"].environment["DATABASE_URL"],
            "postgres://postgres:postgres@db:5432/rinha"
        );
        assert_eq!(services["api2"].environment["PORT"], "8082");
        assert_eq!(
            services["api2"].environment["DATABASE_URL"],
            "postgres://db/rinha"
        );
        assert!(services["db"].environment.is_empty());
    }

    #[test]
    fn memory_units_are_powers_of_1024() {
        assert_eq!(parse_memory("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512k").unwrap(), 512 << 10);
        assert_eq!(parse_memory("512KB").unwrap(), 512 << 10);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("100b").unwrap(), 100);
        for bad in ["", "M", "-1M", "0", "12x", "1..5g"] {
            assert!(parse_memory(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits_are_optional_but_must_be_well_formed() {
        let services = parse("services:\n  prometheus:\n    image: prom\n").unwrap();
        assert_eq!(services["prometheus"].limits, None);
        let error = parse(
            "services:\n  db:\n    deploy:\n      resources:\n        limits:\n          cpus: none\n          memory: 1G\n",
        )
        .unwrap_err();
        assert!(
            error.contains("services.db") && error.contains("cpus"),
            "{error}"
        );
    }
}
