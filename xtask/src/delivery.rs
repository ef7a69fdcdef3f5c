//! `cargo xtask check-delivery`: the delivery files (the Nix flake, the compose stacks, the GitHub
//! workflows, the nginx and Prometheus configurations) checked by every static means, since
//! neither Nix nor a container engine runs where this does. Every check runs; the command fails
//! when any of them fails.
//!
//! Programs it calls: nix-instantiate (Debian's nix-bin parses and evaluates without a store),
//! deadnix, shellcheck, check-jsonschema, promtool, nginx, unshare and git.

mod flake;
mod stack;
mod workflows;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::stack::repo_root;

const COMPOSE_FILES: [&str; 2] = ["docker/compose.yml", "docker/compose.host.yml"];

type Check = fn(&Path) -> Result<(), String>;

const CHECKS: [(&str, Check); 13] = [
    ("every Nix file parses", flake::parses),
    ("no dead Nix code (deadnix)", flake::has_no_dead_code),
    (
        "flake.lock locks exactly the flake's inputs",
        flake::lock_matches_inputs,
    ),
    (
        "paths in Nix files are tracked by git",
        flake::paths_are_tracked,
    ),
    (
        "the flake evaluates against stand-ins for nixpkgs",
        flake::evaluates,
    ),
    (
        "shell scripts pass shellcheck",
        flake::scripts_pass_shellcheck,
    ),
    (
        "Cargo.lock has only registry sources",
        flake::cargo_lock_has_registry_sources_only,
    ),
    (
        "workflows match the GitHub workflow schema",
        workflows::match_schema,
    ),
    (
        "workflow actions are pinned to commits",
        workflows::actions_are_pinned,
    ),
    (
        "compose files match the compose spec",
        stack::compose_files_match_schema,
    ),
    (
        "compose limits fit 1.5 CPU and 3 GB",
        stack::compose_limits_fit_budget,
    ),
    (
        "Prometheus configuration (promtool)",
        stack::prometheus_config_is_valid,
    ),
    (
        "nginx configuration (nginx -t)",
        stack::nginx_config_is_valid,
    ),
];

pub fn check_delivery(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err("check-delivery takes no arguments".to_owned());
    }
    let root = repo_root();
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        match check(&root) {
            Ok(()) => println!("ok    {name}"),
            Err(error) => {
                println!("FAIL  {name}");
                for line in error.lines() {
                    println!("      {line}");
                }
                failed.push(name);
            }
        }
    }
    println!(
        "check-delivery: {} checks, {} failed",
        CHECKS.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join("; ")))
    }
}

/// `Ok` when nothing was found, else every finding, one a line.
fn problems(found: Vec<String>) -> Result<(), String> {
    if found.is_empty() {
        Ok(())
    } else {
        Err(found.join("\n"))
    }
}

fn check_jsonschema(schema: &str, files: &[PathBuf]) -> Result<(), String> {
    run(Command::new("check-jsonschema")
        .args(["--builtin-schema", schema])
        .args(files))
    .map(drop)
}

/// The files under `directory`, at any depth, whose name ends in `.extension`; sorted.
fn files_with_extension(directory: &Path, extension: &str) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(directory)
        .map_err(|error| format!("{}: {error}", directory.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|error| format!("{}: {error}", directory.display()))?
            .path();
        if path.is_dir() {
            files.extend(files_with_extension(&path, extension)?);
        } else if path.extension().is_some_and(|found| found == extension) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `check` on every file, reporting all failures rather than the first.
fn each_file(files: &[PathBuf], check: impl Fn(&Path) -> Result<(), String>) -> Result<(), String> {
    problems(files.iter().filter_map(|file| check(file).err()).collect())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn display(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Runs a program to completion; its standard output on success, else what it printed.
fn run(command: &mut Command) -> Result<String, String> {
    run_with_input(command, "")
}

fn run_with_input(command: &mut Command, input: &str) -> Result<String, String> {
    use std::io::Write;

    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .map_err(|error| format!("cannot write to {program}: {error}"))?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .trim_end()
        .to_owned())
    }
}
