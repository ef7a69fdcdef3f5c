//! PostgreSQL access: the connection pool, the schema, and the queries.
//!
//! Every call is bounded by the configured database timeout, so a database that is down or
//! stuck turns into a quick [`StoreError`] that [is an outage](StoreError::is_outage) (a
//! `503`), never a hung request. The
//! database itself cancels a statement that runs past the timeout (`statement_timeout`), so a
//! write answered `503` for being slow was rolled back, not committed behind the client's back;
//! the client gives up on its own only a moment later, when the database does not answer at all.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::TryStreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use crate::config::Settings;
use crate::domain::{Pessoa, PessoaPayload};
use crate::index::PersonRef;
use crate::probe::Reachability;

/// The schema, embedded so the binary needs no files beside it.
const SCHEMA: &str = include_str!("../sql/schema.sql");

/// Any number works as long as every replica uses the same one. Public so tests can contend
/// for it.
pub const SCHEMA_LOCK_KEY: i64 = 0x0072_696e_6861; // "rinha"

/// How long past its statement timeout the database may take to report the cancellation.
const UNANSWERED_GRACE: Duration = Duration::from_secs(1);

/// The columns of a person, in the API's order.
macro_rules! person_columns {
    () => {
        // The date as text, `YYYY-MM-DD` under the session's ISO DateStyle (see `Store::new`):
        // `to_char` would cost PostgreSQL three times as much a row.
        "id, apelido, nome, nascimento::text AS nascimento, stack"
    };
}

const FIND_SQL: &str = concat!("SELECT ", person_columns!(), " FROM pessoas WHERE id = $1");

/// The snapshot of this statement: the oldest transaction still running (`xmin`), the first
/// not yet begun (`xmax`), and those between that were running (in progress). A transaction
/// older than `xmax` and not in progress had finished: its rows, if committed, were visible.
pub const SNAPSHOT_SQL: &str = "SELECT pg_snapshot_xmin(snapshot)::text::bigint, \
     pg_snapshot_xmax(snapshot)::text::bigint, \
     ARRAY(SELECT pg_snapshot_xip(snapshot)::text::bigint) \
     FROM pg_current_snapshot() AS snapshot";

/// A catch-up's first statement, in one round trip: the rows of the transactions `$1` (those
/// in progress at the last catch-up), then those of transactions from `$2` on (the last
/// catch-up's `xmax`), each in (insert_xact, id) order and at most `$3` of each, as a page has
/// them, followed by a flag telling the former, and, on every row, this statement's snapshot
/// (see [`SNAPSHOT_SQL`]). The outer join yields the snapshot even with no rows. Public so
/// tests can check its plan.
pub const CATCH_UP_SQL: &str = concat!(
    "WITH snapshot AS (SELECT pg_snapshot_xmin(snapshot)::text::bigint AS xmin, \
         pg_snapshot_xmax(snapshot)::text::bigint AS xmax, \
         ARRAY(SELECT pg_snapshot_xip(snapshot)::text::bigint) AS in_progress \
         FROM pg_current_snapshot() AS snapshot) \
     SELECT added.*, snapshot.* FROM snapshot LEFT JOIN (\
         (SELECT insert_xact, ",
    person_columns!(),
    ", true AS of_in_progress FROM pessoas WHERE insert_xact = ANY($1) \
          ORDER BY insert_xact, id LIMIT $3) \
         UNION ALL \
         (SELECT insert_xact, ",
    person_columns!(),
    ", false FROM pessoas WHERE insert_xact >= $2 ",
    // Always true, and there for the plan PostgreSQL caches for this statement, which knows
    // nothing of $2: against a lower bound alone it expects a third of the table; between two
    // bounds it expects a sliver and walks the index, as it should.
    "AND insert_xact <= 9223372036854775807 ORDER BY insert_xact, id LIMIT $3) \
     ) AS added ON true"
);

/// One page of the people inserted by the transactions `$1`, in (insert_xact, id) order: those
/// after `($2, $3)`, at most `$4` of them. Each transaction is an index range of its own.
/// Public so tests can check its plan.
pub const IN_PROGRESS_PAGE_SQL: &str = concat!(
    "SELECT insert_xact, ",
    person_columns!(),
    " FROM pessoas WHERE insert_xact = ANY($1) AND (insert_xact, id) > ($2, $3) \
     ORDER BY insert_xact, id LIMIT $4"
);

/// One page of people in (insert_xact, id) order: those after `($1, $2)` and inserted by a
/// transaction older than `$3`, at most `$4` of them. Public so tests can check its plan.
pub const PAGE_SQL: &str = concat!(
    "SELECT insert_xact, ",
    person_columns!(),
    " FROM pessoas WHERE (insert_xact, id) > ($1, $2) AND insert_xact < $3 \
     ORDER BY insert_xact, id LIMIT $4"
);

/// One person; an apelido already taken inserts nothing and returns no row.
const INSERT_ONE_SQL: &str = "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
     VALUES ($1, $2, $3, $4::text::date, $5) \
     ON CONFLICT (apelido) DO NOTHING \
     RETURNING id";

/// Several people, as parallel arrays. A batch of arrays cannot travel as a two-dimensional
/// array (rows differ in length and unnest would flatten it), so each stack travels as JSON
/// text. An apelido taken, by an earlier row or one earlier in the batch, inserts nothing.
const INSERT_BATCH_SQL: &str = "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
     SELECT id, apelido, nome, nascimento::date, \
            CASE WHEN stack IS NULL THEN NULL ELSE ARRAY( \
                SELECT item FROM jsonb_array_elements_text(stack::jsonb) \
                    WITH ORDINALITY AS items(item, position) \
                ORDER BY position) END \
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) \
          AS input(id, apelido, nome, nascimento, stack) \
     ON CONFLICT (apelido) DO NOTHING \
     RETURNING id";

/// Where a page of [`Store::page`] starts: after this (insert_xact, id).
pub type PageStart = (i64, Uuid);

/// What a statement could see (see [`SNAPSHOT_SQL`]), in full transaction ids, as
/// `insert_xact` holds them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub xmin: i64,
    pub xmax: i64,
    pub in_progress: Vec<i64>,
}

/// What a catch-up's first statement returns (see [`CATCH_UP_SQL`]).
pub struct CatchUpStart {
    pub snapshot: Snapshot,
    /// The first page of the rows of the transactions in progress at the last catch-up.
    pub of_in_progress: Vec<Row>,
    /// The first page of the rows of transactions from the last catch-up's `xmax` on.
    pub newer: Vec<Row>,
}

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
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Shared(error) => error.is_outage(),
            _ => !matches!(self, StoreError::Decode(_) | StoreError::InvalidUrl(_)),
        }
    }

    /// Whether a write that failed this way may have committed all the same: the statement
    /// may have reached the database, and its answer was lost with the connection or never
    /// came. An error the database reported for the statement itself means it rolled back.
    pub fn may_have_committed(&self) -> bool {
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
        Ok(Store {
            pool,
            timeout: settings.db_timeout,
            outage: Arc::default(),
            reachability: Arc::default(),
        })
    }

    /// What the background probe found, which it records here.
    pub fn reachability(&self) -> Arc<Reachability> {
        self.reachability.clone()
    }

    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Applies the schema. Replicas starting together serialise on an advisory lock, so
    /// `CREATE … IF NOT EXISTS` never races with itself. The lock belongs to the transaction,
    /// so it ends with it however the migration ends: a session lock taken and released by
    /// two statements stayed held, on a pooled connection, when the timeout fell between them.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        self.bounded(async {
            let transaction = client.transaction().await?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
                .await?;
            transaction.batch_execute(SCHEMA).await?;
            Ok(transaction.commit().await?)
        })
        .await
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Pessoa>, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(FIND_SQL).await?;
            let row = client.query_opt(&statement, &[&id]).await?;
            row.map(pessoa_from_row).transpose()
        })
        .await
    }

    /// A snapshot taken now (see [`SNAPSHOT_SQL`]).
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(SNAPSHOT_SQL).await?;
            let row = client.query_one(&statement, &[]).await?;
            let read = || -> Result<Snapshot, tokio_postgres::Error> {
                Ok(Snapshot {
                    xmin: row.try_get(0)?,
                    xmax: row.try_get(1)?,
                    in_progress: row.try_get(2)?,
                })
            };
            read().map_err(decode)
        })
        .await
    }

    /// A snapshot taken now and the first page of each kind of row a catch-up from `seen`
    /// reads (see [`CATCH_UP_SQL`]), as rows for [`stored_person`].
    pub async fn catch_up_start(
        &self,
        seen: &Snapshot,
        limit: i64,
    ) -> Result<CatchUpStart, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(CATCH_UP_SQL).await?;
            let rows = client
                .query(&statement, &[&seen.in_progress, &seen.xmax, &limit])
                .await?;
            let first = rows
                .first()
                .ok_or_else(|| decode("no row holds the snapshot"))?;
            let read = || -> Result<Snapshot, tokio_postgres::Error> {
                Ok(Snapshot {
                    xmin: first.try_get("xmin")?,
                    xmax: first.try_get("xmax")?,
                    in_progress: first.try_get("in_progress")?,
                })
            };
            let snapshot = read().map_err(decode)?;
            let mut start = CatchUpStart {
                snapshot,
                of_in_progress: Vec::new(),
                newer: Vec::new(),
            };
            for row in rows {
                match row.try_get::<_, Option<bool>>("of_in_progress") {
                    Ok(Some(true)) => start.of_in_progress.push(row),
                    Ok(Some(false)) => start.newer.push(row),
                    // The outer join's row when there are none.
                    Ok(None) => {}
                    Err(error) => return Err(decode(error)),
                }
            }
            Ok(start)
        })
        .await
    }

    /// Up to `limit` people after `start` in (insert_xact, id) order, inserted by a
    /// transaction older than `before` (see [`PAGE_SQL`]), as rows for [`stored_person`].
    pub async fn page_rows(
        &self,
        start: PageStart,
        before: i64,
        limit: i64,
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(PAGE_SQL).await?;
            Ok(client
                .query(&statement, &[&start.0, &start.1, &before, &limit])
                .await?)
        })
        .await
    }

    /// Up to `limit` people after `start` in (insert_xact, id) order, inserted by one of the
    /// transactions `in_progress` (see [`IN_PROGRESS_PAGE_SQL`]), as rows for
    /// [`stored_person`].
    pub async fn in_progress_page_rows(
        &self,
        in_progress: &[i64],
        start: PageStart,
        limit: i64,
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(IN_PROGRESS_PAGE_SQL).await?;
            Ok(client
                .query(&statement, &[&in_progress, &start.0, &start.1, &limit])
                .await?)
        })
        .await
    }

    /// Gives `each` the rows of up to `limit` people after `start` in (insert_xact, id) order,
    /// inserted by transactions older than `before` (see [`PAGE_SQL`]), as they arrive, for
    /// [`stored_person`], until it returns false. Returns how many rows it was given. Rows are
    /// handled while the next ones travel, and a page is never held whole.
    pub async fn page(
        &self,
        start: PageStart,
        before: i64,
        limit: i64,
        mut each: impl FnMut(&Row) -> Result<bool, StoreError>,
    ) -> Result<i64, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(PAGE_SQL).await?;
            let parameters: [&(dyn ToSql + Sync); 4] = [&start.0, &start.1, &before, &limit];
            let rows = client.query_raw(&statement, parameters).await?;
            let mut rows = std::pin::pin!(rows);
            let mut given = 0;
            while let Some(row) = rows.try_next().await? {
                given += 1;
                if !each(&row)? {
                    break;
                }
            }
            Ok(given)
        })
        .await
    }

    /// How long a call may wait on the database.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client
                .prepare_cached("SELECT count(*) FROM pessoas")
                .await?;
            let row = client.query_one(&statement, &[]).await?;
            row.try_get(0).map_err(decode)
        })
        .await
    }

    /// Inserts `batch` in one statement and one transaction, skipping people whose apelido is
    /// taken (by an earlier row or by another row of the same batch). Returns the ids inserted.
    ///
    /// A batch of one, which is nearly every batch unless the database falls behind, has a
    /// statement of its own: without the unnest and the JSON of the batch form, a transaction
    /// of one person costs PostgreSQL about a quarter less CPU (pgbench, commit included:
    /// 90-106 µs against 127-130).
    ///
    /// When the answer is lost (the connection dropped after the statement was sent), the
    /// outcome is settled by looking the batch's ids up: they are made afresh for each
    /// request, so any of them stored means the batch committed, and the others' apelidos were
    /// taken. None stored is answered as the failure it was.
    pub async fn insert_batch(&self, batch: &[&Pessoa]) -> Result<HashSet<Uuid>, StoreError> {
        match self.insert_batch_once(batch).await {
            Err(error) if error.may_have_committed() => {
                let ids: Vec<Uuid> = batch.iter().map(|p| p.id()).collect();
                match self.stored_among(&ids).await {
                    Ok(stored) if !stored.is_empty() => {
                        tracing::info!(
                            error = &error as &dyn std::error::Error,
                            "a batch whose answer was lost had committed; {} of its {} people \
                             stored",
                            stored.len(),
                            ids.len()
                        );
                        Ok(stored)
                    }
                    _ => Err(error),
                }
            }
            result => result,
        }
    }

    /// The ids among `ids` that are stored.
    pub async fn stored_among(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client
                .prepare_cached("SELECT id FROM pessoas WHERE id = ANY($1)")
                .await?;
            let rows = client.query(&statement, &[&ids]).await?;
            rows.iter()
                .map(|row| row.try_get(0).map_err(decode))
                .collect()
        })
        .await
    }

    async fn insert_batch_once(&self, batch: &[&Pessoa]) -> Result<HashSet<Uuid>, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let rows = match batch {
                [pessoa] => {
                    let statement = client.prepare_cached(INSERT_ONE_SQL).await?;
                    let stack: Option<Vec<&str>> = pessoa
                        .stack()
                        .map(|items| items.iter().map(AsRef::as_ref).collect());
                    client
                        .query(
                            &statement,
                            &[
                                &pessoa.id(),
                                &pessoa.apelido().as_ref(),
                                &pessoa.nome().as_ref(),
                                &pessoa.nascimento().as_ref(),
                                &stack,
                            ],
                        )
                        .await?
                }
                _ => {
                    let statement = client.prepare_cached(INSERT_BATCH_SQL).await?;
                    let ids: Vec<Uuid> = batch.iter().map(|p| p.id()).collect();
                    let apelidos: Vec<&str> = batch.iter().map(|p| p.apelido().as_ref()).collect();
                    let nomes: Vec<&str> = batch.iter().map(|p| p.nome().as_ref()).collect();
                    let nascimentos: Vec<&str> =
                        batch.iter().map(|p| p.nascimento().as_ref()).collect();
                    let stacks: Vec<Option<String>> = batch
                        .iter()
                        .map(|p| {
                            p.stack()
                                .map(|items| serde_json::to_string(items).expect("text serialises"))
                        })
                        .collect();
                    client
                        .query(
                            &statement,
                            &[&ids, &apelidos, &nomes, &nascimentos, &stacks],
                        )
                        .await?
                }
            };
            rows.iter()
                .map(|row| row.try_get(0).map_err(decode))
                .collect()
        })
        .await
    }

    /// A pooled connection, waiting at most the database timeout for one.
    /// None at all while the probe finds the database gone.
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        let client = match self.reachability.is_down() {
            true => Err(StoreError::ProbeFailed),
            false => self.pool.get().await.map_err(StoreError::from),
        };
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

/// The transaction that inserted the row of a page and the person's id: where the next page
/// starts, readable even when the rest of the row is not.
pub fn page_key(row: &Row) -> Result<PageStart, StoreError> {
    // Every page query starts with insert_xact and the person's columns, in this order.
    Ok((
        row.try_get(0).map_err(decode)?,
        row.try_get(1).map_err(decode)?,
    ))
}

/// The person in a row of a page, borrowing its text, and the transaction that inserted it.
/// A row written behind the API's back may not read as a person: a null stack item, or a
/// date outside `YYYY-MM-DD` (years past 9999 or before Christ).
pub fn stored_person(row: &Row) -> Result<(i64, PersonRef<'_>), StoreError> {
    let read = || -> Result<(i64, PersonRef<'_>), tokio_postgres::Error> {
        let person = PersonRef {
            id: row.try_get(1)?,
            apelido: row.try_get(2)?,
            nome: row.try_get(3)?,
            nascimento: row.try_get(4)?,
            stack: row.try_get(5)?,
        };
        Ok((row.try_get(0)?, person))
    };
    let (insert_xact, person) = read().map_err(decode)?;
    if person.nascimento.len() != "YYYY-MM-DD".len() {
        return Err(decode(format!("nascimento {:?}", person.nascimento)));
    }
    Ok((insert_xact, person))
}

/// The person in a row of [`FIND_SQL`], checked against the rules as a new one would be.
fn pessoa_from_row(row: Row) -> Result<Pessoa, StoreError> {
    let read = || -> Result<(Uuid, PessoaPayload), tokio_postgres::Error> {
        let fields = PessoaPayload {
            apelido: row.try_get("apelido")?,
            nome: row.try_get("nome")?,
            nascimento: row.try_get("nascimento")?,
            stack: row.try_get("stack")?,
        };
        Ok((row.try_get("id")?, fields))
    };
    Pessoa::try_from(read().map_err(decode)?).map_err(decode)
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
