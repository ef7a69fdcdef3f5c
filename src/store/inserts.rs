//! The inserts of the group commit, and the short grams' lists they keep (see `pessoas_gramas`
//! in `sql/schema.sql`).

use std::collections::HashSet;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{Store, StoreError, decode};
use crate::domain::Pessoa;

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

impl Store {
    /// The grams whose lists hold `limit` people or more.
    pub(crate) async fn full_grams(&self, limit: usize) -> Result<HashSet<String>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows = self
            .rows(
                "SELECT grama FROM pessoas_gramas WHERE cardinality(ids) >= $1",
                &[&limit],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(decode))
            .collect()
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
