//! The native stack's load balancer: the system's nginx, run with a configuration derived from
//! `docker/nginx.conf`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

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

/// The shared configuration, with the replicas on loopback and nginx's scratch files in
/// `run_dir` instead of system directories.
pub fn derive_config(template: &str, run_dir: &Path, replicas: &[&str]) -> Result<String> {
    let mut found = vec![false; replicas.len()];
    let mut derived = String::with_capacity(template.len() + 512);
    for line in template.lines() {
        let mut line = line.to_owned();
        if let Some(port) = bare_listen_port(&line) {
            // A bare port listens on every interface; the native stack stays on loopback.
            line = line.replacen(&format!("listen {port}"), &format!("listen 127.0.0.1:{port}"), 1);
        }
        if line.trim_start().starts_with("server ") {
            for (host, found) in replicas.iter().zip(&mut found) {
                let address = format!("{host}:");
                if line.contains(&address) {
                    line = line.replace(&address, "127.0.0.1:");
                    *found = true;
                }
            }
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
    if let Some((missing, _)) = replicas.iter().zip(found).find(|(_, found)| !found) {
        bail!("no upstream `server {missing}:<port>` line");
    }
    if !TEMP_PATHS.iter().all(|directive| derived.contains(directive)) {
        bail!("no `http {{` line to put the temp paths in");
    }
    Ok(derived)
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

    const REPLICAS: &[&str] = &["api1", "api2"];

    #[test]
    fn replicas_and_listeners_move_to_loopback_and_scratch_files_to_the_run_directory() {
        let template = include_str!("../../docker/nginx.conf")
            .replace("http {", "http {\n    listen 10.0.0.1:80;\n    listen [::]:81;");
        let derived = derive_config(&template, Path::new("/tmp/nginx"), REPLICAS).unwrap();
        assert!(derived.contains("127.0.0.1:8081") && derived.contains("127.0.0.1:8082"));
        assert!(!derived.contains("api1:") && !derived.contains("api2:"), "{derived}");
        assert!(derived.contains("listen 127.0.0.1:9999"), "{derived}");
        assert!(derived.contains("listen 10.0.0.1:80;\n    listen [::]:81;"), "{derived}");
        assert!(derived.contains("http {\n    client_body_temp_path /tmp/nginx/client_body;\n"));
        assert!(derived.contains("location /metrics {"), "/metrics must stay hidden");
        // Everything else is kept as written.
        let kept = |text: &str| text.lines().filter(|line| !line.contains("127.0.0.1")).count();
        let servers = template.matches("server api").count();
        assert_eq!(kept(&derived), kept(&template) - servers - 1 + TEMP_PATHS.len());

        let renamed = template.replace("api2:8082", "backend:8082");
        let error = derive_config(&renamed, Path::new("/run"), REPLICAS).unwrap_err();
        assert!(error.to_string().contains("api2"), "{error}");
        let no_http = template.replace("http {", "stream {");
        assert!(derive_config(&no_http, Path::new("/run"), REPLICAS).is_err());
    }
}
