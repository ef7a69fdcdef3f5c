//! The filter of pieces `rinha index-search` saves (see `pessoas_pedacos` in
//! `sql/schema.sql`), as bytes, with the snapshot it was made under.

use super::queries::Snapshot;
use super::{Store, StoreError, decode};

/// Bytes per row of `pessoas_pedacos`.
const PART_BYTES: usize = 1 << 20;

/// Rows of `pessoas_pedacos` read by one statement.
const PARTS_PER_STATEMENT: i64 = 16;

impl Store {
    /// The filter saved last and its snapshot, if one was saved. Read a few parts a statement,
    /// each well inside the database timeout even at 0.45 CPU, then the snapshot again: a save
    /// in between changes it, and the reading starts over.
    pub(crate) async fn saved_filter(&self) -> Result<Option<(Snapshot, Vec<u8>)>, StoreError> {
        loop {
            let Some(seen) = self.filter_snapshot().await? else {
                return Ok(None);
            };
            let mut bytes = Vec::new();
            let mut first = 0;
            loop {
                let rows = self
                    .rows(
                        "SELECT bits FROM pessoas_pedacos WHERE parte >= $1 ORDER BY parte \
                         LIMIT $2",
                        &[&first, &PARTS_PER_STATEMENT],
                    )
                    .await?;
                for row in &rows {
                    bytes.extend_from_slice(row.try_get::<_, &[u8]>(0).map_err(decode)?);
                }
                if (rows.len() as i64) < PARTS_PER_STATEMENT {
                    break;
                }
                first += PARTS_PER_STATEMENT as i32;
            }
            let still = self.filter_snapshot().await?;
            if still.as_ref().map(|s| (s.xmax, &s.in_progress))
                == Some((seen.xmax, &seen.in_progress))
            {
                return Ok(Some((seen, bytes)));
            }
        }
    }

    async fn filter_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let rows = self
            .rows(
                "SELECT snapshot_xmax, in_progress FROM pessoas_pedacos_visto",
                &[],
            )
            .await?;
        rows.first()
            .map(|row| {
                Ok(Snapshot {
                    xmax: row.try_get(0).map_err(decode)?,
                    in_progress: row.try_get(1).map_err(decode)?,
                })
            })
            .transpose()
    }

    /// Saves `bytes` as the filter made under `seen`, in place of any saved before.
    pub(crate) async fn save_filter(
        &self,
        seen: &Snapshot,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        self.bounded(async {
            let transaction = client.transaction().await?;
            transaction
                .batch_execute("DELETE FROM pessoas_pedacos; DELETE FROM pessoas_pedacos_visto")
                .await?;
            for (part, bits) in bytes.chunks(PART_BYTES).enumerate() {
                let part = i32::try_from(part).expect("fewer than 2^31 parts");
                transaction
                    .execute(
                        "INSERT INTO pessoas_pedacos (parte, bits) VALUES ($1, $2)",
                        &[&part, &bits],
                    )
                    .await?;
            }
            transaction
                .execute(
                    "INSERT INTO pessoas_pedacos_visto (snapshot_xmax, in_progress) VALUES ($1, $2)",
                    &[&seen.xmax, &seen.in_progress],
                )
                .await?;
            Ok(transaction.commit().await?)
        })
        .await
    }
}
