//! `cargo xtask images [--rebuild]`: builds the images the compose files run, on a machine with a
//! container engine but neither Nix nor a registry to pull from.
//! - The API: the release `rinha` binary and exactly the shared libraries it links, nothing else.
//! - PostgreSQL and nginx: root filesystems of Debian's own packages, made by mmdebstrap.
//!
//! Each runs as a non-root user and carries the tag the compose files give it. An image is
//! imported from a tar stream with its settings given as Dockerfile instructions, which podman
//! and Docker both accept. An image whose inputs have not changed is kept (a label holds a
//! digest of them), so a second run takes seconds.

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::engine::{self, Engine};
use crate::stack::{build_release, release_binary, repo_root};

/// The compose files whose images are built; both must name the same ones.
const COMPOSE_FILES: [&str; 2] = ["docker/compose.yml", "docker/compose.host.yml"];
/// Holds the digest of an image's inputs.
const INPUTS_LABEL: &str = "org.rinha.inputs";
/// Files of the image builds: the API's staged root filesystem and mmdebstrap's logs.
const WORK_DIR: &str = "target/images";

/// What an image is for, which decides how it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Api,
    Database,
    LoadBalancer,
}

impl Role {
    /// The role of a compose service, by the names the topology gives them.
    fn of_service(service: &str) -> Option<Role> {
        match service {
            "api1" | "api2" => Some(Role::Api),
            "db" => Some(Role::Database),
            "nginx" => Some(Role::LoadBalancer),
            _ => None,
        }
    }
}

/// An image built (or kept) by this run.
struct Built {
    tag: String,
    size_bytes: u64,
    seconds: f64,
    kept: bool,
}

pub fn images(args: &[String]) -> Result<(), String> {
    let rebuild = match args {
        [] => false,
        [flag] if flag == "--rebuild" => true,
        _ => {
            return Err(format!(
                "usage: cargo xtask images [--rebuild]; got {args:?}"
            ));
        }
    };
    prepare(Engine::detect()?, rebuild)
}

/// Builds the images the compose files name, keeping those whose inputs have not changed unless
/// `rebuild`, and prints their sizes and build times.
pub fn prepare(engine: Engine, rebuild: bool) -> Result<(), String> {
    let tags = tags_in_compose_files(engine)?;
    let started = Instant::now();
    let built = build_all(engine, &tags, rebuild)?;
    println!("{:<40} {:>9} {:>8}", "image", "size MB", "seconds");
    for image in &built {
        println!(
            "{:<40} {:>9.1} {:>8.1}{}",
            image.tag,
            image.size_bytes as f64 / 1e6,
            image.seconds,
            if image.kept {
                "  (unchanged, kept)"
            } else {
                ""
            }
        );
    }
    println!("images ready in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Builds the three images, the two from Debian packages side by side (they mostly wait on
/// downloads and dpkg) while the API's binary compiles.
fn build_all(
    engine: Engine,
    tags: &BTreeMap<Role, String>,
    rebuild: bool,
) -> Result<Vec<Built>, String> {
    let work_dir = repo_root().join(WORK_DIR);
    std::fs::create_dir_all(&work_dir)
        .map_err(|error| format!("cannot create {}: {error}", work_dir.display()))?;
    std::thread::scope(|scope| {
        let database =
            scope.spawn(|| build_debian(engine, &POSTGRES, &tags[&Role::Database], rebuild));
        let load_balancer =
            scope.spawn(|| build_debian(engine, &NGINX, &tags[&Role::LoadBalancer], rebuild));
        let api = build_api(engine, &tags[&Role::Api], rebuild);
        let joined = |handle: std::thread::ScopedJoinHandle<'_, Result<Built, String>>| {
            handle
                .join()
                .unwrap_or_else(|_| Err("an image build panicked".to_owned()))
        };
        Ok(vec![api?, joined(database)?, joined(load_balancer)?])
    })
}

/// The tag of each role's image, as the compose files resolve it; the files must agree.
fn tags_in_compose_files(engine: Engine) -> Result<BTreeMap<Role, String>, String> {
    let mut tags: BTreeMap<Role, String> = BTreeMap::new();
    for file in COMPOSE_FILES {
        let resolved = engine.resolved_compose(&repo_root().join(file))?;
        for (service, tag) in resolved.images {
            let Some(role) = Role::of_service(&service) else {
                continue;
            };
            match tags.get(&role) {
                Some(known) if *known != tag => {
                    return Err(format!(
                        "{file}: service {service} runs {tag}, but another {role:?} service runs {known}"
                    ));
                }
                _ => {
                    tags.insert(role, tag);
                }
            }
        }
    }
    for role in [Role::Api, Role::Database, Role::LoadBalancer] {
        if !tags.contains_key(&role) {
            return Err(format!("the compose files have no {role:?} service"));
        }
    }
    Ok(tags)
}

/// The API image: `rinha` and the shared objects `ldd` lists for it, at the paths the dynamic
/// loader looks in, with a passwd entry for the user it runs as.
fn build_api(engine: Engine, tag: &str, rebuild: bool) -> Result<Built, String> {
    let started = Instant::now();
    // The native stack's build, which also gives compose-stress its replay.
    build_release()?;
    let binary = release_binary("rinha");
    let libraries = linked_libraries(&engine::capture(Command::new("ldd").arg(&binary))?);
    let mut files = vec![(binary.clone(), PathBuf::from("/usr/local/bin/rinha"))];
    files.extend(
        libraries
            .into_iter()
            .map(|library| (library.clone(), library)),
    );

    let mut inputs = DefaultHasher::new();
    API_CHANGES.hash(&mut inputs);
    API_USERS.hash(&mut inputs);
    for (source, target) in &files {
        target.hash(&mut inputs);
        read(source)?.hash(&mut inputs);
    }
    let digest = format!("{:016x}", inputs.finish());
    if !rebuild && label_of(engine, tag)?.as_deref() == Some(digest.as_str()) {
        return kept(engine, tag, started);
    }

    let rootfs = repo_root().join(WORK_DIR).join("api-rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)
            .map_err(|error| format!("cannot clear {}: {error}", rootfs.display()))?;
    }
    for (source, target) in &files {
        let destination = rootfs.join(target.strip_prefix("/").unwrap_or(target));
        create_parent(&destination)?;
        // Copies the content, so a library reached through a symlink lands as a plain file.
        std::fs::copy(source, &destination).map_err(|error| {
            format!(
                "cannot copy {} to {}: {error}",
                source.display(),
                destination.display()
            )
        })?;
    }
    for (path, content) in API_USERS {
        let destination = rootfs.join(path);
        create_parent(&destination)?;
        std::fs::write(&destination, content)
            .map_err(|error| format!("cannot write {}: {error}", destination.display()))?;
    }
    let mut tar = Command::new("tar");
    tar.args([
        "--create",
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "--directory",
    ])
    .arg(&rootfs)
    .arg(".");
    import(
        engine,
        tar,
        API_CHANGES,
        &digest,
        tag,
        &repo_root().join(WORK_DIR).join("api.log"),
    )?;
    finished(engine, tag, started)
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
    (
        "etc/passwd",
        "rinha:x:10001:10001:rinha:/nonexistent:/usr/local/bin/rinha\n",
    ),
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
#[derive(Hash)]
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
    uploads: &[(
        "docker/postgres-entrypoint.sh",
        "/usr/local/bin/postgres-entrypoint",
    )],
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
const EXCLUDED_PATHS: &[&str] = &[
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
];

fn build_debian(
    engine: Engine,
    image: &DebianImage,
    tag: &str,
    rebuild: bool,
) -> Result<Built, String> {
    let started = Instant::now();
    let suite = debian_suite()?;
    let mut inputs = DefaultHasher::new();
    image.hash(&mut inputs);
    EXCLUDED_PATHS.hash(&mut inputs);
    suite.hash(&mut inputs);
    for (source, _) in image.uploads {
        read(&repo_root().join(source))?.hash(&mut inputs);
    }
    let digest = format!("{:016x}", inputs.finish());
    if !rebuild && label_of(engine, tag)?.as_deref() == Some(digest.as_str()) {
        return kept(engine, tag, started);
    }

    let mut mmdebstrap = Command::new("mmdebstrap");
    mmdebstrap
        // Only Essential packages and the image's own, without Recommends, and no apt.
        .arg("--variant=essential")
        .arg(format!("--include={}", image.packages.join(",")))
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .arg("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr")
        // The root filesystem only ever becomes a tar stream: no need to sync every file.
        .arg("--dpkgopt=force-unsafe-io")
        .args(
            EXCLUDED_PATHS
                .iter()
                .chain(image.excluded)
                .map(|path| format!("--dpkgopt=path-exclude={path}")),
        )
        // mmdebstrap would empty /run after the hooks, taking the directories they make
        // there; the first hook empties it instead, before the image's setup.
        .arg("--skip=cleanup/run");
    for (source, target) in image.uploads {
        // mmdebstrap splits the hook on spaces; the repository's paths have none.
        let source = repo_root().join(source);
        mmdebstrap.arg(format!(
            "--customize-hook=upload {} {target}",
            source.display()
        ));
    }
    // `$1` is the root filesystem; chroot so that user names resolve in the image's passwd.
    mmdebstrap
        .arg(format!(
            "--customize-hook=chroot \"$1\" sh -c 'find /run -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {{}} + && {}'",
            image.setup
        ))
        .args(["--format=tar", &suite, "-"]);
    let log = repo_root()
        .join(WORK_DIR)
        .join(format!("{}.log", image.name));
    import(engine, mmdebstrap, image.changes, &digest, tag, &log)?;
    finished(engine, tag, started)
}

/// The Debian release of this machine, whose package sources mmdebstrap uses.
fn debian_suite() -> Result<String, String> {
    let os_release = String::from_utf8(read(Path::new("/etc/os-release"))?)
        .map_err(|_| "/etc/os-release is not UTF-8".to_owned())?;
    let value = |key: &str| {
        os_release
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(|value| value.trim_matches('"').to_owned())
    };
    match (value("ID").as_deref(), value("VERSION_CODENAME")) {
        (Some("debian"), Some(codename)) if !codename.is_empty() => Ok(codename),
        _ => Err(
            "the PostgreSQL and nginx images are made from this machine's Debian packages, \
                  and this machine is not Debian; build the images with Nix instead"
                .to_owned(),
        ),
    }
}

/// Pipes the tar stream `producer` writes into `import`, with `changes` and the inputs' digest,
/// and tags the result once both succeeded (an image from a broken stream never gets the tag,
/// nor the digest that would keep it). Both commands' diagnostics go to `log`, shown when either
/// fails.
fn import(
    engine: Engine,
    mut producer: Command,
    changes: &[&str],
    digest: &str,
    tag: &str,
    log: &Path,
) -> Result<(), String> {
    let log_file = || {
        File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|error| format!("cannot open {}: {error}", log.display()))
    };
    File::create(log).map_err(|error| format!("cannot create {}: {error}", log.display()))?;
    let failed = |what: String| {
        let details = std::fs::read_to_string(log).unwrap_or_default();
        format!("{what} (log {}):\n{details}", log.display())
    };
    let mut source = producer
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file()?)
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", producer.get_program().display()))?;
    let tar = source.stdout.take().expect("stdout is piped");
    let mut importer = engine.command();
    importer.arg("import");
    for change in changes {
        importer.arg("--change").arg(change);
    }
    let imported = importer
        .arg("--change")
        .arg(format!("LABEL {INPUTS_LABEL}={digest}"))
        .arg("-")
        .stdin(tar)
        .stderr(log_file()?)
        .output()
        .map_err(|error| format!("cannot run {} import: {error}", engine.program()))?;
    let produced = source.wait().map_err(|error| {
        format!(
            "cannot wait for {}: {error}",
            producer.get_program().display()
        )
    })?;
    // Both engines print the new image's id.
    let image = String::from_utf8_lossy(&imported.stdout).trim().to_owned();
    if !produced.success() {
        if imported.status.success() {
            let _ = engine::capture(engine.command().args(["image", "rm", &image]));
        }
        return Err(failed(format!(
            "{} failed: {produced}",
            producer.get_program().display()
        )));
    }
    if !imported.status.success() {
        return Err(failed(format!(
            "{} import of {tag} failed: {}",
            engine.program(),
            imported.status
        )));
    }
    let previous = image_id(engine, tag);
    engine::capture(engine.command().args(["tag", &image, tag]))?;
    if let Some(previous) =
        previous.filter(|previous| *previous != image_id(engine, tag).unwrap_or_default())
    {
        // Best effort: the image the tag left stays while a container still uses it.
        let _ = engine::capture(engine.command().args(["image", "rm", &previous]));
    }
    Ok(())
}

fn image_id(engine: Engine, tag: &str) -> Option<String> {
    engine::capture(
        engine
            .command()
            .args(["image", "inspect", "--format", "{{.Id}}", tag]),
    )
    .ok()
    .map(|id| id.trim().to_owned())
}

/// The inputs digest an existing image was built from, if the image exists.
fn label_of(engine: Engine, tag: &str) -> Result<Option<String>, String> {
    let format = format!("{{{{ index .Config.Labels \"{INPUTS_LABEL}\" }}}}");
    // Inspecting an image that does not exist fails, the same way with both engines.
    Ok(engine::capture(
        engine
            .command()
            .args(["image", "inspect", "--format", &format, tag]),
    )
    .ok()
    .map(|label| label.trim().to_owned()))
}

fn kept(engine: Engine, tag: &str, started: Instant) -> Result<Built, String> {
    Ok(Built {
        kept: true,
        ..finished(engine, tag, started)?
    })
}

fn finished(engine: Engine, tag: &str, started: Instant) -> Result<Built, String> {
    let size =
        engine::capture(
            engine
                .command()
                .args(["image", "inspect", "--format", "{{.Size}}", tag]),
        )?;
    Ok(Built {
        tag: tag.to_owned(),
        size_bytes: size
            .trim()
            .parse()
            .map_err(|_| format!("{tag}: size {size:?} is not a number"))?,
        seconds: started.elapsed().as_secs_f64(),
        kept: false,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn create_parent(path: &Path) -> Result<(), String> {
    let parent = path
        .parent()
        .expect("a file in the root filesystem has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|error| format!("cannot create {}: {error}", parent.display()))
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

    #[test]
    fn services_map_to_roles_by_topology_name() {
        assert_eq!(Role::of_service("api2"), Some(Role::Api));
        assert_eq!(Role::of_service("db"), Some(Role::Database));
        assert_eq!(Role::of_service("nginx"), Some(Role::LoadBalancer));
        assert_eq!(Role::of_service("prometheus"), None);
    }
}
