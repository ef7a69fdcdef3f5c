//! Applying `sql/schema.sql`, once the database answers.

use std::time::{Duration, Instant};

use super::{Store, StoreError};

/// The schema, embedded so the binary needs no files beside it.
const SCHEMA: &str = include_str!("../../sql/schema.sql");

/// Any number works as long as every replica uses the same one. Public so tests can contend
/// for it.
pub const SCHEMA_LOCK_KEY: i64 = 0x0072_696e_6861; // "rinha"

/// How long a starting replica waits for its database before giving up.
const DATABASE_WAIT: Duration = Duration::from_secs(30);

impl Store {
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
}
