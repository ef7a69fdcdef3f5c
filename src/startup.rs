//! Building and running one replica: the store, its mirror, writers and probe, the people
//! over them, the metrics, and the HTTP server; and the order they stop in.

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::http::{AppState, Server};
use crate::memory;
use crate::metrics::Metrics;
use crate::mirror::{Mirror, SEARCH_LIMIT};
use crate::people::People;
use crate::store::Store;
use crate::writer::Writer;

pub struct Application {
    server: Server,
    tasks: Tasks,
}

/// The tasks that work behind the people: the writers and the database probe.
pub struct Tasks {
    writers: JoinHandle<()>,
    probe: JoinHandle<()>,
}

impl Application {
    /// Builds what the routes serve (see [`state`]) and binds the port; requests are served
    /// once [`Application::run_until`] is called.
    pub async fn build(settings: &Settings) -> Result<Application, Box<dyn Error>> {
        let (state, tasks) = state(settings).await?;
        let server = Server::bind(settings, state).await?;
        Ok(Application { server, tasks })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The metrics listener's address, with `METRICS_PORT`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// (closing the connections of those still open after the shutdown grace), and returns
    /// once the writers have flushed their last batches.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        self.server.run_until(shutdown).await;
        // The server and every request holding the people are gone, so the writers drain
        // their queue and stop.
        if let Err(error) = self.tasks.writers.await {
            tracing::error!(%error, "the writers stopped abnormally");
        }
        self.tasks.probe.abort();
    }
}

/// What the routes serve: connects, applies the schema (waiting up to 30 s for the database
/// to come up), starts the database probe, loads the people stored so far into memory (as many
/// as its budget allows) and starts the writers, which stop once the state is dropped.
pub async fn state(settings: &Settings) -> Result<(AppState, Tasks), Box<dyn Error>> {
    let store = Store::new(settings)?;
    store.migrate_when_ready().await?;
    let probe = store.spawn_probe(settings)?;
    let memory_limit = settings.memory_limit_bytes.or_else(memory::cgroup_limit);
    let mirror = Arc::new(Mirror::load(store.clone(), memory::mirror_budget(memory_limit)).await?);
    let metrics = Arc::new(Metrics::new());
    // So that no write tries to list a person under a gram already full.
    let full_grams = store.full_grams(SEARCH_LIMIT).await?;
    let (writer, writers) = Writer::spawn(
        store.clone(),
        full_grams,
        settings.writers,
        settings.batch_max,
        settings.db_timeout,
        metrics.clone(),
    );
    let state = AppState {
        people: People::new(store, mirror, writer, settings.id_slot),
        metrics,
        body_timeout: settings.body_timeout,
    };
    Ok((state, Tasks { writers, probe }))
}

/// Applies the schema, then builds the search index (see `sql/search-index.sql`): the step a
/// table past what a mirror holds needs, run apart from the replicas (`rinha index-search`).
pub async fn index_search(settings: &Settings) -> Result<(), Box<dyn Error>> {
    let store = Store::new(settings)?;
    store.migrate_when_ready().await?;
    // A third of the replicas' mirror: the filter of pieces a replica loads, or 128 MiB when
    // their limit is unknown here.
    let memory_limit = settings.memory_limit_bytes.or_else(memory::cgroup_limit);
    let filter_bytes = match memory_limit {
        Some(_) => memory::mirror_budget(memory_limit) / 3,
        None => 128 << 20,
    };
    // The index first, over the rows this snapshot saw: a replica that loads the filter saved
    // with it then finds the index there.
    let snapshot = store.snapshot().await?;
    store.create_search_index(snapshot.xmax).await?;
    let indexed = crate::mirror::index_stored_people(&store, &snapshot, filter_bytes).await?;
    tracing::info!(
        "{} people listed under {} short grams and {} spaced grams, and their pieces saved in a \
         filter of {} MiB, {:.0}% of its bits set",
        indexed.people,
        indexed.grams,
        indexed.spaced_grams,
        indexed.filter_bytes >> 20,
        indexed.filter_load * 100.0
    );
    store.drop_older_search_indexes(snapshot.xmax).await?;
    Ok(())
}
