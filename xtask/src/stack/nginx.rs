//! The native stack's load balancer: the system's nginx, run with a configuration derived from
//! `docker/nginx.conf`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

/// Buffers nginx may spill to disk, each of which defaults to a system directory.
const TEMP_PATHS: [&str; 5] = [
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
];

pub fn locate() -> Result<PathBuf> {
    let search_path = std::env::var_os("PATH").unwrap_or_default();
    // Debian keeps nginx in /usr/sbin, which is not on every user's PATH.
    std::env::split_paths(&search_path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|binary| binary.is_file())
        .context(
            "nginx not found on PATH or in /usr/sbin: install it with `apt-get install -y \
             nginx-light` (Debian), or run the compose stack (docker/compose.yml) instead",
        )
}

/// A replica as nginx reaches it.
pub struct Upstream {
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Its `ID_SLOT`, the last byte of the ids it makes.
    pub slot: u8,
}

/// The shared configuration, listening on `listen` only, for `replicas` instead of the two it is written for, and with
/// nginx's scratch files in `run_dir` instead of system directories. Every upstream lists
/// every replica, with the `server` line written for the first; the upstream that sends a
/// lookup to the first replica first (`<first>_first`, the others its backups), and its line in
/// the lookup map, are repeated for each replica, those of the others dropped.
pub fn derive_config(
    template: &str,
    run_dir: &Path,
    listen: IpAddr,
    written_for: &[&str],
    replicas: &[Upstream],
) -> Result<String> {
    let first = *written_for.first().context("no replica to derive from")?;
    let mut derived = String::with_capacity(template.len() * 2);
    let mut lines = template.lines();
    let (mut first_upstreams, mut map_lines) = (0, 0);
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(upstream) =
            trimmed.strip_prefix("upstream ").and_then(|rest| rest.strip_suffix(" {"))
        {
            let mut block = vec![line];
            for line in lines.by_ref() {
                block.push(line);
                if line.trim() == "}" {
                    break;
                }
            }
            let owner = upstream.strip_suffix("_first");
            if owner == Some(first) {
                first_upstreams += 1;
                for (index, replica) in replicas.iter().enumerate() {
                    let header = line.replace(upstream, &format!("{}_first", replica.name));
                    let others = replicas.iter().enumerate().filter(|(other, _)| *other != index);
                    let order: Vec<&Upstream> =
                        std::iter::once(replica).chain(others.map(|(_, other)| other)).collect();
                    derive_upstream(&mut derived, &header, &block[1..], &order, true)?;
                }
            } else if owner.is_none_or(|owner| !written_for.contains(&owner)) {
                let order: Vec<&Upstream> = replicas.iter().collect();
                derive_upstream(&mut derived, line, &block[1..], &order, false)?;
            }
            continue;
        }
        if trimmed.ends_with(&format!(" {first}_first;")) {
            map_lines += 1;
            for replica in replicas {
                derived.push_str(&map_line(line, first, replica)?);
                derived.push('\n');
            }
            continue;
        }
        if written_for.iter().any(|name| trimmed.ends_with(&format!(" {name}_first;"))) {
            continue;
        }
        let mut line = line.to_owned();
        if let Some(port) = bare_listen_port(&line) {
            // A bare port listens on every interface; the native stack listens on one address.
            line = line.replacen(&format!("listen {port}"), &format!("listen {listen}:{port}"), 1);
        }
        derived.push_str(&line);
        derived.push('\n');
        if line.trim() == "http {" {
            for directive in TEMP_PATHS {
                let dir = run_dir.join(directive.trim_end_matches("_temp_path"));
                derived.push_str(&format!("    {directive} {};\n", dir.display()));
            }
        }
    }
    if first_upstreams != 1 || map_lines != 1 {
        bail!("no `upstream {first}_first` block and `map` line sending lookups to {first} first");
    }
    if !TEMP_PATHS.iter().all(|directive| derived.contains(directive)) {
        bail!("no `http {{` line to put the temp paths in");
    }
    Ok(derived)
}

/// An upstream block with `body`'s `server` lines replaced by lines for the replicas of
/// `order`, each written as the first `server` line (where it stands) or as the first marked
/// `backup` (where that stands). With `first_only`, the first replica is the one primary and
/// the rest its backups; otherwise every replica is a primary and, if the block has a backup
/// line, a backup too.
fn derive_upstream(
    derived: &mut String,
    header: &str,
    body: &[&str],
    order: &[&Upstream],
    first_only: bool,
) -> Result<()> {
    let servers: Vec<&str> =
        body.iter().copied().filter(|line| line.trim_start().starts_with("server ")).collect();
    let primary = servers.first().with_context(|| format!("`{header}` has no server line"))?;
    let backup = servers.iter().copied().find(|line| line.contains(" backup"));
    ensure!(!first_only || backup.is_some(), "`{header}` has no backup server line");
    let (primaries, backups) = match first_only {
        true => order.split_at(1),
        false => (order, order),
    };
    derived.push_str(header);
    derived.push('\n');
    for line in body {
        if line.trim_start().starts_with("server ") {
            let replicas = match Some(*line) {
                line if line == Some(*primary) => primaries,
                line if line == backup => backups,
                _ => &[],
            };
            for replica in replicas {
                derived.push_str(&server_line(line, &replica.address));
                derived.push('\n');
            }
            continue;
        }
        derived.push_str(line);
        derived.push('\n');
    }
    Ok(())
}

/// `line` (`server host:port options;`) naming `address` instead.
fn server_line(line: &str, address: &str) -> String {
    let indent = &line[..line.len() - line.trim_start().len()];
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let port_only = words.get(1).is_some_and(|word| word.ends_with(';'));
    let replaced = format!("{address}{}", if port_only { ";" } else { "" });
    words[1] = &replaced;
    format!("{indent}{}", words.join(" "))
}

/// The lookup map's `line` for the first replica (its slot the two hex digits before `$"`),
/// for `replica`.
fn map_line(line: &str, first: &str, replica: &Upstream) -> Result<String> {
    let end = line.find("$\"").context("a lookup map line without `$\"`")?;
    let start = end.checked_sub(2).context("a lookup map line without a slot")?;
    let line = format!("{}{:02x}{}", &line[..start], replica.slot, &line[end..]);
    Ok(line.replace(&format!(" {first}_first;"), &format!(" {}_first;", replica.name)))
}

/// The port of a `listen <port>...;` line that names no address.
fn bare_listen_port(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("listen ")?.trim_start();
    let port = rest.split([' ', ';']).next()?;
    (!port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit())).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const WRITTEN_FOR: &[&str] = &["api1", "api2"];
    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn replicas(count: u8) -> Vec<Upstream> {
        (0..count)
            .map(|slot| Upstream {
                name: format!("api{}", slot + 1),
                address: format!("127.0.0.1:{}", 8081 + u16::from(slot)),
                slot,
            })
            .collect()
    }

    #[test]
    fn for_its_own_replicas_only_addresses_listeners_and_scratch_files_change() {
        let template = include_str!("../../../docker/nginx.conf")
            .replace("http {", "http {\n    listen 10.0.0.1:80;\n    listen [::]:81;");
        let derived =
            derive_config(&template, Path::new("/tmp/nginx"), LOOPBACK, WRITTEN_FOR, &replicas(2))
                .unwrap();
        assert!(!derived.contains("api1:") && !derived.contains("api2:"), "{derived}");
        assert!(derived.contains("listen 127.0.0.1:9999"), "{derived}");
        assert!(derived.contains("listen 10.0.0.1:80;\n    listen [::]:81;"), "{derived}");
        assert!(derived.contains("http {\n    client_body_temp_path /tmp/nginx/client_body;\n"));
        assert!(derived.contains("location /metrics {"), "/metrics must stay hidden");
        // Everything else is kept as written.
        let back = derived
            .replace("127.0.0.1:8081", "api1:8081")
            .replace("127.0.0.1:8082", "api2:8082")
            .replace("listen 127.0.0.1:9999", "listen 9999");
        let kept: Vec<&str> = back.lines().filter(|line| !line.contains("_temp_path")).collect();
        assert_eq!(kept, template.lines().collect::<Vec<_>>());
    }

    #[test]
    fn each_of_n_replicas_gets_its_lookups_first_and_every_upstream() {
        let template = include_str!("../../../docker/nginx.conf");
        let derived =
            derive_config(template, Path::new("/run"), LOOPBACK, WRITTEN_FOR, &replicas(4))
                .unwrap();
        for (index, replica) in replicas(4).iter().enumerate() {
            let slot = format!("{{34}}{:02x}$\" {}_first;", replica.slot, replica.name);
            assert!(derived.contains(&slot), "{slot} in {derived}");
            let block = derived.split(&format!("upstream {}_first {{", replica.name)).nth(1);
            let block = block.unwrap().split('}').next().unwrap();
            let servers: Vec<&str> = block.lines().filter(|l| l.contains("server ")).collect();
            assert_eq!(servers.len(), 4, "{block}");
            assert!(servers[0].contains(&replica.address) && !servers[0].contains("backup"));
            assert!(servers[1..].iter().all(|line| line.contains(" backup;")), "{block}");
            assert!(!servers[1..].iter().any(|line| line.contains(&replica.address)), "{index}");
        }
        let balanced = derived.split("upstream api {").nth(1).unwrap().split('}').next().unwrap();
        let servers: Vec<&str> = balanced.lines().filter(|l| l.contains("server ")).collect();
        assert_eq!(servers.len(), 4, "each replica once: {balanced}");
        assert!(servers.iter().all(|line| !line.contains("backup")), "{balanced}");
        for replica in replicas(4) {
            assert_eq!(balanced.matches(&format!("{} ", replica.address)).count(), 1);
        }
        assert_eq!(derived.matches("_first {").count(), 4);
    }

    #[test]
    fn a_template_without_lookup_routing_is_refused() {
        let template = include_str!("../../../docker/nginx.conf");
        let renamed = template.replace("api1_first", "first_of_api1");
        assert!(
            derive_config(&renamed, Path::new("/run"), LOOPBACK, WRITTEN_FOR, &replicas(2))
                .is_err()
        );
        let no_http = template.replace("http {", "stream {");
        assert!(
            derive_config(&no_http, Path::new("/run"), LOOPBACK, WRITTEN_FOR, &replicas(2))
                .is_err()
        );
    }
}
