//! `cargo xtask check-delivery`: the delivery files (the Nix files, the compose stacks, the
//! GitHub workflows, the nginx and Prometheus configurations and the scripts) checked by static
//! means, where neither Nix nor a container engine runs. What `nix flake check` verifies itself
//! (the lock, evaluation, the packages) is left to it. Every check runs; the command fails when
//! any of them fails.
//!
//! Programs it calls: nix-instantiate (Debian's nix-bin parses without a store), deadnix,
//! shellcheck, check-jsonschema, promtool, nginx and unshare.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use xshell::{Shell, cmd};

use crate::run_quietly;
use crate::topology::{COMPOSE_FILE, Compose, HOST_COMPOSE_FILE, Topology};

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

/// The files under `directory`, at any depth, whose name ends in `.extension`; sorted.
fn files_with_extension(sh: &Shell, directory: &str, extension: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in sh.read_dir(directory)? {
        if path.is_dir() {
            files.extend(files_with_extension(sh, &path.to_string_lossy(), extension)?);
        } else if path.extension().is_some_and(|found| found == extension) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn nix_files(sh: &Shell) -> Result<Vec<PathBuf>> {
    let mut files = vec![PathBuf::from("flake.nix")];
    files.extend(files_with_extension(sh, "nix", "nix")?);
    Ok(files)
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
    let mut files = files_with_extension(sh, "nix/scripts", "sh")?;
    files.extend(files_with_extension(sh, "docker", "sh")?);
    each(&files, |file| run_quietly(cmd!(sh, "shellcheck {file}")))
}

fn workflow_files(sh: &Shell) -> Result<Vec<PathBuf>> {
    let mut files = files_with_extension(sh, ".github/workflows", "yml")?;
    files.extend(files_with_extension(sh, ".github/workflows", "yaml")?);
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
    limits_fit_budget(&sh.current_dir())
}

fn limits_fit_budget(root: &Path) -> Result<()> {
    let topology = Topology::load(root)?;
    let host = Compose::read(&root.join(HOST_COMPOSE_FILE))?;
    let (limits, host_limits) = (topology.compose.limits(), host.limits());
    let mut found = Vec::new();
    if host_limits != limits {
        found.push(format!(
            "{HOST_COMPOSE_FILE} limits {host_limits:?} differ from {COMPOSE_FILE}'s {limits:?}"
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
    ensure!(found.is_empty(), found.join("\n"));
    Ok(())
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

    fn service(name: &str, cpus: &str, memory: &str) -> String {
        format!(
            "  {name}:\n    deploy:\n      resources:\n        limits:\n          cpus: \"{cpus}\"\n          memory: {memory}\n"
        )
    }

    const REPLICA: &str =
        "    build: .\n    environment:\n      DATABASE_URL: postgres://p:p@db:5432/rinha\n";

    /// A scratch repository holding the two compose files.
    fn repository(bridge: &[String], host: &[String]) -> xshell::TempDir {
        let sh = Shell::new().unwrap();
        let root = sh.create_temp_dir().unwrap();
        for (file, services) in [COMPOSE_FILE, HOST_COMPOSE_FILE].iter().zip([bridge, host]) {
            sh.write_file(root.path().join(file), format!("services:\n{}", services.concat()))
                .unwrap();
        }
        root
    }

    fn contest_split() -> Vec<String> {
        vec![
            service("db", "0.85", "1792M"),
            service("api1", "0.2", "512M") + REPLICA + "      PORT: 8081\n",
            service("api2", "0.2", "512M") + REPLICA + "      PORT: 8082\n",
            service("nginx", "0.25", "128M") + "    ports: [\"9999:9999\"]\n",
        ]
    }

    #[test]
    fn the_contest_split_fits_and_over_budget_or_diverging_limits_fail() {
        let root = repository(&contest_split(), &contest_split());
        limits_fit_budget(root.path()).unwrap();

        let mut greedy = contest_split();
        greedy[0] = service("db", "0.95", "2900M");
        let error = limits_fit_budget(repository(&greedy, &greedy).path()).unwrap_err().to_string();
        assert!(error.contains("1600 millicores"), "{error}");
        assert!(error.contains("4052 MiB"), "{error}");

        let mut host = contest_split();
        host[1] = service("api1", "0.30", "512M");
        let error =
            limits_fit_budget(repository(&contest_split(), &host).path()).unwrap_err().to_string();
        assert!(error.contains("differ"), "{error}");
    }
}
