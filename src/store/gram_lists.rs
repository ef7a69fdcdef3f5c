//! The grams' lists (`pessoas_gramas`, `pessoas_gramas_espaco` in `sql/schema.sql`): read by a
//! replica's searches past its mirror, written by `rinha index-search`.

use uuid::Uuid;

use super::{Store, StoreError, decode};

/// The people listed under each of the grams `$1` (see `index::grams`).
const GRAM_LISTS_SQL: &str = "SELECT grama, ids FROM pessoas_gramas WHERE grama = ANY($1)";

/// Lists the people `$2` under the grams `$1` (parallel arrays, in gram order, as the writers
/// take the lists' locks), each list merged with what it holds, no person twice.
const LIST_GRAMS_SQL: &str = "INSERT INTO pessoas_gramas AS list (grama, ids) \
     SELECT grama, array_agg(id) FROM unnest($1::text[], $2::uuid[]) AS new(grama, id) \
     GROUP BY grama ORDER BY grama \
     ON CONFLICT (grama) DO UPDATE \
     SET ids = ARRAY(SELECT DISTINCT unnest(list.ids || excluded.ids))";

/// The list of the spaced gram `$1` made under a snapshot whose `xmax` is `$2` or later, with the
/// row of the empty gram that says they are all written (see `pessoas_gramas_espaco`).
const SPACED_GRAM_LIST_SQL: &str = "SELECT grama, ids FROM pessoas_gramas_espaco \
     WHERE grama IN ($1, '') AND antes >= $2";

/// Lists the people `$2` under the spaced grams `$1` (parallel arrays, in gram order) for the
/// snapshot whose `xmax` is `$3`: a list of an earlier snapshot is replaced, one of this snapshot
/// (begun by the statement before) extended.
const LIST_SPACED_GRAMS_SQL: &str = "INSERT INTO pessoas_gramas_espaco AS list (grama, ids, antes) \
     SELECT grama, array_agg(id), $3 FROM unnest($1::text[], $2::uuid[]) AS new(grama, id) \
     GROUP BY grama ORDER BY grama \
     ON CONFLICT (grama) DO UPDATE SET antes = excluded.antes, \
     ids = CASE WHEN list.antes = excluded.antes THEN list.ids || excluded.ids \
     ELSE excluded.ids END";

/// Says the spaced grams' lists of the snapshot whose `xmax` is `$1` are all written.
const SPACED_GRAMS_LISTED_SQL: &str = "INSERT INTO pessoas_gramas_espaco (grama, ids, antes) \
     VALUES ('', '{}', $1) ON CONFLICT (grama) DO UPDATE SET antes = excluded.antes";

impl Store {
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

    /// The people listed under the spaced `gram` for the snapshot whose `xmax` is `before` or a
    /// later one (none if it has no list), or None if no such snapshot's lists are all written
    /// (see [`SPACED_GRAM_LIST_SQL`]).
    pub(crate) async fn spaced_gram_list(
        &self,
        gram: &str,
        before: i64,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let rows = self.rows(SPACED_GRAM_LIST_SQL, &[&gram, &before]).await?;
        let mut written = false;
        let mut list = Vec::new();
        for row in &rows {
            let listed: &str = row.try_get(0).map_err(decode)?;
            if listed.is_empty() {
                written = true;
            } else {
                list = row.try_get(1).map_err(decode)?;
            }
        }
        Ok(written.then_some(list))
    }

    /// Lists each person under its spaced gram for the snapshot whose `xmax` is `before` (see
    /// [`LIST_SPACED_GRAMS_SQL`]); `pairs` are in gram order.
    pub(crate) async fn list_spaced_grams(
        &self,
        pairs: &[(String, Uuid)],
        before: i64,
    ) -> Result<(), StoreError> {
        let (grams, ids): (Vec<&str>, Vec<Uuid>) =
            pairs.iter().map(|(gram, id)| (gram.as_str(), *id)).unzip();
        self.rows(LIST_SPACED_GRAMS_SQL, &[&grams, &ids, &before])
            .await?;
        Ok(())
    }

    /// Says the spaced grams' lists of the snapshot whose `xmax` is `before` are all written.
    pub(crate) async fn spaced_grams_listed(&self, before: i64) -> Result<(), StoreError> {
        self.rows(SPACED_GRAMS_LISTED_SQL, &[&before]).await?;
        Ok(())
    }
}
