//! `cargo xtask check-delivery`: the delivery files (the Nix files, the compose stacks, the
//! GitHub workflows, the nginx and Prometheus configurations, the scripts, and deploy/'s
//! Kubernetes overlays and alert rules) checked by the tools that know their formats, where
//! neither Nix nor a container engine nor a cluster runs. What `nix flake check` verifies itself
//! (the lock, evaluation, the packages) is left to it; the limits' budget and the workflows'
//! pins are tests of this crate. Every check runs; the command fails when any of them fails.
//!
//! Programs it calls: git, nix-instantiate (Debian's nix-bin parses without a store), deadnix,
//! shellcheck, check-jsonschema, promtool, nginx, unshare, kubectl and kubernetes-validate.

use anyhow::{Result, ensure};
use xshell::{Cmd, Shell, cmd};

use crate::topology::{COMPOSE_FILE, HOST_COMPOSE_FILE, Topology};
use crate::workspace::run_quietly;

pub fn check_delivery(sh: &Shell) -> Result<()> {
    let tracked = |pattern: &str| -> Result<Vec<String>> {
        let files = cmd!(sh, "git ls-files -- {pattern}").read()?;
        Ok(files.lines().map(str::to_owned).collect())
    };
    let (nix, scripts) = (tracked("*.nix")?, tracked("*.sh")?);
    let workflows = tracked(".github/workflows/*.yml")?;
    ensure!(!workflows.is_empty(), "no workflows in .github/workflows");
    let mut checks: Vec<(&str, Vec<Cmd>)> = vec![
        (
            "every Nix file parses",
            nix.iter().map(|f| cmd!(sh, "nix-instantiate --parse {f}")).collect(),
        ),
        ("no dead Nix code (deadnix)", vec![cmd!(sh, "deadnix --fail {nix...}")]),
        ("shell scripts pass shellcheck", vec![cmd!(sh, "shellcheck .ci/run {scripts...}")]),
        (
            "workflows match the GitHub workflow schema",
            vec![cmd!(
                sh,
                "check-jsonschema --builtin-schema vendor.github-workflows {workflows...}"
            )],
        ),
        (
            "compose files match the compose spec",
            vec![cmd!(
                sh,
                "check-jsonschema --builtin-schema vendor.compose-spec {COMPOSE_FILE} {HOST_COMPOSE_FILE}"
            )],
        ),
        (
            "Prometheus configuration (promtool)",
            vec![cmd!(sh, "promtool check config docker/prometheus.yml")],
        ),
    ];
    // `nginx -t` on docker/nginx.conf exactly as the containers read it. Its upstream names must
    // resolve, so the test runs in a private mount namespace whose /etc/hosts maps the
    // topology's services to loopback, as compose.host.yml's extra_hosts do.
    const NGINX_TEST: &str = r#"mount --bind "$1" /etc/hosts && exec nginx -t -q -e stderr -p "$2" -c "$3" -g "pid $2/nginx.pid;""#;
    let scratch = sh.create_temp_dir()?;
    let (scratch, hosts) = (scratch.path(), scratch.path().join("hosts"));
    let services = Topology::load(&sh.current_dir())?.budgeted().join(" ");
    sh.write_file(&hosts, format!("127.0.0.1 localhost {services}\n"))?;
    let config = sh.current_dir().join("docker/nginx.conf");
    let nginx_test =
        cmd!(sh, "unshare --mount sh -c {NGINX_TEST} nginx-test {hosts} {scratch} {config}");
    checks.push(("nginx configuration (nginx -t)", vec![nginx_test]));
    checks.extend(crate::containers::kubernetes::delivery_checks(sh, scratch)?);

    let (count, mut failed) = (checks.len(), Vec::new());
    for (name, commands) in checks {
        let errors: Vec<String> = commands
            .into_iter()
            .filter_map(|command| run_quietly(command).err())
            .map(|error| format!("{error:#}"))
            .collect();
        if errors.is_empty() {
            println!("ok    {name}");
            continue;
        }
        println!("FAIL  {name}");
        for line in errors.iter().flat_map(|error| error.lines()) {
            println!("      {line}");
        }
        failed.push(name);
    }
    println!("check-delivery: {count} checks, {} failed", failed.len());
    ensure!(failed.is_empty(), "failed: {}", failed.join("; "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::topology::{Compose, HOST_COMPOSE_FILE, Topology};
    use crate::workspace::repo_root;

    /// The topology's services' limits add up to at most the contest's 1.5 CPU and 3 GB, and
    /// docker/compose.host.yml carries the very same limits and images.
    #[test]
    fn the_compose_limits_fit_the_contest_budget_in_both_files() {
        let topology = Topology::load(&repo_root()).unwrap();
        let limits = topology.compose.limits();
        let host = Compose::read(&repo_root().join(HOST_COMPOSE_FILE)).unwrap();
        assert_eq!(host.limits(), limits, "{HOST_COMPOSE_FILE} has other limits");
        let images = |compose: &Compose| -> Vec<(String, Option<String>)> {
            compose
                .services
                .iter()
                .map(|(name, service)| (name.clone(), service.image.clone()))
                .collect()
        };
        assert_eq!(
            images(&host),
            images(&topology.compose),
            "{HOST_COMPOSE_FILE} has other images"
        );
        let millicores: f64 = limits.values().map(|limit| (limit.cpus * 1000.0).round()).sum();
        let memory: u64 = limits.values().map(|limit| limit.memory_bytes).sum();
        assert!(millicores <= 1500.0, "the CPU limits add up to {millicores} millicores");
        assert!(memory <= 3 << 30, "the memory limits add up to {} MiB", memory >> 20);
    }

    /// In both compose files, every service under the budget is started again when it exits,
    /// as the native stack's supervisor does for the replicas.
    #[test]
    fn the_budgeted_services_restart_unless_stopped_in_both_files() {
        let topology = Topology::load(&repo_root()).unwrap();
        let host = Compose::read(&repo_root().join(HOST_COMPOSE_FILE)).unwrap();
        for compose in [&topology.compose, &host] {
            for name in topology.budgeted() {
                let restart = compose.services[name].restart.as_deref();
                assert_eq!(restart, Some("unless-stopped"), "{name} in {:?}", compose.name);
            }
        }
    }

    /// Every `uses:` names an action by full commit hash, with its version in a comment
    /// (`owner/repo@<40 hex> # v1.2.3`): a tag can be moved, a commit cannot.
    #[test]
    fn workflow_actions_are_pinned_to_commits() {
        let workflows = std::fs::read_dir(repo_root().join(".github/workflows")).unwrap();
        for path in workflows.map(|entry| entry.unwrap().path()) {
            for (number, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
                let line = line.trim().trim_start_matches("- ");
                let Some(reference) = line.strip_prefix("uses:") else { continue };
                let (action, comment) = reference.split_once('#').unwrap_or((reference, ""));
                let local = action.trim().starts_with("./");
                let pinned = action.trim().split_once('@').is_some_and(|(_, commit)| {
                    commit.len() == 40 && commit.bytes().all(|byte| byte.is_ascii_hexdigit())
                });
                let where_ = format!("{}:{}: {line}", path.display(), number + 1);
                assert!(local || (pinned && comment.trim().starts_with('v')), "{where_}");
            }
        }
    }
}
