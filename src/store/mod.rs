//! PostgreSQL access: the connection pool, its errors, and the bounds every call keeps. The
//! schema is applied in `schema`, the statements and their calls are in `queries`, the rows they
//! return are read in `rows`, and `probe` finds a database cut off by the network.
//!
//! Every call is bounded by the configured database timeout, so a database that is down or
//! stuck turns into a quick [`StoreError`] that [is an outage](StoreError::is_outage) (a
//! `503`), never a hung request. The
//! database itself cancels a statement that runs past the timeout (`statement_timeout`), so a
//! write answered `503` for being slow was rolled back, not committed behind the client's back;
//! the client gives up on its own only a moment later, when the database does not answer at all.

mod gram_lists;
mod inserts;
mod probe;
mod queries;
pub(crate) mod rows;
mod saved_filter;
mod schema;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::config::Settings;
pub use inserts::Inserted;
use probe::Reachability;
pub use queries::{CATCH_UP_SQL, IN_PROGRESS_PAGE_SQL, PAGE_SQL, SEARCH_SQL};
pub(crate) use queries::{PageStart, Snapshot};
pub use schema::SCHEMA_LOCK_KEY;

/// How long past its statement timeout the database may take to report the cancellation.
const UNANSWERED_GRACE: Duration = Duration::from_secs(1);

/// Why a call to the database failed, with the error that caused it as its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DATABASE_URL is not a PostgreSQL connection string")]
    InvalidUrl(#[source] tokio_postgres::Error),
    /// The pool had no connection to give within the timeout: the database refused one, is
    /// not there, or every connection stayed busy.
    #[error("database unavailable: no connection")]
    NoConnection(#[from] deadpool_postgres::PoolError),
    /// The connection was lost, or the database failed or cancelled the statement (it does
    /// past `statement_timeout`).
    #[error("database unavailable: a statement failed")]
    Statement(#[from] tokio_postgres::Error),
    #[error("database unavailable: no answer within {0:?}")]
    TimedOut(Duration),
    /// The background probe found the database out of reach (see `probe`): not tried.
    #[error("database unavailable: out of reach")]
    ProbeFailed,
    /// A row does not read as what the query is meant to return: the code and the schema
    /// disagree, or a row breaks the rules (written behind the API's back). Not an outage.
    #[error("a stored row cannot be read")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// One failure shared by every call that waited on the same work.
    #[error(transparent)]
    Shared(Arc<StoreError>),
}

impl StoreError {
    /// Whether the database is out of reach or too slow, which passes (a `503`, worth
    /// retrying), rather than the code being wrong about the data (a bug: a `500`).
    pub(crate) fn is_outage(&self) -> bool {
        match self {
            StoreError::Shared(error) => error.is_outage(),
            _ => !matches!(self, StoreError::Decode(_) | StoreError::InvalidUrl(_)),
        }
    }

    /// Whether a write that failed this way may have committed all the same: the statement
    /// may have reached the database, and its answer was lost with the connection or never
    /// came. An error the database reported for the statement itself means it rolled back.
    pub(crate) fn may_have_committed(&self) -> bool {
        match self {
            StoreError::TimedOut(_) => true,
            StoreError::Statement(error) => error
                .as_db_error()
                .is_none_or(|db| matches!(db.severity(), "FATAL" | "PANIC")),
            StoreError::Shared(error) => error.may_have_committed(),
            _ => false,
        }
    }
}

fn decode(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Decode(error.into())
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Room for searches in the database (past a full mirror) at once: half the connections the
    /// writers leave, so that however slow those searches get, writes, catch-ups and lookups
    /// always find connections.
    searches: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    outage: Arc<Outage>,
    reachability: Arc<Reachability>,
}

/// Reports the database going away and coming back, once each, with the number of calls that
/// failed meanwhile: a line per failed request would flood the log during an outage.
#[derive(Default)]
struct Outage {
    /// Whether an outage is under way; read on every success, so kept apart from the lock.
    ongoing: AtomicBool,
    /// When it began and how many calls have failed since.
    since: Mutex<Option<(Instant, u64)>>,
}

impl Outage {
    fn failed(&self, error: &StoreError) {
        let mut since = self
            .since
            .lock()
            .expect("never poisoned: no panics under it");
        match &mut *since {
            Some((_, failures)) => *failures += 1,
            None => {
                tracing::warn!(
                    error = error as &dyn std::error::Error,
                    "the database became unavailable"
                );
                *since = Some((Instant::now(), 1));
                self.ongoing.store(true, Ordering::Release);
            }
        }
    }

    fn succeeded(&self) {
        if !self.ongoing.load(Ordering::Acquire) {
            return;
        }
        let mut since = self
            .since
            .lock()
            .expect("never poisoned: no panics under it");
        if let Some((began, failures)) = since.take() {
            self.ongoing.store(false, Ordering::Release);
            tracing::info!(
                "the database is available again, after {:.1?} and {failures} failed calls",
                began.elapsed()
            );
        }
    }
}

impl Store {
    pub fn new(settings: &Settings) -> Result<Store, StoreError> {
        let mut pg_config: tokio_postgres::Config = settings
            .database_url
            .parse()
            .map_err(StoreError::InvalidUrl)?;
        pg_config.connect_timeout(settings.db_timeout);
        pg_config.options(format!(
            "-c statement_timeout={} -c DateStyle=ISO",
            settings.db_timeout.as_millis()
        ));
        pg_config.application_name("rinha");
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.db_timeout))
            .create_timeout(Some(settings.db_timeout))
            .recycle_timeout(Some(settings.db_timeout))
            .build()
            .expect("a runtime is set, all a pool with timeouts needs");
        let searches = (settings.pool_size - settings.writers) / 2;
        Ok(Store {
            pool,
            searches: Arc::new(tokio::sync::Semaphore::new(searches.max(1))),
            timeout: settings.db_timeout,
            outage: Arc::default(),
            reachability: Arc::default(),
        })
    }

    /// Starts the background probe (see `probe`), whose findings this store's calls heed;
    /// fails only on a `DATABASE_URL` that does not parse.
    pub(crate) fn spawn_probe(&self, settings: &Settings) -> Result<JoinHandle<()>, StoreError> {
        probe::spawn(settings, self.reachability.clone()).map_err(StoreError::InvalidUrl)
    }

    pub(crate) fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// How long a call may wait on the database.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Fails at once while the probe finds the database gone: a call that would queue behind
    /// others already waiting on it (for a writer, or for a running catch-up) is refused before
    /// it joins them, not when they give up.
    pub(crate) fn ensure_reachable(&self) -> Result<(), StoreError> {
        if self.reachability.is_down() {
            let error = StoreError::ProbeFailed;
            self.outage.failed(&error);
            return Err(error);
        }
        Ok(())
    }

    /// A pooled connection, waiting at most the database timeout for one.
    /// None at all while the probe finds the database gone.
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.ensure_reachable()?;
        let client = self.pool.get().await.map_err(StoreError::from);
        if let Err(error) = &client {
            self.outage.failed(error);
        }
        client
    }

    /// Runs `operation`, giving up when the database has not answered shortly after its own
    /// statement timeout should have.
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.timeout + UNANSWERED_GRACE;
        let result = tokio::time::timeout(limit, operation)
            .await
            .unwrap_or(Err(StoreError::TimedOut(limit)));
        match &result {
            Err(error) if error.is_outage() => self.outage.failed(error),
            // The database answered, even when the code could not read the answer.
            _ => self.outage.succeeded(),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn a_row_that_cannot_be_read_is_no_outage_and_keeps_its_cause() {
        let bug = decode("no column 'apelido'");
        assert!(!bug.is_outage());
        assert_eq!(bug.source().unwrap().to_string(), "no column 'apelido'");
        assert!(StoreError::TimedOut(Duration::from_secs(1)).is_outage());
    }
}
