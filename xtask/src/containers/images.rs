//! `cargo xtask images [--rebuild]`: builds the images the compose files run, on a machine with a
//! container engine but neither Nix nor a registry to pull from.
//! - PostgreSQL and nginx: `docker/debian-images.sh` makes them from Debian's packages, with the
//!   API's two base images.
//! - The API: `docker/Dockerfile` over those base images, cached by the engine's own layers.
//!
//! Each carries the tag the compose files give it, so a second run takes seconds.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use xshell::{Shell, cmd};

use crate::containers::engine::Engine;
use crate::topology::{HOST_COMPOSE_FILE, Topology};
use crate::workspace::{repo_root, run_quietly};

/// Builds the images the compose files name, keeping those whose inputs have not changed unless
/// `rebuild`, and prints their sizes.
pub fn prepare(sh: &Shell, engine: Engine, rebuild: bool) -> Result<()> {
    let [api, database, load_balancer] = tags_in_compose_file(sh, engine)?;
    let started = Instant::now();
    let (engine_name, rebuild_flag) = (engine.name(), rebuild.then_some("--rebuild"));
    let rust_image = cmd!(
        sh,
        "bash docker/debian-images.sh {rebuild_flag...} --postgres {database} --nginx {load_balancer}"
    )
    .env("CONTAINER_ENGINE", engine_name)
    .read()
    .context("making the images from Debian's packages")?;
    let rust_image = format!("RUST_IMAGE={rust_image}");
    let no_cache = rebuild.then_some("--no-cache");
    let build = cmd!(
        sh,
        "{engine_name} build --pull=never --build-arg {rust_image} --file docker/Dockerfile --tag {api} {no_cache...} ."
    );
    run_quietly(build).context("building docker/Dockerfile")?;
    println!("{:<40} {:>9}", "image", "size MB");
    for tag in [api, database, load_balancer] {
        let size = engine.inspect(sh, &tag, "{{.Size}}")?;
        let size: f64 = size.parse().with_context(|| format!("{tag}: size {size:?}"))?;
        println!("{tag:<40} {:>9.1}", size / 1e6);
    }
    println!("images ready in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The tags of the API's, the database's and the load balancer's images, as the engine resolves
/// the file the compose stack runs (a test of `delivery` holds the other to the same images).
fn tags_in_compose_file(sh: &Shell, engine: Engine) -> Result<[String; 3]> {
    let topology = Topology::load(&repo_root())?;
    let resolved = engine.resolved(sh, HOST_COMPOSE_FILE)?;
    let image = |service: &str| {
        let image = resolved.services.get(service).and_then(|service| service.image.clone());
        image.with_context(|| format!("{HOST_COMPOSE_FILE}: {service} names no image"))
    };
    let api = image(&topology.replicas[0].0)?;
    for (replica, _) in &topology.replicas {
        ensure!(image(replica)? == api, "{HOST_COMPOSE_FILE}: the replicas run other images");
    }
    Ok([api, image(&topology.database)?, image(&topology.load_balancer)?])
}
