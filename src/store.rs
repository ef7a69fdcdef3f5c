//! PostgreSQL access: the connection pool, the schema, and the queries.
//!
//! Every call is bounded by the configured database timeout, so a database that is down or
//! stuck turns into a quick [`StoreError::Unavailable`] (a `503`), never a hung request. The
//! database itself cancels a statement that runs past the timeout (`statement_timeout`), so a
//! write answered `503` for being slow was rolled back, not committed behind the client's back;
//! the client gives up on its own only a moment later, when the database does not answer at all.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use crate::config::Settings;
use crate::domain::Pessoa;

/// The schema, embedded so the binary needs no files beside it.
const SCHEMA: &str = include_str!("../sql/schema.sql");

/// Any number works as long as every replica uses the same one.
const SCHEMA_LOCK_KEY: i64 = 0x0072_696e_6861; // "rinha"

pub const SEARCH_LIMIT: i64 = 50;

/// How long past its statement timeout the database may take to report the cancellation.
const UNANSWERED_GRACE: Duration = Duration::from_secs(1);

/// The columns of a person, in the API's order.
macro_rules! person_columns {
    () => {
        "id, apelido, nome, to_char(nascimento, 'YYYY-MM-DD') AS nascimento, stack"
    };
}

const FIND_SQL: &str = concat!("SELECT ", person_columns!(), " FROM pessoas WHERE id = $1");

/// `$1` is a [`like_pattern`], `$2` the limit. Public so tests can check its plan.
pub const SEARCH_SQL: &str = concat!(
    "SELECT ",
    person_columns!(),
    " FROM pessoas",
    " WHERE busca ILIKE $1",
    " AND (apelido ILIKE $1 OR nome ILIKE $1",
    " OR EXISTS (SELECT 1 FROM unnest(stack) AS item WHERE item ILIKE $1))",
    " LIMIT $2"
);

#[derive(Debug)]
pub enum StoreError {
    /// The database did not answer in time, refused the connection, or dropped it.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "database unavailable: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    timeout: Duration,
}

impl Store {
    pub fn new(settings: &Settings) -> Result<Store, StoreError> {
        let mut pg_config: tokio_postgres::Config = settings
            .database_url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("DATABASE_URL: {e}")))?;
        pg_config.connect_timeout(settings.db_timeout);
        pg_config.options(format!(
            "-c statement_timeout={}",
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
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Store {
            pool,
            timeout: settings.db_timeout,
        })
    }

    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Applies the schema. Replicas starting together serialise on an advisory lock, so
    /// `CREATE … IF NOT EXISTS` never races with itself.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK_KEY])
                .await
                .map_err(unavailable)?;
            let applied = client.batch_execute(SCHEMA).await.map_err(unavailable);
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK_KEY])
                .await
                .map_err(unavailable)?;
            applied
        })
        .await
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Pessoa>, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(FIND_SQL).await.map_err(unavailable)?;
            let row = client
                .query_opt(&statement, &[&id])
                .await
                .map_err(unavailable)?;
            row.map(pessoa_from_row).transpose()
        })
        .await
    }

    /// Up to [`SEARCH_LIMIT`] people with `term` inside their apelido, nome or one stack item,
    /// case-insensitively. The trigram index on `busca` narrows the candidates; each field is
    /// then checked on its own so that a match never spans two fields.
    pub async fn search(&self, term: &str) -> Result<Vec<Pessoa>, StoreError> {
        // Stored text never holds NUL (validation rejects it), and PostgreSQL refuses it.
        if term.contains('\0') {
            return Ok(Vec::new());
        }
        let pattern = like_pattern(term);
        let client = self.client().await?;
        self.bounded(async {
            let statement = client
                .prepare_cached(SEARCH_SQL)
                .await
                .map_err(unavailable)?;
            let rows = client
                .query(&statement, &[&pattern, &SEARCH_LIMIT])
                .await
                .map_err(unavailable)?;
            rows.into_iter().map(pessoa_from_row).collect()
        })
        .await
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client
                .prepare_cached("SELECT count(*) FROM pessoas")
                .await
                .map_err(unavailable)?;
            let row = client
                .query_one(&statement, &[])
                .await
                .map_err(unavailable)?;
            Ok(row.get::<_, i64>(0))
        })
        .await
    }

    /// Inserts `batch` in one statement and one transaction, skipping people whose apelido is
    /// taken (by an earlier row or by another row of the same batch). Returns the ids inserted.
    pub async fn insert_batch(&self, batch: &[&Pessoa]) -> Result<HashSet<Uuid>, StoreError> {
        let ids: Vec<Uuid> = batch.iter().map(|p| p.id).collect();
        let apelidos: Vec<&str> = batch.iter().map(|p| p.apelido.as_str()).collect();
        let nomes: Vec<&str> = batch.iter().map(|p| p.nome.as_str()).collect();
        let nascimentos: Vec<&str> = batch.iter().map(|p| p.nascimento.as_str()).collect();
        // A batch of arrays cannot travel as a two-dimensional array (rows differ in length and
        // unnest would flatten it), so each stack travels as JSON text.
        let stacks: Vec<Option<String>> = batch
            .iter()
            .map(|p| {
                p.stack
                    .as_ref()
                    .map(|s| serde_json::Value::from(s.clone()).to_string())
            })
            .collect();
        let buscas: Vec<String> = batch.iter().map(|p| p.search_text()).collect();
        let client = self.client().await?;
        self.bounded(async {
            let statement = client
                .prepare_cached(
                    "INSERT INTO pessoas (id, apelido, nome, nascimento, stack, busca) \
                     SELECT id, apelido, nome, nascimento::date, \
                            CASE WHEN stack IS NULL THEN NULL ELSE ARRAY( \
                                SELECT item FROM jsonb_array_elements_text(stack::jsonb) \
                                    WITH ORDINALITY AS items(item, position) \
                                ORDER BY position) END, \
                            busca \
                     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                          AS input(id, apelido, nome, nascimento, stack, busca) \
                     ON CONFLICT (apelido) DO NOTHING \
                     RETURNING id",
                )
                .await
                .map_err(unavailable)?;
            let rows = client
                .query(
                    &statement,
                    &[&ids, &apelidos, &nomes, &nascimentos, &stacks, &buscas],
                )
                .await
                .map_err(unavailable)?;
            Ok(rows.iter().map(|row| row.get::<_, Uuid>(0)).collect())
        })
        .await
    }

    /// Merges the search index's pending list into the index proper, so that searches need not
    /// read through it and no INSERT has to merge it on a request's time.
    pub async fn merge_search_index(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            client
                .execute("SELECT gin_clean_pending_list('pessoas_busca_trgm')", &[])
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    /// A pooled connection, waiting at most the database timeout for one.
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// Runs `operation`, giving up when the database has not answered shortly after its own
    /// statement timeout should have.
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.timeout + UNANSWERED_GRACE;
        tokio::time::timeout(limit, operation)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "no answer within {limit:?}"
                )))
            })
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn pessoa_from_row(row: Row) -> Result<Pessoa, StoreError> {
    let read = || -> Result<Pessoa, tokio_postgres::Error> {
        Ok(Pessoa {
            id: row.try_get("id")?,
            apelido: row.try_get("apelido")?,
            nome: row.try_get("nome")?,
            nascimento: row.try_get("nascimento")?,
            stack: row.try_get("stack")?,
        })
    };
    read().map_err(unavailable)
}

/// A LIKE pattern matching `term` anywhere, with `%`, `_` and `\` standing for themselves.
pub fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("rust"), "%rust%");
        assert_eq!(like_pattern("50%"), "%50\\%%");
        assert_eq!(like_pattern("a_b"), "%a\\_b%");
        assert_eq!(like_pattern("c:\\x"), "%c:\\\\x%");
        assert_eq!(like_pattern(""), "%%");
    }
}
