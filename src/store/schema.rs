//! Applying `sql/schema.sql`, once the database answers, and building the search index of
//! `sql/search-index.sql` when told to.

use std::time::{Duration, Instant};

use super::{Store, StoreError};

/// The schema, embedded so the binary needs no files beside it.
const SCHEMA: &str = include_str!("../../sql/schema.sql");

/// The search index's statements, each run on its own (`CREATE INDEX CONCURRENTLY` cannot run
/// in a transaction, which several statements sent at once would make).
const SEARCH_INDEX: &str = include_str!("../../sql/search-index.sql");

/// Any number works as long as every replica uses the same one. Public so tests can contend
/// for it.
pub const SCHEMA_LOCK_KEY: i64 = 0x0072_696e_6861; // "rinha"

/// How long a starting replica waits for its database before giving up.
const DATABASE_WAIT: Duration = Duration::from_secs(30);

impl Store {
    /// Applies the schema, unless it is the one applied last. Applying it takes locks that wait
    /// for every write in progress (`CREATE INDEX IF NOT EXISTS` takes its lock on the table
    /// before it finds the index there), so a replica that applied it each time could not start
    /// while a transaction that wrote a person stayed open. Replicas starting together
    /// serialise on an advisory lock, so `CREATE … IF NOT EXISTS` never races with itself. The
    /// lock belongs to the transaction, so it ends with it however the migration ends: a session
    /// lock taken and released by two statements stayed held, on a pooled connection, when the
    /// timeout fell between them.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        self.bounded(async {
            let recorded: bool = client
                .query_one("SELECT to_regclass('rinha_schema') IS NOT NULL", &[])
                .await?
                .try_get(0)
                .map_err(super::decode)?;
            if recorded {
                let applied = client
                    .query_opt("SELECT applied FROM rinha_schema", &[])
                    .await?;
                let applied: Option<String> = applied
                    .map(|row| row.try_get(0))
                    .transpose()
                    .map_err(super::decode)?;
                if applied.as_deref() == Some(SCHEMA) {
                    return Ok(());
                }
            }
            let transaction = client.transaction().await?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
                .await?;
            transaction.batch_execute(SCHEMA).await?;
            transaction
                .execute(
                    "INSERT INTO rinha_schema (applied) VALUES ($1) \
                     ON CONFLICT (one) DO UPDATE SET applied = excluded.applied",
                    &[&SCHEMA],
                )
                .await?;
            Ok(transaction.commit().await?)
        })
        .await
    }

    /// Applies the schema, trying again for up to 30 s while the database is not up yet.
    pub(crate) async fn migrate_when_ready(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            match self.migrate().await {
                Ok(()) => return Ok(()),
                Err(error) if started.elapsed() < DATABASE_WAIT => {
                    tracing::info!(
                        error = &error as &dyn std::error::Error,
                        "waiting for the database"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Builds the search index (`sql/search-index.sql`) over the rows of transactions before
    /// `xmax`, taking as long as it needs. A build that failed midway (its session ended, say)
    /// left an invalid index behind, which `IF NOT EXISTS` would keep: every invalid one is
    /// dropped first.
    pub(crate) async fn create_search_index(&self, xmax: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        // Room to sort the index's entries in memory: the database's settings leave 64 MB to
        // each maintenance task, for a vacuum beside the service's work; this is a one-off.
        client
            .batch_execute("SET statement_timeout = 0; SET maintenance_work_mem = '256MB'")
            .await?;
        for invalid in self.search_indexes(&client, "NOT indisvalid").await? {
            tracing::info!("dropping {invalid}, which an earlier build left invalid");
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY {invalid}"))
                .await?;
        }
        let sql = SEARCH_INDEX.replace("{xmax}", &xmax.to_string());
        for statement in statements(&sql) {
            client.batch_execute(&statement).await?;
        }
        Ok(())
    }

    /// Drops the search indexes but the one over the rows before `xmax`.
    pub(crate) async fn drop_older_search_indexes(&self, xmax: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.batch_execute("SET statement_timeout = 0").await?;
        let kept = format!("pessoas_busca_{xmax}");
        for older in self.search_indexes(&client, "true").await? {
            if older != kept {
                tracing::info!("dropping {older}, the search index of an earlier run");
                client
                    .batch_execute(&format!("DROP INDEX CONCURRENTLY {older}"))
                    .await?;
            }
        }
        Ok(())
    }

    /// The names of the search indexes on `pessoas` for which `condition` on `pg_index` holds:
    /// `pessoas_busca_{xmax}`, and the `pessoas_busca_trgm_{xmax}` of earlier releases, one
    /// column over the whole text, which a run drops as older.
    async fn search_indexes(
        &self,
        client: &deadpool_postgres::Client,
        condition: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = client
            .query(
                &format!(
                    "SELECT indexrelid::regclass::text FROM pg_index \
                     WHERE indrelid = 'pessoas'::regclass AND {condition} \
                     AND indexrelid::regclass::text LIKE 'pessoas\\_busca\\_%'"
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(super::decode))
            .collect()
    }
}

/// The statements of `sql`, comment lines left out: each ends with a `;` at the end of a line.
fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split_inclusive(";\n")
        .map(|statement| statement.trim().to_owned())
        .filter(|statement| !statement.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_index_is_built_one_statement_at_a_time() {
        let statements = statements(SEARCH_INDEX);
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(statements[0].starts_with("CREATE EXTENSION"));
        assert!(statements[1].starts_with("CREATE INDEX CONCURRENTLY"));
        assert!(statements[1].ends_with("WHERE insert_xact < {xmax};"));
    }
}
