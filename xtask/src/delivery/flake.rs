//! The Nix flake: it parses, has no dead code, locks exactly its inputs, names only files git
//! tracks, evaluates (against stand-ins for nixpkgs) to the outputs it promises, and its apps'
//! scripts pass shellcheck as writeShellApplication will run it.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{
    COMPOSE_FILES, display, each_file, files_with_extension, problems, read, run, run_with_input,
};

/// Evaluated with `nix-instantiate --argstr repository <root>`; see the file's own comment.
const STAND_INS: &str = "xtask/src/delivery/flake-with-stand-ins.nix";
const SYSTEMS: [&str; 4] = [
    "x86_64-linux",
    "aarch64-linux",
    "x86_64-darwin",
    "aarch64-darwin",
];

fn nix_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = vec![root.join("flake.nix"), root.join(STAND_INS)];
    files.extend(files_with_extension(&root.join("nix"), "nix")?);
    Ok(files)
}

pub fn parses(root: &Path) -> Result<(), String> {
    each_file(&nix_files(root)?, |file| {
        run(Command::new("nix-instantiate").arg("--parse").arg(file)).map(drop)
    })
}

pub fn has_no_dead_code(root: &Path) -> Result<(), String> {
    run(Command::new("deadnix").arg("--fail").args(nix_files(root)?)).map(drop)
}

/// Every input flake.nix declares is locked in flake.lock to a fixed revision with its hash,
/// nothing else is, and `outputs` takes no argument that is not an input.
pub fn lock_matches_inputs(root: &Path) -> Result<(), String> {
    let declared = nix_eval_json(Command::new("nix-instantiate").current_dir(root).args([
        "--expr",
        "let flake = import ./flake.nix; in {
               inputs = builtins.attrNames flake.inputs;
               arguments = builtins.attrNames (builtins.functionArgs flake.outputs);
             }",
    ]))?;
    let inputs = string_list(&declared["inputs"]);
    let unknown_arguments: Vec<String> = string_list(&declared["arguments"])
        .into_iter()
        .filter(|argument| argument != "self" && !inputs.contains(argument))
        .collect();
    if !unknown_arguments.is_empty() {
        return Err(format!(
            "outputs takes arguments that are not inputs: {unknown_arguments:?}"
        ));
    }

    let lock: Value = serde_json::from_str(&read(&root.join("flake.lock"))?)
        .map_err(|error| format!("flake.lock is not JSON: {error}"))?;
    if lock["version"] != 7 {
        return Err(format!(
            "flake.lock version {} (expected 7)",
            lock["version"]
        ));
    }
    let root_node = lock["root"]
        .as_str()
        .ok_or("flake.lock has no root node name")?;
    let locked_inputs = lock["nodes"][root_node]["inputs"]
        .as_object()
        .ok_or("flake.lock's root node has no inputs")?;
    let locked_names: Vec<String> = locked_inputs.keys().cloned().collect();
    if locked_names != inputs {
        return Err(format!(
            "flake.nix declares inputs {inputs:?}, flake.lock locks {locked_names:?}"
        ));
    }
    for (input, node_name) in locked_inputs {
        let node_name = node_name.as_str().ok_or_else(|| {
            format!("input {input} follows another input instead of being locked")
        })?;
        let node = &lock["nodes"][node_name];
        check_locked_node(&node["locked"]).map_err(|error| format!("input {input}: {error}"))?;
        if !node["original"].is_object() {
            return Err(format!("input {input} has no `original` reference"));
        }
    }
    Ok(())
}

fn check_locked_node(locked: &Value) -> Result<(), String> {
    let text = |key: &str| {
        locked[key]
            .as_str()
            .ok_or(format!("locked.{key} is missing"))
    };
    let nar_hash = text("narHash")?;
    if !nar_hash.starts_with("sha256-") {
        return Err(format!("narHash {nar_hash} is not an SRI sha256 hash"));
    }
    if !locked["lastModified"].is_u64() {
        return Err("locked.lastModified is missing".to_owned());
    }
    if text("type")? == "github" {
        text("owner")?;
        text("repo")?;
        let rev = text("rev")?;
        if rev.len() != 40 || !rev.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(format!("rev {rev} is not a full commit hash"));
        }
    }
    Ok(())
}

/// A flake sees only the files git tracks: a path literal naming an untracked file builds on the
/// author's machine and breaks everywhere else.
pub fn paths_are_tracked(root: &Path) -> Result<(), String> {
    let tracked = run(Command::new("git").arg("-C").arg(root).arg("ls-files"))?;
    let tracked: Vec<&str> = tracked.lines().collect();
    let mut missing = Vec::new();
    for file in nix_files(root)? {
        let directory = file.parent().unwrap_or(root);
        for literal in path_literals(&read(&file)?) {
            let target = normalize(&directory.join(&literal));
            let relative = target
                .strip_prefix(root)
                .unwrap_or(&target)
                .to_string_lossy()
                .into_owned();
            // The repository root itself counts as tracked.
            let is_tracked = relative.is_empty()
                || tracked
                    .iter()
                    .any(|path| *path == relative || path.starts_with(&format!("{relative}/")));
            if !is_tracked {
                missing.push(format!("{}: {literal}", display(root, &file)));
            }
        }
    }
    problems(missing)
}

/// The relative path literals (`./x`, `../x`) outside comments, up to an interpolation.
fn path_literals(source: &str) -> Vec<String> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "._-/+".contains(c);
    let mut literals = Vec::new();
    for line in source
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
    {
        let mut previous = ' ';
        for (index, c) in line.char_indices() {
            if c == '.' && !is_path_char(previous) {
                let rest = &line[index..];
                if rest.starts_with("./") || rest.starts_with("../") {
                    let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
                    literals.push(rest[..end].trim_end_matches('/').to_owned());
                }
            }
            previous = c;
        }
    }
    literals
}

fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

/// The flake vendors Cargo.lock's crates with `cargoLock.lockFile`, which needs a hash for every
/// git source: keep to the registry.
pub fn cargo_lock_has_registry_sources_only(root: &Path) -> Result<(), String> {
    let lock = read(&root.join("Cargo.lock"))?;
    problems(
        lock.lines()
            .filter_map(|line| line.strip_prefix("source = "))
            .filter(|source| !source.starts_with("\"registry+"))
            .map(|source| format!("Cargo.lock: source {source}"))
            .collect(),
    )
}

/// What the flake must offer on each system: the images and the stack's apps on Linux only.
fn expected_outputs(linux: bool) -> Value {
    let mut packages = vec!["default", "gatling", "replay", "rinha"];
    let mut apps = vec!["replay", "stress"];
    if linux {
        packages.extend(["image-api", "image-nginx", "image-postgres"]);
        apps.extend(["down", "up"]);
    }
    packages.sort_unstable();
    apps.sort_unstable();
    serde_json::json!({
        "packages": packages,
        "apps": apps,
        "devShells": ["default"],
        "checks": ["clippy", "fmt", "integration", "replay", "rinha"],
    })
}

fn evaluate_with_stand_ins(root: &Path) -> Result<Value, String> {
    nix_eval_json(
        Command::new("nix-instantiate")
            .arg("--argstr")
            .arg("repository")
            .arg(root)
            .arg(root.join(STAND_INS)),
    )
}

/// The flake evaluates, offers every expected output on every system, and its images carry the
/// names the compose files use (compose's `${VARIABLE:-default}` counting as its default).
pub fn evaluates(root: &Path) -> Result<(), String> {
    let evaluated = evaluate_with_stand_ins(root)?;
    let mut found = Vec::new();
    for system in SYSTEMS {
        let expected = expected_outputs(system.ends_with("-linux"));
        for kind in ["packages", "apps", "devShells", "checks"] {
            let outputs = &evaluated["outputs"][kind][system];
            if *outputs != expected[kind] {
                found.push(format!(
                    "{kind}.{system} is {outputs}, expected {}",
                    expected[kind]
                ));
            }
        }
    }
    let built = string_list(&evaluated["images"]);
    for file in COMPOSE_FILES {
        for image in compose_images(&root.join(file))? {
            let image = interpolation_default(&image);
            if image.starts_with("rinha-") && !built.contains(&image) {
                found.push(format!(
                    "{file} names {image}, which the flake does not build ({built:?})"
                ));
            }
        }
    }
    problems(found)
}

fn compose_images(path: &Path) -> Result<Vec<String>, String> {
    let text = read(path)?;
    Ok(text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("image:"))
        .map(|image| image.trim().trim_matches('"').to_owned())
        .collect())
}

/// `${NAME:-default}` -> `default`; anything else unchanged.
fn interpolation_default(value: &str) -> String {
    value
        .strip_prefix("${")
        .and_then(|inner| inner.strip_suffix('}'))
        .and_then(|inner| inner.split_once(":-"))
        .map_or_else(|| value.to_owned(), |(_, default)| default.to_owned())
}

/// Each script file on its own (the apps' and the images' entry points), and each app's script as
/// nix/apps.nix assembles it (its kind's prelude, then its own), which is what
/// writeShellApplication runs shellcheck on.
pub fn scripts_pass_shellcheck(root: &Path) -> Result<(), String> {
    let mut files = files_with_extension(&root.join("nix/scripts"), "sh")?;
    files.extend(files_with_extension(&root.join("docker"), "sh")?);
    each_file(&files, |file| {
        run(Command::new("shellcheck").arg(file)).map(drop)
    })?;
    let evaluated = evaluate_with_stand_ins(root)?;
    let scripts = evaluated["scripts"]
        .as_object()
        .ok_or("the flake yields no app scripts")?;
    for (app, text) in scripts {
        let text = text
            .as_str()
            .ok_or_else(|| format!("app {app} has no script text"))?;
        run_with_input(Command::new("shellcheck").args(["--shell=bash", "-"]), text)
            .map_err(|error| format!("app {app}: {error}"))?;
    }
    Ok(())
}

/// Evaluates strictly to JSON, read-only: store paths are computed, never written.
fn nix_eval_json(command: &mut Command) -> Result<Value, String> {
    let output = run(command.args(["--readonly-mode", "--eval", "--strict", "--json"]))?;
    serde_json::from_str(&output)
        .map_err(|error| format!("nix-instantiate printed no JSON: {error}"))
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_relative_path_literals_outside_comments() {
        let source = r#"
          # ../not/this
          src = ../.;
          text = builtins.readFile ./scripts/up.sh;
          file = "${../docker}/compose.yml";
          script = ./scripts/${name}.sh;
          url = "mirror://maven/a/b.zip";
        "#;
        assert_eq!(
            path_literals(source),
            ["../.", "./scripts/up.sh", "../docker", "./scripts"]
        );
    }

    #[test]
    fn reads_the_default_of_an_interpolation() {
        assert_eq!(
            interpolation_default("${RINHA_NGINX_IMAGE:-rinha-nginx:local}"),
            "rinha-nginx:local"
        );
        assert_eq!(interpolation_default("rinha-api:local"), "rinha-api:local");
    }

    #[test]
    fn a_locked_github_node_needs_a_full_revision_and_hash() {
        let locked = serde_json::json!({
            "type": "github", "owner": "nixos", "repo": "nixpkgs",
            "rev": "1327e798cb055f96f92685df444e9a2c326ab5ed",
            "narHash": "sha256-F4IIxa5xDHjtrmMcayM8lHctUq1oGltfBQu2+oqDWP4=", "lastModified": 1768242861
        });
        assert_eq!(check_locked_node(&locked), Ok(()));
        let mut short_rev = locked.clone();
        short_rev["rev"] = "1327e79".into();
        assert!(check_locked_node(&short_rev).is_err());
        let mut unhashed = locked;
        unhashed.as_object_mut().unwrap().remove("narHash");
        assert!(check_locked_node(&unhashed).is_err());
    }
}
