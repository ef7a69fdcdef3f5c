//! `cargo xtask images [--rebuild]`: builds the images the compose files run, on a machine with a
//! container engine but neither Nix nor a registry to pull from.
//! - The API: the release `rinha` binary and exactly the shared libraries it links, nothing else.
//! - PostgreSQL and nginx: root filesystems of Debian's own packages, made by mmdebstrap.
//!
//! Each runs as a non-root user and carries the tag the compose files give it. An image is
//! imported from a tar stream with its settings given as Dockerfile instructions, which podman
//! and Docker both accept. An image whose inputs have not changed is kept (a label holds a
//! SHA-256 digest of them), so a second run takes seconds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use xshell::{Cmd, Shell, cmd};

use crate::containers::Engine;
use crate::topology::{COMPOSE_FILE, HOST_COMPOSE_FILE, Topology};
use crate::{build_release, quietly, release_binary, repo_root};

/// Holds the digest of an image's inputs.
const INPUTS_LABEL: &str = "org.rinha.inputs";
/// Files of the image builds: the API's staged root filesystem and mmdebstrap's logs.
const WORK_DIR: &str = "target/images";

/// An image built (or kept) by this run.
struct Built {
    tag: String,
    size_bytes: u64,
    seconds: f64,
    kept: bool,
}

/// Builds the images the compose files name, keeping those whose inputs have not changed unless
/// `rebuild`, and prints their sizes and build times.
pub fn prepare(sh: &Shell, engine: Engine, rebuild: bool) -> Result<()> {
    let [api, database, load_balancer] = tags_in_compose_files(sh, engine)?;
    let started = Instant::now();
    sh.create_dir(WORK_DIR)?;
    // The two images from Debian packages are built side by side (they mostly wait on downloads
    // and dpkg) while the API's binary compiles.
    let built = std::thread::scope(|scope| -> Result<Vec<Built>> {
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
    for image in &built {
        let kept = if image.kept { "  (unchanged, kept)" } else { "" };
        println!(
            "{:<40} {:>9.1} {:>8.1}{kept}",
            image.tag,
            image.size_bytes as f64 / 1e6,
            image.seconds
        );
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

/// The API image: `rinha` and the shared objects `ldd` lists for it, at the paths the dynamic
/// loader looks in, with a passwd entry for the user it runs as.
fn build_api(sh: &Shell, engine: Engine, tag: &str, rebuild: bool) -> Result<Built> {
    let started = Instant::now();
    // The native stack's build, which also gives compose-stress its replay.
    build_release(sh)?;
    let binary = release_binary("rinha");
    let libraries = linked_libraries(&cmd!(sh, "ldd {binary}").quiet().read()?);
    let mut files = vec![(binary.clone(), PathBuf::from("/usr/local/bin/rinha"))];
    files.extend(libraries.into_iter().map(|library| (library.clone(), library)));

    let mut inputs = Inputs::default();
    inputs.add(format!("{API_CHANGES:?}{API_USERS:?}"));
    for (source, target) in &files {
        inputs.add(target.as_os_str().as_encoded_bytes());
        inputs.add(sh.read_binary_file(source)?);
    }
    let digest = inputs.digest();
    if !rebuild && label_of(sh, engine, tag).as_deref() == Some(digest.as_str()) {
        return finished(sh, engine, tag, started, true);
    }

    let rootfs = repo_root().join(WORK_DIR).join("api-rootfs");
    sh.remove_path(&rootfs)?;
    for (source, target) in &files {
        // Copies the content (and mode), so a library reached through a symlink lands as a
        // plain file.
        let destination = rootfs.join(target.strip_prefix("/").unwrap_or(target));
        sh.create_dir(destination.parent().expect("a file in the root filesystem has a parent"))?;
        sh.copy_file(source, destination)?;
    }
    for (path, content) in API_USERS {
        sh.write_file(rootfs.join(path), content)?;
    }
    let tar = cmd!(sh, "tar --create --numeric-owner --owner=0 --group=0 --directory {rootfs} .");
    import(
        sh,
        engine,
        tar,
        API_CHANGES,
        &digest,
        tag,
        &repo_root().join(WORK_DIR).join("api.log"),
    )?;
    finished(sh, engine, tag, started, false)
}

/// Image settings of the API: the compose files set the port and the database per replica.
const API_CHANGES: &[&str] = &[
    "USER rinha",
    "ENV PATH=/usr/local/bin",
    "ENTRYPOINT [\"/usr/local/bin/rinha\"]",
    "EXPOSE 8081",
    "EXPOSE 8082",
];

/// The API's user and group, and the host name lookup order: the compose files map the other
/// services' names in /etc/hosts.
const API_USERS: &[(&str, &str)] = &[
    ("etc/passwd", "rinha:x:10001:10001:rinha:/nonexistent:/usr/local/bin/rinha\n"),
    ("etc/group", "rinha:x:10001:\n"),
    ("etc/nsswitch.conf", "hosts: files dns\n"),
];

/// The absolute paths in `ldd` output: `name => /path (address)` and the loader's `/path (address)`.
fn linked_libraries(ldd_output: &str) -> Vec<PathBuf> {
    ldd_output
        .lines()
        .filter_map(|line| {
            let path = line.split_once("=>").map_or(line, |(_, resolved)| resolved);
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
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
) -> Result<Built> {
    let started = Instant::now();
    let suite = debian_suite(sh)?;
    let mut inputs = Inputs::default();
    inputs.add(format!("{image:?}{EXCLUDED_PATHS:?}{suite}"));
    for (source, _) in image.uploads {
        inputs.add(sh.read_binary_file(source)?);
    }
    let digest = inputs.digest();
    if !rebuild && label_of(sh, engine, tag).as_deref() == Some(digest.as_str()) {
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
#[derive(Default)]
struct Inputs(Sha256);

impl Inputs {
    fn add(&mut self, input: impl AsRef<[u8]>) {
        let input = input.as_ref();
        self.0.update((input.len() as u64).to_le_bytes());
        self.0.update(input);
    }

    fn digest(self) -> String {
        self.0.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
    }
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
    let previous = image_id(sh, engine, tag);
    engine.command(sh).args(["tag", &image, tag]).quiet().run()?;
    if let Some(previous) =
        previous.filter(|previous| Some(previous) != image_id(sh, engine, tag).as_ref())
    {
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

fn image_id(sh: &Shell, engine: Engine, tag: &str) -> Option<String> {
    image_field(sh, engine, tag, "{{.Id}}")
}

/// The inputs digest an existing image was built from.
fn label_of(sh: &Shell, engine: Engine, tag: &str) -> Option<String> {
    image_field(sh, engine, tag, &format!("{{{{ index .Config.Labels \"{INPUTS_LABEL}\" }}}}"))
}

fn finished(sh: &Shell, engine: Engine, tag: &str, started: Instant, kept: bool) -> Result<Built> {
    let size = image_field(sh, engine, tag, "{{.Size}}")
        .with_context(|| format!("{tag} was not built"))?;
    Ok(Built {
        tag: tag.to_owned(),
        size_bytes: size
            .parse()
            .with_context(|| format!("{tag}: size {size:?} is not a number"))?,
        seconds: started.elapsed().as_secs_f64(),
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_files_to_copy() {
        let output = "\tlinux-vdso.so.1 (0x00007ffc5b1f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0e8c5a0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e8c3bf000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e8d1c3000)
";
        assert_eq!(
            linked_libraries(output),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
