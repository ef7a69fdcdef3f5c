//! The statements, and the calls that run them: lookups, the pages and catch-ups the mirror
//! reads, the count, and the inserts of the group commit.

use std::collections::HashSet;

use futures_util::TryStreamExt;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::rows::{self, PersonRow};
use super::{Store, StoreError, decode};
use crate::domain::Pessoa;

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
/// transaction older than `$3` but none of `$5`, at most `$4` of them: the rows a snapshot with
/// `xmax` `$3` and the transactions `$5` in progress saw committed, and no others, even when `$5`
/// have committed since. Public so tests can check its plan.
pub const PAGE_SQL: &str = concat!(
    "SELECT ",
    person_columns!(),
    " FROM pessoas WHERE (insert_xact, id) > ($1, $2) AND insert_xact < $3 \
     AND insert_xact <> ALL($5) ORDER BY insert_xact, id LIMIT $4"
);

/// How many people from `($1, $2)` on in (insert_xact, id) order a snapshot with `xmax` `$3` and
/// the transactions `$4` in progress saw committed (see [`PAGE_SQL`]): those a full mirror
/// leaves out at load, counted through the index alone.
const COUNT_FROM_SQL: &str = "SELECT count(*) FROM pessoas \
     WHERE (insert_xact, id) >= ($1, $2) AND insert_xact < $3 AND insert_xact <> ALL($4)";

/// Up to `$5` people whose searchable text (`pessoas_busca`, see `sql/schema.sql`) is LIKE
/// `$1`, `$2` and `$3` (each a trigram, through the trigram index of `sql/search-index.sql`) and
/// LIKE `$4`, the whole term, checked on the rows those leave: the concatenation hides it from
/// the index, which would read every one of its trigrams' lists otherwise. Public so tests can
/// check its plan.
pub const SEARCH_SQL: &str = concat!(
    "SELECT ",
    person_columns!(),
    " FROM pessoas WHERE pessoas_busca(apelido, nome, stack) LIKE $1 \
     AND pessoas_busca(apelido, nome, stack) LIKE $2 \
     AND pessoas_busca(apelido, nome, stack) LIKE $3 \
     AND pessoas_busca(apelido, nome, stack) || '' LIKE $4 LIMIT $5"
);

/// The people listed under each of the grams `$1` (see `index::grams`).
const GRAM_LISTS_SQL: &str = "SELECT grama, ids FROM pessoas_gramas WHERE grama = ANY($1)";

/// Lists the people `$2` under the grams `$1` (parallel arrays, in gram order, as the writers
/// take the lists' locks), each list merged with what it holds, no person twice.
const LIST_GRAMS_SQL: &str = "INSERT INTO pessoas_gramas AS list (grama, ids) \
     SELECT grama, array_agg(id) FROM unnest($1::text[], $2::uuid[]) AS new(grama, id) \
     GROUP BY grama ORDER BY grama \
     ON CONFLICT (grama) DO UPDATE \
     SET ids = ARRAY(SELECT DISTINCT unnest(list.ids || excluded.ids))";

/// The people with the ids `$1`.
const FIND_MANY_SQL: &str = concat!(
    "SELECT ",
    person_columns!(),
    " FROM pessoas WHERE id = ANY($1)"
);

/// One person; an apelido already taken inserts nothing and returns no row.
const INSERT_ONE_SQL: &str = "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
     VALUES ($1, $2, $3, $4::text::date, $5) \
     ON CONFLICT (apelido) DO NOTHING \
     RETURNING id";

/// Several people, as parallel arrays. A batch of arrays cannot travel as a two-dimensional
/// array (rows differ in length and unnest would flatten it), so each stack travels as JSON
/// text. An apelido taken, by an earlier row or one earlier in the batch, inserts nothing.
macro_rules! insert_batch {
    () => {
        "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
         SELECT id, apelido, nome, nascimento::date, \
                CASE WHEN stack IS NULL THEN NULL ELSE ARRAY( \
                    SELECT item FROM jsonb_array_elements_text(stack::jsonb) \
                        WITH ORDINALITY AS items(item, position) \
                    ORDER BY position) END \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) \
              AS input(id, apelido, nome, nascimento, stack) \
         ON CONFLICT (apelido) DO NOTHING \
         RETURNING id"
    };
}

const INSERT_BATCH_SQL: &str = insert_batch!();

/// [`INSERT_BATCH_SQL`], and in the same statement the grams `$6` of the people `$7` (parallel
/// arrays; see `index::grams`) listed under each gram whose list holds fewer than `$8` people,
/// for the people inserted only: a person stored is listed with it or not at all. Every insert
/// comes first (the sort waits for them all), then the grams in order, so that two statements
/// filing the same grams wait on each other instead of deadlocking. Returns the ids inserted,
/// then each gram whose list took them, with the number of people it now lists.
const INSERT_BATCH_LISTING_SQL: &str = concat!(
    "WITH inserted AS (",
    insert_batch!(),
    "), listed AS ( \
         INSERT INTO pessoas_gramas AS list (grama, ids) \
         SELECT grama, array_agg(id) FROM unnest($6::text[], $7::uuid[]) AS new(grama, id) \
         WHERE id IN (SELECT id FROM inserted) GROUP BY grama ORDER BY grama \
         ON CONFLICT (grama) DO UPDATE SET ids = list.ids || excluded.ids \
         WHERE cardinality(list.ids) < $8 \
         RETURNING grama, cardinality(ids) AS people) \
     SELECT id, NULL::text AS grama, NULL::int AS people FROM inserted \
     UNION ALL SELECT NULL, grama, people FROM listed"
);

/// What a batch's insert did.
#[derive(Debug, Default)]
pub struct Inserted {
    /// The people inserted: the others' apelidos were taken.
    pub ids: HashSet<Uuid>,
    /// The grams given whose lists are known to be full: those that listed the limit already,
    /// or reached it with these people.
    pub(crate) full: Vec<String>,
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

    /// Up to `limit` people after `start` in (insert_xact, id) order that `seen` saw committed
    /// (see [`PAGE_SQL`]), as rows for `rows::person`.
    pub(crate) async fn page_rows(
        &self,
        start: PageStart,
        seen: &Snapshot,
        limit: i64,
    ) -> Result<Vec<Row>, StoreError> {
        let parameters: [&(dyn ToSql + Sync); 5] =
            [&start.0, &start.1, &seen.xmax, &limit, &seen.in_progress];
        self.rows(PAGE_SQL, &parameters).await
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

    /// Gives `each` the rows of up to `limit` people after `start` in (insert_xact, id) order
    /// that `seen` saw committed (see [`PAGE_SQL`]), as they arrive, for `rows::person`, until
    /// it returns false. Returns how many rows it was given. Rows are handled while the next
    /// ones travel, and a page is never held whole.
    pub(crate) async fn page(
        &self,
        start: PageStart,
        seen: &Snapshot,
        limit: i64,
        mut each: impl FnMut(&Row) -> Result<bool, StoreError>,
    ) -> Result<i64, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(PAGE_SQL).await?;
            let parameters: [&(dyn ToSql + Sync); 5] =
                [&start.0, &start.1, &seen.xmax, &limit, &seen.in_progress];
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

    /// Up to `limit` people whose searchable text is LIKE each of `narrowing` (up to three
    /// trigrams, at least one, as `%abc%`) and LIKE `pattern` (see [`SEARCH_SQL`]), as rows for
    /// `rows::person`. At most a share of the pool searches at once (see `searches`).
    pub(crate) async fn search(
        &self,
        narrowing: &[String],
        pattern: &str,
        limit: i64,
    ) -> Result<Vec<Row>, StoreError> {
        let narrowing = |n: usize| narrowing.get(n).or(narrowing.first()).map(String::as_str);
        let (first, second, third) = (narrowing(0), narrowing(1), narrowing(2));
        let _permit = self.search_permit().await?;
        let client = self.client().await?;
        self.bounded(async {
            // Unnamed, so planned each time for these patterns: a plan kept for any pattern
            // cannot know that a rare one is a handful of entries of the trigram index.
            let parameters: [&(dyn ToSql + Sync); 5] = [&first, &second, &third, &pattern, &limit];
            Ok(client.query(SEARCH_SQL, &parameters).await?)
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

    /// The people listed under each of `grams` that has a list (see [`GRAM_LISTS_SQL`]).
    pub(crate) async fn gram_lists(
        &self,
        grams: &[String],
    ) -> Result<Vec<(String, Vec<Uuid>)>, StoreError> {
        let rows = self.rows(GRAM_LISTS_SQL, &[&grams]).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(decode)
    }

    /// Lists each person under its gram (see [`LIST_GRAMS_SQL`]); `pairs` are in gram order.
    pub(crate) async fn list_grams(&self, pairs: &[(String, Uuid)]) -> Result<(), StoreError> {
        let (grams, ids): (Vec<&str>, Vec<Uuid>) =
            pairs.iter().map(|(gram, id)| (gram.as_str(), *id)).unzip();
        self.rows(LIST_GRAMS_SQL, &[&grams, &ids]).await?;
        Ok(())
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

    /// Inserts `batch` in one statement and one transaction, skipping people whose apelido is
    /// taken (by an earlier row or by another row of the same batch), and lists each inserted
    /// person under the grams `listing` gives for it, where a list holds fewer than `limit`.
    ///
    /// A batch of one with nothing to list, which is nearly every batch unless the database
    /// falls behind, has a statement of its own: without the unnest and the JSON of the batch
    /// form, a transaction of one person costs PostgreSQL about a quarter less CPU (pgbench,
    /// commit included: 90-106 µs against 127-130).
    ///
    /// When the answer is lost (the connection dropped after the statement was sent), the
    /// outcome is settled by looking the batch's ids up: they are made afresh for each
    /// request, so any of them stored means the batch committed, and the others' apelidos were
    /// taken. None stored is answered as the failure it was.
    pub async fn insert_batch(
        &self,
        batch: &[&Pessoa],
        listing: &[(String, Uuid)],
        limit: usize,
    ) -> Result<Inserted, StoreError> {
        match self.insert_batch_once(batch, listing, limit).await {
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
                        Ok(Inserted {
                            ids: stored,
                            full: Vec::new(),
                        })
                    }
                    _ => Err(error),
                }
            }
            result => result,
        }
    }

    /// The ids among `ids` that are stored.
    async fn stored_among(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
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

    async fn insert_batch_once(
        &self,
        batch: &[&Pessoa],
        listing: &[(String, Uuid)],
        limit: usize,
    ) -> Result<Inserted, StoreError> {
        let client = self.client().await?;
        self.bounded(async {
            if let ([pessoa], []) = (batch, listing) {
                let statement = client.prepare_cached(INSERT_ONE_SQL).await?;
                let stack: Option<Vec<&str>> = pessoa
                    .stack()
                    .map(|items| items.iter().map(AsRef::as_ref).collect());
                let parameters: [&(dyn ToSql + Sync); 5] = [
                    &pessoa.id(),
                    &pessoa.apelido().as_ref(),
                    &pessoa.nome().as_ref(),
                    &pessoa.nascimento().as_ref(),
                    &stack,
                ];
                let rows = client.query(&statement, &parameters).await?;
                let ids: Result<HashSet<Uuid>, _> = rows.iter().map(|row| row.try_get(0)).collect();
                return Ok(Inserted {
                    ids: ids.map_err(decode)?,
                    full: Vec::new(),
                });
            }
            let ids: Vec<Uuid> = batch.iter().map(|p| p.id()).collect();
            let apelidos: Vec<&str> = batch.iter().map(|p| p.apelido().as_ref()).collect();
            let nomes: Vec<&str> = batch.iter().map(|p| p.nome().as_ref()).collect();
            let nascimentos: Vec<&str> = batch.iter().map(|p| p.nascimento().as_ref()).collect();
            let stacks: Vec<Option<String>> = batch
                .iter()
                .map(|p| {
                    p.stack()
                        .map(|items| serde_json::to_string(items).expect("text serialises"))
                })
                .collect();
            let mut parameters: Vec<&(dyn ToSql + Sync)> =
                vec![&ids, &apelidos, &nomes, &nascimentos, &stacks];
            if listing.is_empty() {
                let statement = client.prepare_cached(INSERT_BATCH_SQL).await?;
                let rows = client.query(&statement, &parameters).await?;
                let ids: Result<HashSet<Uuid>, _> = rows.iter().map(|row| row.try_get(0)).collect();
                return Ok(Inserted {
                    ids: ids.map_err(decode)?,
                    full: Vec::new(),
                });
            }
            let (grams, people): (Vec<&str>, Vec<Uuid>) = listing
                .iter()
                .map(|(gram, id)| (gram.as_str(), *id))
                .unzip();
            let limit = i32::try_from(limit).unwrap_or(i32::MAX);
            parameters.extend([&grams as &(dyn ToSql + Sync), &people, &limit]);
            let statement = client.prepare_cached(INSERT_BATCH_LISTING_SQL).await?;
            let rows = client.query(&statement, &parameters).await?;
            listed(&rows, listing, limit).map_err(decode)
        })
        .await
    }
}

/// What [`INSERT_BATCH_LISTING_SQL`] did with `listing`: a gram of a person inserted whose list
/// did not take it was full already.
fn listed(
    rows: &[Row],
    listing: &[(String, Uuid)],
    limit: i32,
) -> Result<Inserted, tokio_postgres::Error> {
    let mut inserted = Inserted::default();
    let mut open = HashSet::new();
    for row in rows {
        match row.try_get::<_, Option<String>>(1)? {
            None => {
                inserted.ids.insert(row.try_get(0)?);
            }
            Some(gram) => {
                if row.try_get::<_, i32>(2)? < limit {
                    open.insert(gram);
                }
            }
        }
    }
    let mut full: Vec<String> = listing
        .iter()
        .filter(|(gram, id)| inserted.ids.contains(id) && !open.contains(gram))
        .map(|(gram, _)| gram.clone())
        .collect();
    full.sort_unstable();
    full.dedup();
    inserted.full = full;
    Ok(inserted)
}
