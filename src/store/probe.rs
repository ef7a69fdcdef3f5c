//! Whether the database can be reached, as a background probe sees it. A database cut off by
//! the network answers nothing at all, so every call would wait out the database timeout; once
//! the probe has found it out of reach, the store fails each call at once (a `503`, which nginx
//! retries on another replica for reads) until a probe reaches it again.
//!
//! The probe opens a TCP connection to the database's address and closes it: a database that is
//! merely slow or stopped (its kernel still completes the handshake) is not taken for gone, and
//! calls wait for it as before; one that refuses, or that nothing answers for
//! `DB_PROBE_TIMEOUT_MS`, is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;
use tokio_postgres::config::Host;

use crate::config::Settings;

/// What the probe last found.
#[derive(Debug, Default)]
pub(super) struct Reachability {
    down: AtomicBool,
}

impl Reachability {
    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Records what a probe found; logs only a change.
    fn found(&self, reached: bool) {
        let was_down = self.down.swap(!reached, Ordering::AcqRel);
        match (was_down, reached) {
            (false, false) => {
                tracing::warn!("the database is out of reach: failing calls at once")
            }
            (true, true) => tracing::info!("the database can be reached again"),
            _ => {}
        }
    }
}

/// Probes the database every `DB_PROBE_INTERVAL_MS` and records each outcome in
/// `reachability`; fails only on a `DATABASE_URL` that does not parse.
pub(super) fn spawn(
    settings: &Settings,
    reachability: Arc<Reachability>,
) -> Result<JoinHandle<()>, tokio_postgres::Error> {
    let config: tokio_postgres::Config = settings.database_url.parse()?;
    let host = config.get_hosts().first().cloned();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let (interval, timeout) = (settings.probe_interval, settings.probe_timeout);
    Ok(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let reached = match &host {
                Some(Host::Tcp(name)) => {
                    let connect = tokio::net::TcpStream::connect((name.as_str(), port));
                    matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
                }
                // A socket on this machine: no network to lose.
                Some(Host::Unix(_)) | None => true,
            };
            reachability.found(reached);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_clears_a_failed_probe() {
        let reachability = Reachability::default();
        assert!(!reachability.is_down());
        reachability.found(false);
        assert!(reachability.is_down());
        reachability.found(false);
        assert!(reachability.is_down());
        reachability.found(true);
        assert!(!reachability.is_down());
    }
}
