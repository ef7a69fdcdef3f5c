//! The workspace as xtask sees it: where the repository and its release binaries are, how they
//! are built, and how programs are run quietly.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use xshell::{Cmd, Shell};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository")
        .to_path_buf()
}

/// A release binary of this workspace, in `CARGO_TARGET_DIR` when it is set.
pub fn release_binary(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    repo_root().join(target).join("release").join(name)
}

/// Builds the service and the replay in release mode, together: built apart, Cargo unifies
/// their dependencies' features differently and each build relinks the other's binary.
pub fn build_release(sh: &Shell) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    xshell::cmd!(sh, "{cargo} build --release --package rinha --package replay").run()?;
    Ok(())
}

/// Silenced: for commands whose success is all that counts.
pub fn quietly(command: Cmd<'_>) -> Cmd<'_> {
    command.quiet().ignore_stdout().ignore_stderr()
}

/// Runs a setup step or a checker quietly; what it printed (on either stream) becomes the error
/// when it fails.
pub fn run_quietly(command: Cmd<'_>) -> Result<()> {
    let shown = command.to_string();
    let output = command.quiet().ignore_status().output()?;
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{shown} ({}):\n{stdout}{}", output.status, stderr.trim_end());
    }
    Ok(())
}

/// Fails unless every one of `ports` is free on loopback, which `stack` (a native or compose
/// stack) needs.
pub fn ensure_ports_free(ports: &[u16], stack: &str) -> Result<()> {
    for port in ports {
        anyhow::ensure!(
            std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok(),
            "port {port} is in use on 127.0.0.1: another stack or server is up (cargo xtask down, cargo xtask compose-down?); the {stack} needs {ports:?}"
        );
    }
    Ok(())
}

/// Seconds since 1970, to the microsecond.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is past 1970").as_secs_f64()
}
