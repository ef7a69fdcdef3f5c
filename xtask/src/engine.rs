//! The container engine that runs the compose stacks: Docker where its daemon answers, podman
//! otherwise. Podman needs no daemon, so it also runs on machines that have no Docker engine;
//! `.ci/podman-setup.sh` installs it with `podman-compose`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use yaml_rust2::YamlLoader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    /// `CONTAINER_ENGINE=docker|podman` chooses; otherwise Docker if its daemon answers, else
    /// podman if installed.
    pub fn detect() -> Result<Engine, String> {
        match std::env::var("CONTAINER_ENGINE").as_deref() {
            Ok("docker") => return Ok(Engine::Docker),
            Ok("podman") => return Ok(Engine::Podman),
            Ok(other) => {
                return Err(format!(
                    "CONTAINER_ENGINE={other:?}: expected docker or podman"
                ));
            }
            Err(_) => {}
        }
        if succeeds(Command::new("docker").arg("info")) {
            Ok(Engine::Docker)
        } else if succeeds(Command::new("podman").arg("--version")) {
            Ok(Engine::Podman)
        } else {
            Err("no container engine: install Docker, or run .ci/podman-setup.sh for podman".into())
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    pub fn command(self) -> Command {
        Command::new(self.program())
    }

    /// The compose front end for `file`.
    pub fn compose(self, file: &Path) -> Command {
        let mut command = match self {
            Engine::Docker => {
                let mut command = Command::new("docker");
                command.arg("compose");
                command
            }
            Engine::Podman => {
                let mut command = Command::new("podman-compose");
                // A pod would put every container in one network namespace, which host
                // networking cannot share, and would need a pause image pulled from a registry.
                command.args(["--in-pod", "false"]);
                command
            }
        };
        command.arg("--file").arg(file);
        command
    }

    /// The compose file as the front end reads it, variables substituted.
    pub fn resolved_compose(self, file: &Path) -> Result<ResolvedCompose, String> {
        let text = capture(self.compose(file).arg("config"))?;
        ResolvedCompose::parse(&text).map_err(|error| format!("{}: {error}", file.display()))
    }

    /// The id of the one container of `service` in compose `project`, if it exists. Both
    /// front ends label containers with Compose's project and service labels.
    pub fn service_container(self, project: &str, service: &str) -> Result<Option<String>, String> {
        let output = capture(self.command().args([
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]))?;
        let mut ids = output.split_whitespace();
        match (ids.next(), ids.next()) {
            (None, _) => Ok(None),
            (Some(id), None) => Ok(Some(id.to_owned())),
            (Some(_), Some(_)) => Err(format!("more than one container for service {service}")),
        }
    }

    /// `inspect --format` of one container or image.
    pub fn inspect(self, target: &str, format: &str) -> Result<String, String> {
        capture(self.command().args(["inspect", "--format", format, target]))
            .map(|text| text.trim().to_owned())
    }
}

/// What the container tooling needs from a compose file beyond what [`crate::compose`] reads.
#[derive(Debug, PartialEq)]
pub struct ResolvedCompose {
    /// The project, which labels its containers.
    pub project: String,
    /// Each service's image.
    pub images: BTreeMap<String, String>,
}

impl ResolvedCompose {
    fn parse(text: &str) -> Result<ResolvedCompose, String> {
        let documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
        let document = documents.first().ok_or("empty compose model")?;
        let project = document["name"]
            .as_str()
            .ok_or("the compose model has no name")?;
        let services = document["services"]
            .as_hash()
            .ok_or("the compose model has no services")?;
        let images = services
            .iter()
            .map(|(name, service)| {
                let name = name.as_str().ok_or("a service name is not a string")?;
                let image = service["image"]
                    .as_str()
                    .ok_or_else(|| format!("service {name} names no image"))?;
                Ok((name.to_owned(), image.to_owned()))
            })
            .collect::<Result<_, String>>()?;
        Ok(ResolvedCompose {
            project: project.to_owned(),
            images,
        })
    }
}

/// Runs `command`, inheriting the terminal, and fails with its name unless it exits 0.
pub fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|error| format!("cannot run {}: {error}", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", describe(command)))
    }
}

/// Runs `command` and returns its standard output; its standard error goes with the failure.
pub fn capture(command: &mut Command) -> Result<String, String> {
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {}: {error}", describe(command)))?;
    if status.success() {
        String::from_utf8(stdout).map_err(|_| format!("{} printed non-UTF-8", describe(command)))
    } else {
        Err(format!(
            "{} failed: {status}: {}",
            describe(command),
            String::from_utf8_lossy(&stderr).trim()
        ))
    }
}

/// Runs `command` silently and tells whether it succeeded.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_project_and_images_of_a_resolved_model() {
        let model = "name: rinha-host
services:
  api1:
    image: rinha-api:local
    network_mode: host
  db:
    image: rinha-postgres:local
";
        let resolved = ResolvedCompose::parse(model).unwrap();
        assert_eq!(resolved.project, "rinha-host");
        assert_eq!(resolved.images["api1"], "rinha-api:local");
        assert_eq!(resolved.images["db"], "rinha-postgres:local");
        let error =
            ResolvedCompose::parse("name: x\nservices:\n  db:\n    build: .\n").unwrap_err();
        assert!(error.contains("db"), "{error}");
    }
}
