//! The container engine the compose commands and the image builds run: Docker where its daemon
//! answers, podman (through podman-compose) otherwise; `CONTAINER_ENGINE=docker|podman` chooses.

use anyhow::{Context, Result, bail, ensure};
use xshell::{Cmd, Shell, cmd};

use crate::topology::Compose;
use crate::workspace::quietly;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    /// `CONTAINER_ENGINE` chooses; otherwise Docker if its daemon answers, else podman.
    pub fn detect(sh: &Shell) -> Result<Engine> {
        match std::env::var("CONTAINER_ENGINE").as_deref() {
            Ok("docker") => Ok(Engine::Docker),
            Ok("podman") => Ok(Engine::Podman),
            Ok(other) => bail!("CONTAINER_ENGINE={other:?}: expected docker or podman"),
            Err(_) if quietly(cmd!(sh, "docker info")).run().is_ok() => Ok(Engine::Docker),
            Err(_) if quietly(cmd!(sh, "podman --version")).run().is_ok() => Ok(Engine::Podman),
            Err(_) => {
                bail!("no container engine: install Docker, or run .ci/podman-setup.sh for podman")
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    pub fn command(self, sh: &Shell) -> Cmd<'_> {
        sh.cmd(self.name())
    }

    /// The compose front end for `file`.
    pub fn compose<'a>(self, sh: &'a Shell, file: &str) -> Cmd<'a> {
        match self {
            Engine::Docker => cmd!(sh, "docker compose --file {file}"),
            // A pod would put every container in one network namespace, which host networking
            // cannot share, and would need a pause image pulled from a registry.
            Engine::Podman => cmd!(sh, "podman-compose --in-pod false --file {file}"),
        }
    }

    /// The compose file as the front end reads it, variables substituted.
    pub fn resolved(self, sh: &Shell, file: &str) -> Result<Compose> {
        let model = self.compose(sh, file).arg("config").quiet().read()?;
        Compose::parse(&model).with_context(|| format!("{file} as resolved"))
    }

    /// `inspect --format` of one container or image.
    pub fn inspect(self, sh: &Shell, target: &str, format: &str) -> Result<String> {
        Ok(self
            .command(sh)
            .args(["inspect", "--format", format, target])
            .quiet()
            .read()?
            .trim()
            .to_owned())
    }

    /// The id of the one container of `service` in compose `project`, if it exists. Both
    /// front ends label containers with Compose's project and service labels.
    pub fn service_container(
        self,
        sh: &Shell,
        project: &str,
        service: &str,
    ) -> Result<Option<String>> {
        let project = format!("label=com.docker.compose.project={project}");
        let label = format!("label=com.docker.compose.service={service}");
        let ps = ["ps", "--all", "--quiet", "--filter", &project, "--filter", &label];
        let ids = self.command(sh).args(ps).quiet().read()?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        ensure!(ids.len() <= 1, "more than one container for {service}");
        Ok(ids.first().map(|id| id.to_string()))
    }
}
