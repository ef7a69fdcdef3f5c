//! Building and running one replica: pool, schema, mirror, writers, HTTP server, graceful
//! shutdown.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::memory;
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::routes::{AppState, api};
use crate::store::{Store, StoreError};
use crate::writer::Writer;

/// How long a starting replica waits for its database before giving up.
const DATABASE_WAIT: Duration = Duration::from_secs(30);

pub struct Application {
    listener: TcpListener,
    state: AppState,
    writer_task: JoinHandle<()>,
}

impl Application {
    /// Connects, applies the schema (waiting up to 30 s for the database to come up), loads
    /// the people stored so far into memory (as many as its budget allows) and binds the port; requests are served once
    /// [`Application::run_until`] is called.
    pub async fn build(settings: &Settings) -> Result<Application, Box<dyn std::error::Error>> {
        let store = Store::new(settings)?;
        migrate_when_ready(&store).await?;
        let memory_limit = settings.memory_limit_bytes.or_else(memory::cgroup_limit);
        let mirror = Arc::new(Mirror::load(store.clone(), memory::mirror_budget(memory_limit)).await?);
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.port)))
            .await
            .map_err(|e| format!("cannot listen on port {}: {e}", settings.port))?;
        let metrics = Arc::new(Metrics::new());
        let (writer, writer_task) = Writer::spawn(
            store.clone(),
            settings.writers,
            settings.batch_max,
            metrics.clone(),
        );
        Ok(Application {
            listener,
            state: AppState {
                store,
                mirror,
                writer,
                metrics,
            },
            writer_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish,
    /// and returns once the writers have flushed their last batches.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Application {
            listener,
            state,
            writer_task,
        } = self;
        warp::serve(api(state))
            .incoming(listener)
            .graceful(shutdown)
            .run()
            .await;
        // The server and every request holding a writer handle are gone, so the writers drain
        // their queue and stop.
        if let Err(error) = writer_task.await {
            eprintln!("rinha: the writers stopped abnormally: {error}");
        }
    }
}

async fn migrate_when_ready(store: &Store) -> Result<(), StoreError> {
    let started = Instant::now();
    loop {
        match store.migrate().await {
            Ok(()) => return Ok(()),
            Err(error) if started.elapsed() < DATABASE_WAIT => {
                eprintln!("rinha: waiting for the database: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    }
}
