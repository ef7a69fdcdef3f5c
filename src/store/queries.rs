//! The statements that read, and the calls that run them: lookups, the pages and catch-ups the
//! mirror reads, its counts, and the searches past it. The inserts are in `inserts`.

use futures_util::TryStreamExt;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::rows::{self, PersonRow};
use super::{Store, StoreError, decode};

/// The columns every query that reads people starts with: the transaction that inserted the
/// row, then the person's fields in the API's order (see `rows::person`).
macro_rules! person_columns {
    () => {
        // The date as text, `YYYY-MM-DD` under the session's ISO DateStyle (see `Store::new`):
        // `to_char` would cost PostgreSQL three times as much a row.
        "insert_xact, id, apelido, nome, nascimento::text AS nascimento, stack"
    };
}

/// The snapshot of the statement: the first transaction not yet begun (`xmax`), and those before
/// it that were running (`in_progress`). A transaction
/// older than `xmax` and not in progress had finished: its rows, if committed, were visible.
macro_rules! snapshot_columns {
    () => {
        "pg_snapshot_xmax(snapshot)::text::bigint AS xmax, \
         ARRAY(SELECT pg_snapshot_xip(snapshot)::text::bigint) AS in_progress \
         FROM pg_current_snapshot() AS snapshot"
    };
}

const FIND_SQL: &str = concat!("SELECT ", person_columns!(), " FROM pessoas WHERE id = $1");

/// The snapshot of this statement (see `snapshot_columns!`).
const SNAPSHOT_SQL: &str = concat!("SELECT ", snapshot_columns!());

/// A catch-up's first statement, in one round trip: the rows of the transactions `$1` (those
/// in progress at the last catch-up), then those of transactions from `$2` on (the last
/// catch-up's `xmax`), each in (insert_xact, id) order and at most `$3` of each, as a page has
/// them, followed by a flag telling the former, and, on every row, this statement's snapshot
/// (see `snapshot_columns!`). The outer join yields the snapshot even with no rows. Public so
/// tests can check its plan.
pub const CATCH_UP_SQL: &str = concat!(
    "WITH snapshot AS (SELECT ",
    snapshot_columns!(),
    ") SELECT added.*, snapshot.* FROM snapshot LEFT JOIN (\
         (SELECT ",
    person_columns!(),
    ", true AS of_in_progress FROM pessoas WHERE insert_xact = ANY($1) \
          ORDER BY insert_xact, id LIMIT $3) \
         UNION ALL \
         (SELECT ",
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
    "SELECT ",
    person_columns!(),
    " FROM pessoas WHERE insert_xact = ANY($1) AND (insert_xact, id) > ($2, $3) \
     ORDER BY insert_xact, id LIMIT $4"
);

/// One page of people in (insert_xact, id) order: those after `($1, $2)` and inserted by a
/// transaction older than `$3`, at most `$4` of them. The caller skips the rows of the
/// transactions its snapshot saw in progress: a condition on them here made PostgreSQL's
/// generic plan sort a bitmap of the whole range rather than walk the index. Public so tests
/// can check its plan.
pub const PAGE_SQL: &str = concat!(
    "SELECT ",
    person_columns!(),
    " FROM pessoas WHERE (insert_xact, id) > ($1, $2) AND insert_xact < $3 \
     ORDER BY insert_xact, id LIMIT $4"
);

/// How many people from `($1, $2)` on in (insert_xact, id) order a snapshot with `xmax` `$3` and
/// the transactions `$4` in progress saw committed: those a mirror leaves out at load, counted
/// through the index alone.
const COUNT_FROM_SQL: &str = "SELECT count(*) FROM pessoas \
     WHERE (insert_xact, id) >= ($1, $2) AND insert_xact < $3 AND insert_xact <> ALL($4)";

/// Up to `$8` people inserted by transactions before `$9` whose searchable text matches `$7`,
/// the term's regular expression: first those whose apelido and nome (`pessoas_busca_nomes`,
/// see `sql/schema.sql`) match the expressions `$1`, `$2` and `$3`, then those whose stack
/// (`pessoas_busca_stack`) matches `$4`, `$5` and `$6` and whose names do not match the term. Those
/// are a few trigrams each, found through the trigram index of `sql/search-index.sql` over those
/// rows; the term is checked on the rows they leave, the concatenation hiding it from the index,
/// which would read every one of its trigrams' lists otherwise. Public so tests can check its
/// plan.
pub const SEARCH_SQL: &str = concat!(
    "SELECT ",
    person_columns!(),
    " FROM pessoas WHERE insert_xact < $9 \
     AND pessoas_busca_nomes(apelido, nome) ~ $1 \
     AND pessoas_busca_nomes(apelido, nome) ~ $2 \
     AND pessoas_busca_nomes(apelido, nome) ~ $3 \
     AND pessoas_busca_nomes(apelido, nome) || '' ~ $7 \
     UNION ALL SELECT ",
    person_columns!(),
    " FROM pessoas WHERE insert_xact < $9 \
     AND pessoas_busca_stack(stack) ~ $4 \
     AND pessoas_busca_stack(stack) ~ $5 \
     AND pessoas_busca_stack(stack) ~ $6 \
     AND pessoas_busca_stack(stack) || '' ~ $7 \
     AND pessoas_busca_nomes(apelido, nome) || '' !~ $7 \
     LIMIT $8"
);

/// How long the database may take over one search past memory: a term the trigram index cannot
/// narrow down (`q my`: every stack's `MySQL` holds ` my` as pg_trgm reads it) has millions of
/// rows to check, and the search answers with what memory found instead.
const SEARCH_BUDGET_MS: u32 = 250;

/// Up to `$3` people inserted by transactions from `$1` on whose searchable text matches `$2`,
/// read through the (insert_xact, id) index: the rows the search index leaves out.
const SEARCH_FROM_SQL: &str = concat!(
    "SELECT ",
    person_columns!(),
    " FROM pessoas WHERE insert_xact >= $1 \
     AND pessoas_busca(apelido, nome, stack) ~ $2 LIMIT $3"
);

/// The people with the ids `$1`.
const FIND_MANY_SQL: &str = concat!(
    "SELECT ",
    person_columns!(),
    " FROM pessoas WHERE id = ANY($1)"
);

/// The first three of `narrowing`, or the first again in place of those it does not have.
fn three(narrowing: &[String]) -> (Option<&str>, Option<&str>, Option<&str>) {
    let nth = |n: usize| narrowing.get(n).or(narrowing.first()).map(String::as_str);
    (nth(0), nth(1), nth(2))
}

/// Where a page of [`Store::page`] starts: after this (insert_xact, id).
pub(crate) type PageStart = (i64, Uuid);

/// What a statement could see (see `snapshot_columns!`), in full transaction ids, as
/// `insert_xact` holds them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) xmax: i64,
    pub(crate) in_progress: Vec<i64>,
}

/// What a catch-up's first statement returns (see [`CATCH_UP_SQL`]).
pub(crate) struct CatchUpStart {
    pub(crate) snapshot: Snapshot,
    /// The first page of the rows of the transactions in progress at the last catch-up.
    pub(crate) of_in_progress: Vec<Row>,
    /// The first page of the rows of transactions from the last catch-up's `xmax` on.
    pub(crate) newer: Vec<Row>,
}

impl Store {
    /// What `read` makes of the person with this id, if one is stored.
    pub(crate) async fn find<T>(
        &self,
        id: Uuid,
        read: impl FnOnce(PersonRow<'_>) -> T,
    ) -> Result<Option<T>, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(FIND_SQL).await?;
            match client.query_opt(&statement, &[&id]).await? {
                Some(row) => Ok(Some(read(rows::person(&row)?))),
                None => Ok(None),
            }
        })
        .await
    }

    /// A snapshot taken now (see `snapshot_columns!`).
    pub(crate) async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(SNAPSHOT_SQL).await?;
            rows::snapshot(&client.query_one(&statement, &[]).await?)
        })
        .await
    }

    /// A snapshot taken now and the first page of each kind of row a catch-up from `seen`
    /// reads (see [`CATCH_UP_SQL`]), as rows for `rows::person`.
    pub(crate) async fn catch_up_start(
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
            let mut start = CatchUpStart {
                snapshot: rows::snapshot(first)?,
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
    /// transaction older than `before` (see [`PAGE_SQL`]), as rows for `rows::person`.
    pub(crate) async fn page_rows(
        &self,
        start: PageStart,
        before: i64,
        limit: i64,
    ) -> Result<Vec<Row>, StoreError> {
        self.rows(PAGE_SQL, &[&start.0, &start.1, &before, &limit])
            .await
    }

    /// How many people from `start` on in (insert_xact, id) order `seen` saw committed (see
    /// [`COUNT_FROM_SQL`]).
    pub(crate) async fn count_from(
        &self,
        start: PageStart,
        seen: &Snapshot,
    ) -> Result<i64, StoreError> {
        let parameters: [&(dyn ToSql + Sync); 4] =
            [&start.0, &start.1, &seen.xmax, &seen.in_progress];
        let rows = self.rows(COUNT_FROM_SQL, &parameters).await?;
        let row = rows
            .first()
            .ok_or_else(|| decode("count returned no row"))?;
        row.try_get(0).map_err(decode)
    }

    /// Up to `limit` people after `start` in (insert_xact, id) order, inserted by one of the
    /// transactions `in_progress` (see [`IN_PROGRESS_PAGE_SQL`]), as rows for
    /// `rows::person`.
    pub(crate) async fn in_progress_page_rows(
        &self,
        in_progress: &[i64],
        start: PageStart,
        limit: i64,
    ) -> Result<Vec<Row>, StoreError> {
        self.rows(
            IN_PROGRESS_PAGE_SQL,
            &[&in_progress, &start.0, &start.1, &limit],
        )
        .await
    }

    /// The rows of `sql` run with `parameters`.
    pub(super) async fn rows(
        &self,
        sql: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query(&statement, parameters).await?)
        })
        .await
    }

    /// Gives `each` the rows of up to `limit` people after `start` in (insert_xact, id) order,
    /// inserted by transactions older than `before` (see [`PAGE_SQL`]), as they arrive, for
    /// `rows::person`, until it returns false. Returns how many rows it was given. Rows are
    /// handled while the next ones travel, and a page is never held whole.
    pub(crate) async fn page(
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

    /// Up to `limit` people inserted by transactions before `before` whose searchable text
    /// matches `pattern`: those whose names match each of `names` and those whose stack matches
    /// each of `stack` (up to three regular expressions each, at least one; see [`SEARCH_SQL`]),
    /// as rows for `rows::person`.
    pub(crate) async fn search_indexed(
        &self,
        before: i64,
        names: &[String],
        stack: &[String],
        pattern: &str,
        limit: i64,
    ) -> Result<Option<Vec<Row>>, StoreError> {
        let (names, stack) = (three(names), three(stack));
        let parameters: [&(dyn ToSql + Sync); 9] = [
            &names.0, &names.1, &names.2, &stack.0, &stack.1, &stack.2, &pattern, &limit, &before,
        ];
        self.search(SEARCH_SQL, &parameters).await
    }

    /// Up to `limit` people inserted by transactions from `from` on whose searchable text
    /// matches `pattern` (see [`SEARCH_FROM_SQL`]), as rows for `rows::person`.
    pub(crate) async fn search_from(
        &self,
        from: i64,
        pattern: &str,
        limit: i64,
    ) -> Result<Option<Vec<Row>>, StoreError> {
        self.search(SEARCH_FROM_SQL, &[&from, &pattern, &limit])
            .await
    }

    /// The rows of a search, run by at most a share of the pool at once (see `searches`), or
    /// `None` if the database did not find them within [`SEARCH_BUDGET_MS`].
    async fn search(
        &self,
        sql: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Vec<Row>>, StoreError> {
        let _permit = self.search_permit().await?;
        let mut client = self.client().await?;
        self.bounded(async {
            // In a transaction, so that the budget ends with it even if the caller goes away: a
            // transaction dropped unfinished rolls back.
            let transaction = client.transaction().await?;
            let budget = format!("SET LOCAL statement_timeout = {SEARCH_BUDGET_MS}");
            transaction.batch_execute(&budget).await?;
            // Unnamed, so planned each time for these values: a plan kept for any pattern
            // cannot know that a rare one is a handful of entries of the trigram index, nor
            // which search index a bound matches.
            let rows = match transaction.query(sql, parameters).await {
                Ok(rows) => Some(rows),
                Err(error) if error.code() == Some(&SqlState::QUERY_CANCELED) => None,
                Err(error) => return Err(error.into()),
            };
            transaction.rollback().await?;
            Ok(rows)
        })
        .await
    }

    /// About how many people are stored: the planner's estimate, or a count when it has none.
    pub(crate) async fn estimated_people(&self) -> Result<i64, StoreError> {
        let rows = self
            .rows(
                "SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint \
                 ELSE (SELECT count(*) FROM pessoas) END \
                 FROM pg_class WHERE oid = 'pessoas'::regclass",
                &[],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| decode("pg_class has no pessoas"))?;
        row.try_get(0).map_err(decode)
    }

    /// The rows of the people with these ids, as rows for `rows::person`.
    pub(crate) async fn find_many(&self, ids: &[Uuid]) -> Result<Vec<Row>, StoreError> {
        self.rows(FIND_MANY_SQL, &[&ids]).await
    }

    async fn search_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        let permit = tokio::time::timeout(self.timeout, self.searches.acquire()).await;
        Ok(permit
            .map_err(|_| StoreError::TimedOut(self.timeout))?
            .expect("the semaphore is never closed"))
    }
}
