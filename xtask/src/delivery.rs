//! `cargo xtask check-delivery`: the delivery files (the Nix files, the compose stacks, the
//! GitHub workflows, the nginx and Prometheus configurations and the scripts) checked by static
//! means, where neither Nix nor a container engine runs. What `nix flake check` verifies itself
//! (the lock, evaluation, the packages) is left to it. Every check runs; the command fails when
//! any of them fails.
//!
//! Programs it calls: nix-instantiate (Debian's nix-bin parses without a store), deadnix,
//! shellcheck, check-jsonschema, promtool, nginx and unshare.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use xshell::{Shell, cmd};

use crate::run_quietly;
use crate::topology::{COMPOSE_FILE, Compose, HOST_COMPOSE_FILE, Limits, Topology};

/// The contest's budget for the whole stack.
const CPU_BUDGET_MILLICORES: u64 = 1500;
const MEMORY_BUDGET_BYTES: u64 = 3 << 30;

type Check = fn(&Shell) -> Result<()>;

const CHECKS: [(&str, Check); 9] = [
    ("every Nix file parses", nix_files_parse),
    ("no dead Nix code (deadnix)", no_dead_nix_code),
    ("shell scripts pass shellcheck", scripts_pass_shellcheck),
    ("workflows match the GitHub workflow schema", workflows_match_schema),
    ("workflow actions are pinned to commits", actions_are_pinned),
    ("compose files match the compose spec", compose_files_match_schema),
    ("compose limits fit 1.5 CPU and 3 GB", compose_limits_fit_budget),
    ("Prometheus configuration (promtool)", prometheus_config_is_valid),
    ("nginx configuration (nginx -t)", nginx_config_is_valid),
];

pub fn check_delivery(sh: &Shell) -> Result<()> {
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        match check(sh) {
            Ok(()) => println!("ok    {name}"),
            Err(error) => {
                println!("FAIL  {name}");
                for line in format!("{error:#}").lines() {
                    println!("      {line}");
                }
                failed.push(name);
            }
        }
    }
    println!("check-delivery: {} checks, {} failed", CHECKS.len(), failed.len());
    ensure!(failed.is_empty(), "failed: {}", failed.join("; "));
    Ok(())
}

/// Runs `check` on every file, reporting all failures rather than the first.
fn each(files: &[PathBuf], check: impl Fn(&Path) -> Result<()>) -> Result<()> {
    let found: Vec<String> = files
        .iter()
        .filter_map(|file| check(file).err())
        .map(|error| format!("{error:#}"))
        .collect();
    ensure!(found.is_empty(), found.join("\n"));
    Ok(())
}

/// The files under `directories`, at any depth, whose name ends in one of `extensions`; sorted.
fn files_with_extension(
    sh: &Shell,
    directories: &[&str],
    extensions: &[&str],
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for directory in directories {
        for path in sh.read_dir(directory)? {
            if path.is_dir() {
                files.extend(files_with_extension(sh, &[&path.to_string_lossy()], extensions)?);
            } else if path.extension().is_some_and(|found| extensions.iter().any(|e| found == *e)) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn nix_files(sh: &Shell) -> Result<Vec<PathBuf>> {
    Ok([vec![PathBuf::from("flake.nix")], files_with_extension(sh, &["nix"], &["nix"])?].concat())
}

fn nix_files_parse(sh: &Shell) -> Result<()> {
    each(&nix_files(sh)?, |file| run_quietly(cmd!(sh, "nix-instantiate --parse {file}")))
}

fn no_dead_nix_code(sh: &Shell) -> Result<()> {
    let files = nix_files(sh)?;
    run_quietly(cmd!(sh, "deadnix --fail {files...}"))
}

/// The apps' and the images' entry points, each file on its own.
fn scripts_pass_shellcheck(sh: &Shell) -> Result<()> {
    let files = files_with_extension(sh, &["nix/scripts", "docker"], &["sh"])?;
    each(&files, |file| run_quietly(cmd!(sh, "shellcheck {file}")))
}

fn workflow_files(sh: &Shell) -> Result<Vec<PathBuf>> {
    let files = files_with_extension(sh, &[".github/workflows"], &["yml", "yaml"])?;
    ensure!(!files.is_empty(), "no workflows in .github/workflows");
    Ok(files)
}

fn workflows_match_schema(sh: &Shell) -> Result<()> {
    let files = workflow_files(sh)?;
    run_quietly(cmd!(sh, "check-jsonschema --builtin-schema vendor.github-workflows {files...}"))
}

/// Every `uses:` names an action by full commit hash, with its version in a comment
/// (`owner/repo@<40 hex> # v1.2.3`): a tag can be moved, a commit cannot.
fn actions_are_pinned(sh: &Shell) -> Result<()> {
    let mut unpinned = Vec::new();
    for file in workflow_files(sh)? {
        for (number, line) in sh.read_file(&file)?.lines().enumerate() {
            if !is_pinned_or_not_a_use(line) {
                unpinned.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
            }
        }
    }
    ensure!(unpinned.is_empty(), unpinned.join("\n"));
    Ok(())
}

fn is_pinned_or_not_a_use(line: &str) -> bool {
    let Some(reference) = line.trim().trim_start_matches("- ").strip_prefix("uses:") else {
        return true;
    };
    let (action, comment) = reference.split_once('#').unwrap_or((reference, ""));
    let action = action.trim();
    if action.starts_with("./") || action.starts_with("docker://") {
        return true;
    }
    let pinned = action.split_once('@').is_some_and(|(_, commit)| {
        commit.len() == 40 && commit.bytes().all(|byte| byte.is_ascii_hexdigit())
    });
    pinned && comment.trim().starts_with('v')
}

fn compose_files_match_schema(sh: &Shell) -> Result<()> {
    run_quietly(cmd!(
        sh,
        "check-jsonschema --builtin-schema vendor.compose-spec {COMPOSE_FILE} {HOST_COMPOSE_FILE}"
    ))
}

/// The topology's services all have limits, those add up to at most the contest's budget, and
/// docker/compose.host.yml carries the very same limits.
fn compose_limits_fit_budget(sh: &Shell) -> Result<()> {
    let topology = Topology::load(&sh.current_dir())?;
    let host = Compose::read(&sh.current_dir().join(HOST_COMPOSE_FILE))?;
    let found = budget_problems(&topology.compose.limits(), &host.limits());
    ensure!(found.is_empty(), found.join("\n"));
    Ok(())
}

fn budget_problems(limits: &BTreeMap<&str, Limits>, host: &BTreeMap<&str, Limits>) -> Vec<String> {
    let mut found = Vec::new();
    if host != limits {
        found.push(format!(
            "{HOST_COMPOSE_FILE} limits {host:?} differ from {COMPOSE_FILE}'s {limits:?}"
        ));
    }
    let millicores: u64 = limits.values().map(|limits| (limits.cpus * 1000.0).round() as u64).sum();
    let memory: u64 = limits.values().map(|limits| limits.memory_bytes).sum();
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
    found
}

fn prometheus_config_is_valid(sh: &Shell) -> Result<()> {
    run_quietly(cmd!(sh, "promtool check config docker/prometheus.yml"))
}

/// `nginx -t` on docker/nginx.conf exactly as the containers read it. Its upstream names must
/// resolve, so the test runs in a private mount namespace whose /etc/hosts maps the topology's
/// services to loopback, as compose.host.yml's extra_hosts do.
fn nginx_config_is_valid(sh: &Shell) -> Result<()> {
    const TEST: &str = r#"mount --bind "$1" /etc/hosts && exec nginx -t -q -e stderr -p "$2" -c "$3" -g "pid $2/nginx.pid;""#;
    let topology = Topology::load(&sh.current_dir())?;
    let scratch = sh.create_temp_dir()?;
    let (scratch, hosts) = (scratch.path(), scratch.path().join("hosts"));
    sh.write_file(&hosts, format!("127.0.0.1 localhost {}\n", topology.budgeted().join(" ")))?;
    let config = sh.current_dir().join("docker/nginx.conf");
    run_quietly(cmd!(sh, "unshare --mount sh -c {TEST} nginx-test {hosts} {scratch} {config}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_commit_pins_with_a_version_comment() {
        let pinned =
            "      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0";
        assert!(is_pinned_or_not_a_use(pinned));
        assert!(is_pinned_or_not_a_use("      - run: cargo test"));
        assert!(is_pinned_or_not_a_use("      - uses: ./.github/actions/local"));
        assert!(!is_pinned_or_not_a_use("      - uses: actions/checkout@v5"));
        assert!(!is_pinned_or_not_a_use(
            "        uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8"
        ));
    }

    #[test]
    fn the_contest_split_fits_and_over_budget_or_diverging_limits_fail() {
        let limits = |db: (f64, u64), api1_cpus: f64| {
            let limit = |cpus, memory_mib: u64| Limits { cpus, memory_bytes: memory_mib << 20 };
            BTreeMap::from([
                ("db", limit(db.0, db.1)),
                ("api1", limit(api1_cpus, 512)),
                ("api2", limit(0.4, 512)),
                ("nginx", limit(0.25, 128)),
            ])
        };
        let contest = limits((0.45, 1792), 0.4);
        assert_eq!(budget_problems(&contest, &contest), Vec::<String>::new());
        let greedy = limits((0.55, 2900), 0.4);
        let problems = budget_problems(&greedy, &greedy).join("\n");
        assert!(problems.contains("1600 millicores"), "{problems}");
        assert!(problems.contains("4052 MiB"), "{problems}");
        let problems = budget_problems(&contest, &limits((0.45, 1792), 0.3));
        assert!(problems[0].contains("differ"), "{problems:?}");
    }
}
