//! The database link of the stack across namespaces (`--netns`), slowed on demand: the replicas
//! reach PostgreSQL through a relay in its namespace (`cargo xtask relay-database`, a process of
//! its own), which holds what PostgreSQL sends for a delay read from a file. The kernel's
//! `tc netem` would do the same on the link itself, but not every kernel has it.
//!
//! Each connection keeps its bytes' order and only their arrival moves later, so queries sent
//! one after another still overlap as they would on a slow wire. What the replicas send passes
//! at once: the delay is the round trip's growth, as netem on PostgreSQL's side would add it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How often the relay reads its delay file again.
const DELAY_READ_EVERY: Duration = Duration::from_millis(20);
/// The most a relay reads at once, of what PostgreSQL sends.
const CHUNK: usize = 64 * 1024;

/// `cargo xtask relay-database`: how the stack starts the relay.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Where the replicas connect.
    #[arg(long)]
    pub listen: SocketAddr,
    /// PostgreSQL's own address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Holds the delay in microseconds; a missing or unreadable file means none.
    #[arg(long)]
    pub delay_file: PathBuf,
}

/// Writes the relay's delay to `file`, where a running relay reads it within 20 ms.
pub fn set_delay(file: &Path, delay: Duration) -> Result<()> {
    let new = file.with_extension("new");
    std::fs::write(&new, delay.as_micros().to_string())
        .and_then(|()| std::fs::rename(&new, file))
        .with_context(|| format!("cannot write {}", file.display()))
}

/// Relays every connection to `args.listen` until the process is stopped.
pub fn relay(args: &RelayArgs) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let delay = Arc::new(AtomicU64::new(read_delay(&args.delay_file)));
    let (file, watched) = (args.delay_file.clone(), Arc::clone(&delay));
    thread::spawn(move || {
        loop {
            watched.store(read_delay(&file), Ordering::Relaxed);
            thread::sleep(DELAY_READ_EVERY);
        }
    });
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let (target, delay) = (args.target, Arc::clone(&delay));
        thread::spawn(move || {
            // The client sees the refusal as a closed connection, as it would see a
            // database that went away.
            if let Ok(server) = TcpStream::connect(target) {
                let _ = join(client, server, &delay);
            }
        });
    }
    Ok(())
}

fn read_delay(file: &Path) -> u64 {
    std::fs::read_to_string(file).ok().and_then(|text| text.trim().parse().ok()).unwrap_or(0)
}

/// Carries bytes both ways between `client` and `server` until either side closes, holding
/// those from the server for the delay in force when they were read.
fn join(client: TcpStream, server: TcpStream, delay: &AtomicU64) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut to_server, mut from_client) = (server.try_clone()?, client.try_clone()?);
    let upstream = thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let (held, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let mut to_client = client.try_clone()?;
    let downstream = thread::spawn(move || {
        for (at, bytes) in due {
            thread::sleep(at.saturating_duration_since(Instant::now()));
            if to_client.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut from_server = server;
    let mut buffer = vec![0; CHUNK];
    loop {
        match from_server.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                let at = Instant::now() + Duration::from_micros(delay.load(Ordering::Relaxed));
                if held.send((at, buffer[..read].to_vec())).is_err() {
                    break;
                }
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    drop(held);
    let _ = downstream.join();
    // The client is gone or was answered in full: end what it may still send.
    let _ = from_server.shutdown(Shutdown::Both);
    let _ = upstream.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers each byte with the same byte.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut reader, &mut stream);
                });
            }
        });
        address
    }

    fn round_trip(stream: &mut TcpStream) -> Duration {
        let started = Instant::now();
        stream.write_all(b"x").unwrap();
        let mut byte = [0];
        stream.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        started.elapsed()
    }

    #[test]
    fn the_relay_holds_what_the_server_sends_for_the_delay_in_its_file() {
        let delay_file = std::env::temp_dir().join(format!("relay-delay-{}", std::process::id()));
        let listen = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let args = RelayArgs { listen, target: echo_server(), delay_file: delay_file.clone() };
        thread::spawn(move || relay(&args));
        let mut client = loop {
            match TcpStream::connect(listen) {
                Ok(stream) => break stream,
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        };
        let fast = round_trip(&mut client);
        set_delay(&delay_file, Duration::from_millis(300)).unwrap();
        thread::sleep(DELAY_READ_EVERY * 5);
        // A lower bound only: a busy machine may add to it, never take from it.
        assert!(round_trip(&mut client) >= Duration::from_millis(300), "held (fast: {fast:?})");
        set_delay(&delay_file, Duration::ZERO).unwrap();
        thread::sleep(DELAY_READ_EVERY * 5);
        let bytes = (0..=255u8).cycle().take(200_000).collect::<Vec<u8>>();
        client.write_all(&bytes).unwrap();
        let mut echoed = vec![0; bytes.len()];
        client.read_exact(&mut echoed).unwrap();
        assert!(echoed == bytes, "every byte back, in order");
        let _ = std::fs::remove_file(&delay_file);
    }
}
