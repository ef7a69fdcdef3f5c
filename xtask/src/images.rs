//! `cargo xtask images [--rebuild]`: builds the images the compose files run, on a machine with a
//! container engine but neither Nix nor a registry to pull from.
//! - The API: `docker/Dockerfile`, over base images made from Debian's packages.
//! - PostgreSQL and nginx: root filesystems of Debian's own packages, made by mmdebstrap.
//!
//! Each runs as a non-root user and carries the tag the compose files give it. The Debian images
//! are imported from tar streams with their settings given as Dockerfile instructions, which
//! podman and Docker both accept, and kept while their inputs are unchanged (a label holds a
//! SHA-256 digest of them); the API's build is cached by the engine's own layers. So a second
//! run takes seconds.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use xshell::{Cmd, Shell, cmd};

use crate::containers::Engine;
use crate::topology::{COMPOSE_FILE, HOST_COMPOSE_FILE, Topology};
use crate::{quietly, repo_root, run_quietly};

/// Holds the digest of an image's inputs.
const INPUTS_LABEL: &str = "org.rinha.inputs";
/// Files of the image builds: the API's staged root filesystem and mmdebstrap's logs.
const WORK_DIR: &str = "target/images";

/// Builds the images the compose files name, keeping those whose inputs have not changed unless
/// `rebuild`, and prints their sizes and build times.
pub fn prepare(sh: &Shell, engine: Engine, rebuild: bool) -> Result<()> {
    let [api, database, load_balancer] = tags_in_compose_files(sh, engine)?;
    let started = Instant::now();
    sh.create_dir(WORK_DIR)?;
    // The two images from Debian packages are built side by side (they mostly wait on downloads
    // and dpkg) while the API's binary compiles.
    let built = std::thread::scope(|scope| -> Result<Vec<String>> {
        let debian = [(&POSTGRES, database), (&NGINX, load_balancer)].map(|(image, tag)| {
            let sh = sh.clone();
            scope.spawn(move || build_debian(&sh, engine, image, &tag, rebuild))
        });
        let api = build_api(sh, engine, &api, rebuild)?;
        let mut built = vec![api];
        for build in debian {
            built.push(build.join().expect("an image build does not panic")?);
        }
        Ok(built)
    })?;
    println!("{:<40} {:>9} {:>8}", "image", "size MB", "seconds");
    for row in built {
        println!("{row}");
    }
    println!("images ready in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The tags of the API's, the database's and the load balancer's images, as both compose files
/// resolve them for the topology's services; the files must agree.
fn tags_in_compose_files(sh: &Shell, engine: Engine) -> Result<[String; 3]> {
    let topology = Topology::load(&repo_root())?;
    let roles = [
        topology.replicas.iter().map(|(name, _)| name.as_str()).collect(),
        vec![topology.database.as_str()],
        vec![topology.load_balancer.as_str()],
    ];
    let mut tags: [Option<String>; 3] = Default::default();
    for file in [COMPOSE_FILE, HOST_COMPOSE_FILE] {
        let resolved = engine.resolved(sh, file)?;
        for (services, known) in roles.iter().zip(&mut tags) {
            for service in services {
                let image =
                    resolved.services.get(*service).and_then(|service| service.image.clone());
                let image = image.with_context(|| format!("{file}: {service} names no image"))?;
                let known = known.get_or_insert_with(|| image.clone());
                ensure!(
                    *known == image,
                    "{file}: {service} runs {image}, but {known} elsewhere in the same role"
                );
            }
        }
    }
    Ok(tags.map(|tag| tag.expect("every role has a service")))
}

/// The API image from `docker/Dockerfile`, the one recipe for it, over the base images
/// `docker/base-images.sh` makes from Debian's packages (it prints the build image's name).
/// The engine's own layer cache decides what is rebuilt.
fn build_api(sh: &Shell, engine: Engine, tag: &str, rebuild: bool) -> Result<String> {
    let started = Instant::now();
    let rebuild_bases = rebuild.then_some("--rebuild");
    let rust_image = cmd!(sh, "bash docker/base-images.sh {rebuild_bases...}")
        .env("CONTAINER_ENGINE", engine.name())
        .read()
        .context("making the base images")?;
    let (engine_name, no_cache) = (engine.name(), rebuild.then_some("--no-cache"));
    let rust_image = format!("RUST_IMAGE={rust_image}");
    let build = cmd!(
        sh,
        "{engine_name} build --pull=never --build-arg {rust_image} --file docker/Dockerfile --tag {tag} {no_cache...} ."
    );
    run_quietly(build).context("building docker/Dockerfile")?;
    finished(sh, engine, tag, started, false)
}

/// An image made of Debian packages.
#[derive(Debug)]
struct DebianImage {
    name: &'static str,
    packages: &'static [&'static str],
    /// Paths of the packages left out, beyond [`EXCLUDED_PATHS`].
    excluded: &'static [&'static str],
    /// Files of this repository put into the image: (repository path, image path).
    uploads: &'static [(&'static str, &'static str)],
    /// Run inside the finished root filesystem: the user's directories, leftovers removed.
    setup: &'static str,
    changes: &'static [&'static str],
}

const POSTGRES: DebianImage = DebianImage {
    name: "postgres",
    packages: &["postgresql-15"],
    // LLVM serves only JIT compilation, which the server configuration turns off, and without
    // its provider library PostgreSQL runs without JIT; it is over half the image.
    excluded: &[
        "/usr/lib/*/libLLVM-*",
        "/usr/lib/*/libz3.so*",
        "/usr/lib/postgresql/*/lib/llvmjit*",
        "/usr/lib/postgresql/*/lib/bitcode/*",
    ],
    uploads: &[("docker/postgres-entrypoint.sh", "/usr/local/bin/postgres-entrypoint")],
    // Debian's package creates a cluster on installation; the entry point makes its own from
    // the compose file's settings, in PGDATA.
    setup: "rm -rf /var/lib/postgresql/15 /etc/postgresql/15 \
            && chmod 755 /usr/local/bin/postgres-entrypoint \
            && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data \
            && install -d -o postgres -g postgres -m 2775 /run/postgresql",
    changes: &[
        "USER postgres",
        "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin",
        "ENV PGDATA=/var/lib/postgresql/data",
        "ENTRYPOINT [\"/usr/local/bin/postgres-entrypoint\"]",
        "CMD [\"postgres\"]",
        // Fast shutdown: roll back open transactions, write a checkpoint, exit.
        "STOPSIGNAL SIGINT",
        "EXPOSE 5432",
    ],
};

const NGINX: DebianImage = DebianImage {
    name: "nginx",
    packages: &["nginx-light"],
    excluded: &[],
    uploads: &[],
    // The master runs as www-data: its temp and log directories are its own. The compose files
    // put its pid file in /tmp.
    setup: "install -d -o www-data -g www-data /var/lib/nginx /var/log/nginx",
    changes: &[
        "USER www-data",
        "CMD [\"nginx\", \"-g\", \"daemon off;\"]",
        // Graceful shutdown: finish the requests in flight.
        "STOPSIGNAL SIGQUIT",
        "EXPOSE 9999",
    ],
};

/// Paths left out of every package: documentation and translations.
const EXCLUDED_PATHS: &[&str] =
    &["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"];

fn build_debian(
    sh: &Shell,
    engine: Engine,
    image: &DebianImage,
    tag: &str,
    rebuild: bool,
) -> Result<String> {
    let started = Instant::now();
    let suite = debian_suite(sh)?;
    let mut inputs = vec![format!("{image:?}{EXCLUDED_PATHS:?}{suite}").into_bytes()];
    for (source, _) in image.uploads {
        inputs.push(sh.read_binary_file(source)?);
    }
    let digest = digest(&inputs);
    let label = format!("{{{{ index .Config.Labels \"{INPUTS_LABEL}\" }}}}");
    if !rebuild && image_field(sh, engine, tag, &label) == Some(digest.clone()) {
        return finished(sh, engine, tag, started, true);
    }

    let packages = format!("--include={}", image.packages.join(","));
    let excluded = EXCLUDED_PATHS
        .iter()
        .chain(image.excluded)
        .map(|path| format!("--dpkgopt=path-exclude={path}"));
    // mmdebstrap splits the hook on spaces; the repository's paths have none.
    let uploads = image.uploads.iter().map(|(source, target)| {
        format!("--customize-hook=upload {} {target}", repo_root().join(source).display())
    });
    // `$1` is the root filesystem; chroot so that user names resolve in the image's passwd.
    let setup = format!(
        "--customize-hook=chroot \"$1\" sh -c 'find /run -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {{}} + && {}'",
        image.setup
    );
    // Only Essential packages and the image's own, without Recommends, and no apt. The root
    // filesystem only ever becomes a tar stream: no need to sync every file. mmdebstrap would
    // empty /run after the hooks, taking the directories they make there; the first hook
    // empties it instead, before the image's setup.
    let mmdebstrap = cmd!(sh, "mmdebstrap --variant=essential {packages}")
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .args(["--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr", "--dpkgopt=force-unsafe-io"])
        .args(excluded)
        .arg("--skip=cleanup/run")
        .args(uploads)
        .arg(setup)
        .args(["--format=tar", &suite, "-"]);
    let log = repo_root().join(WORK_DIR).join(format!("{}.log", image.name));
    import(sh, engine, mmdebstrap, image.changes, &digest, tag, &log)?;
    finished(sh, engine, tag, started, false)
}

/// The Debian release of this machine, whose package sources mmdebstrap uses.
fn debian_suite(sh: &Shell) -> Result<String> {
    let os_release = sh.read_file("/etc/os-release")?;
    let value = |key: &str| {
        let line = os_release.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('='));
        line.map(|value| value.trim_matches('"').to_owned())
    };
    match (value("ID").as_deref(), value("VERSION_CODENAME")) {
        (Some("debian"), Some(codename)) if !codename.is_empty() => Ok(codename),
        _ => bail!(
            "the PostgreSQL and nginx images are made from this machine's Debian packages, and this machine is not Debian; build the images with Nix instead"
        ),
    }
}

/// A SHA-256 digest of an image's inputs, each one length-prefixed so that no two lists of
/// inputs run together into the same bytes.
fn digest(inputs: &[Vec<u8>]) -> String {
    let mut hasher = Sha256::new();
    for input in inputs {
        hasher.update((input.len() as u64).to_le_bytes());
        hasher.update(input);
    }
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Feeds the tar stream `producer` writes to the engine's `import`, with `changes` and the
/// inputs' digest, and tags the result (an image from a failed producer is never imported).
/// Both commands' diagnostics go to `log`, shown when either fails.
fn import(
    sh: &Shell,
    engine: Engine,
    producer: Cmd<'_>,
    changes: &[&str],
    digest: &str,
    tag: &str,
    log: &Path,
) -> Result<()> {
    let failed = |what: &str, stderr: &[u8]| -> Result<()> {
        sh.write_file(log, stderr)?;
        bail!("{what} failed (log {}):\n{}", log.display(), String::from_utf8_lossy(stderr))
    };
    let produced = producer.quiet().ignore_status().output()?;
    if !produced.status.success() {
        return failed(&format!("building the root filesystem of {tag}"), &produced.stderr);
    }
    let label = format!("LABEL {INPUTS_LABEL}={digest}");
    let changes =
        changes.iter().copied().chain([label.as_str()]).flat_map(|change| ["--change", change]);
    let imported = engine
        .command(sh)
        .arg("import")
        .args(changes)
        .arg("-")
        .stdin(produced.stdout)
        .quiet()
        .ignore_status()
        .output()?;
    sh.write_file(log, [produced.stderr, imported.stderr.clone()].concat())?;
    if !imported.status.success() {
        return failed(&format!("importing {tag}"), &imported.stderr);
    }
    // Both engines print the new image's id.
    let image = String::from_utf8_lossy(&imported.stdout).trim().to_owned();
    let previous = image_field(sh, engine, tag, "{{.Id}}");
    engine.command(sh).args(["tag", &image, tag]).quiet().run()?;
    let now = image_field(sh, engine, tag, "{{.Id}}");
    if let Some(previous) = previous.filter(|previous| Some(previous) != now.as_ref()) {
        // Best effort: the image the tag left stays while a container still uses it.
        let _ = quietly(engine.command(sh).args(["image", "rm", &previous])).run();
    }
    Ok(())
}

/// `image inspect --format` of a tag; `None` when the image does not exist (both engines fail).
fn image_field(sh: &Shell, engine: Engine, tag: &str, format: &str) -> Option<String> {
    let field = engine
        .command(sh)
        .args(["image", "inspect", "--format", format, tag])
        .quiet()
        .ignore_stderr()
        .read();
    field.ok().map(|field| field.trim().to_owned())
}

/// The image's row in the table `prepare` prints: tag, size, build time.
fn finished(sh: &Shell, engine: Engine, tag: &str, started: Instant, kept: bool) -> Result<String> {
    let size = image_field(sh, engine, tag, "{{.Size}}")
        .with_context(|| format!("{tag} was not built"))?;
    let size: f64 =
        size.parse().with_context(|| format!("{tag}: size {size:?} is not a number"))?;
    let kept = if kept { "  (unchanged, kept)" } else { "" };
    Ok(format!("{tag:<40} {:>9.1} {:>8.1}{kept}", size / 1e6, started.elapsed().as_secs_f64()))
}
