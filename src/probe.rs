//! Whether the database answers, as a background probe sees it. A database cut off by the
//! network answers nothing at all, so every call would wait out the database timeout; once the
//! probe has found it gone, the store fails each call at once (a `503`, which nginx retries on
//! another replica for reads) until a probe succeeds again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::config::Settings;
use crate::store::StoreError;

/// What the probe last found.
#[derive(Debug, Default)]
pub struct Reachability {
    down: AtomicBool,
}

impl Reachability {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Records what a probe found; logs only a change.
    fn found(&self, answered: bool) {
        let was_down = self.down.swap(!answered, Ordering::AcqRel);
        match (was_down, answered) {
            (false, false) => {
                tracing::warn!("the database probe got no answer: failing calls at once")
            }
            (true, true) => tracing::info!("the database probe is answered again"),
            _ => {}
        }
    }
}

/// Probes the database every `DB_PROBE_INTERVAL_MS` over a connection of its own (a pool busy
/// with requests must not look like a database gone), and records each outcome in
/// `reachability`.
pub fn spawn(
    settings: &Settings,
    reachability: Arc<Reachability>,
) -> Result<JoinHandle<()>, StoreError> {
    let mut config: tokio_postgres::Config = settings
        .database_url
        .parse()
        .map_err(StoreError::InvalidUrl)?;
    config.connect_timeout(settings.probe_timeout);
    config.application_name("rinha-probe");
    let (interval, timeout) = (settings.probe_interval, settings.probe_timeout);
    Ok(tokio::spawn(async move {
        let mut client = None;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let answered = tokio::time::timeout(timeout, probe(&config, &mut client)).await;
            let answered = matches!(answered, Ok(Ok(())));
            if !answered {
                // A connection that did not answer may be stuck: the next probe opens another.
                client = None;
            }
            reachability.found(answered);
        }
    }))
}

async fn probe(
    config: &tokio_postgres::Config,
    client: &mut Option<tokio_postgres::Client>,
) -> Result<(), tokio_postgres::Error> {
    let connected = match client.take() {
        Some(connected) => connected,
        None => {
            let (connected, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            connected
        }
    };
    connected.simple_query("SELECT 1").await?;
    *client = Some(connected);
    Ok(())
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
