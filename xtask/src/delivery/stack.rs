//! The compose stacks and the configuration they mount: both compose files valid against the
//! compose spec, their resource limits within the contest's budget and equal, the Prometheus
//! configuration accepted by promtool and the nginx configuration by `nginx -t`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{COMPOSE_FILES, check_jsonschema, problems, run};
use crate::compose::{self, Limits};

/// The contest's budget for the whole stack.
const CPU_BUDGET_MILLICORES: u64 = 1500;
const MEMORY_BUDGET_BYTES: u64 = 3 << 30;
/// The services the budget covers; others (Prometheus) are measuring aids outside it.
const BUDGETED_SERVICES: [&str; 4] = ["db", "api1", "api2", "nginx"];

pub fn compose_files_match_schema(root: &Path) -> Result<(), String> {
    let files: Vec<PathBuf> = COMPOSE_FILES.iter().map(|file| root.join(file)).collect();
    check_jsonschema("vendor.compose-spec", &files)
}

/// The budgeted services all have limits, those of docker/compose.yml add up to at most the
/// contest's budget, and docker/compose.host.yml carries the very same limits.
pub fn compose_limits_fit_budget(root: &Path) -> Result<(), String> {
    let [bridge, host] = COMPOSE_FILES.map(|file| service_limits(&root.join(file)));
    let (bridge, host) = (bridge?, host?);
    let [bridge_file, host_file] = COMPOSE_FILES;
    let mut found = Vec::new();
    for service in BUDGETED_SERVICES {
        if !bridge.contains_key(service) {
            found.push(format!(
                "{bridge_file}: {service} has no deploy.resources.limits"
            ));
        }
    }
    if host != bridge {
        found.push(format!(
            "{host_file} limits {host:?} differ from {bridge_file}'s {bridge:?}"
        ));
    }
    let millicores: u64 = bridge
        .values()
        .map(|limits| (limits.cpus * 1000.0).round() as u64)
        .sum();
    let memory: u64 = bridge.values().map(|limits| limits.memory_bytes).sum();
    if millicores > CPU_BUDGET_MILLICORES {
        found.push(format!(
            "the CPU limits add up to {millicores} millicores, over {CPU_BUDGET_MILLICORES}"
        ));
    }
    if memory > MEMORY_BUDGET_BYTES {
        found.push(format!(
            "the memory limits add up to {} MiB, over {}",
            memory >> 20,
            MEMORY_BUDGET_BYTES >> 20
        ));
    }
    problems(found)
}

fn service_limits(path: &Path) -> Result<BTreeMap<String, Limits>, String> {
    Ok(compose::read(path)?
        .into_iter()
        .filter_map(|(name, service)| service.limits.map(|limits| (name, limits)))
        .collect())
}

pub fn prometheus_config_is_valid(root: &Path) -> Result<(), String> {
    run(Command::new("promtool")
        .args(["check", "config"])
        .arg(root.join("docker/prometheus.yml")))
    .map(drop)
}

/// `nginx -t` on docker/nginx.conf exactly as the containers read it. Its upstream names (api1,
/// api2) must resolve, so the test runs in a private mount namespace whose /etc/hosts maps them
/// to loopback, as compose.host.yml's extra_hosts do.
pub fn nginx_config_is_valid(root: &Path) -> Result<(), String> {
    const TEST: &str = r#"mount --bind "$1" /etc/hosts && exec nginx -t -q -e stderr -p "$2" -c "$3" -g "pid $2/nginx.pid;""#;
    let scratch = std::env::temp_dir().join(format!("rinha-check-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|error| format!("{}: {error}", scratch.display()))?;
    let hosts = scratch.join("hosts");
    let outcome = std::fs::write(&hosts, "127.0.0.1 localhost api1 api2 db\n")
        .map_err(|error| format!("{}: {error}", hosts.display()))
        .and_then(|()| {
            run(Command::new("unshare")
                .args(["--mount", "sh", "-c", TEST, "nginx-test"])
                .arg(&hosts)
                .arg(&scratch)
                .arg(root.join("docker/nginx.conf")))
        });
    let _ = std::fs::remove_dir_all(&scratch);
    outcome.map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn service(name: &str, cpus: &str, memory: &str) -> String {
        format!(
            "  {name}:\n    deploy:\n      resources:\n        limits:\n          cpus: \"{cpus}\"\n          memory: {memory}\n"
        )
    }

    /// A scratch repository holding the two compose files; removed when dropped.
    struct Repository(PathBuf);

    impl Drop for Repository {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn repository(bridge: &[String], host: &[String]) -> Repository {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "rinha-delivery-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(root.join("docker")).unwrap();
        for (file, services) in COMPOSE_FILES.iter().zip([bridge, host]) {
            std::fs::write(root.join(file), format!("services:\n{}", services.concat())).unwrap();
        }
        Repository(root)
    }

    fn contest_split() -> Vec<String> {
        vec![
            service("db", "0.85", "2304M"),
            service("api1", "0.25", "256M"),
            service("api2", "0.25", "256M"),
            service("nginx", "0.15", "128M"),
        ]
    }

    #[test]
    fn the_contest_split_fits() {
        let root = repository(&contest_split(), &contest_split());
        assert_eq!(compose_limits_fit_budget(&root.0), Ok(()));
    }

    #[test]
    fn over_budget_or_diverging_limits_fail() {
        let mut greedy = contest_split();
        greedy[0] = service("db", "0.95", "2900M");
        let error = compose_limits_fit_budget(&repository(&greedy, &greedy).0).unwrap_err();
        assert!(error.contains("1600 millicores"), "{error}");
        assert!(error.contains("3540 MiB"), "{error}");

        let mut host = contest_split();
        host[1] = service("api1", "0.30", "256M");
        let error = compose_limits_fit_budget(&repository(&contest_split(), &host).0).unwrap_err();
        assert!(error.contains("differ"), "{error}");

        let without_nginx = &contest_split()[..3];
        let error =
            compose_limits_fit_budget(&repository(without_nginx, without_nginx).0).unwrap_err();
        assert!(
            error.contains("nginx has no deploy.resources.limits"),
            "{error}"
        );
    }
}
