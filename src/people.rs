//! The people a replica stores, finds, searches and counts: the one seam the HTTP layer calls.
//! Behind it, the group-commit writers store each new person, the in-memory mirror answers
//! searches and most lookups, and the database the rest. A person is created only once its
//! row has committed, and is then added to this replica's mirror at once, so that the lookup
//! that usually follows its `201` needs no database.

use std::error::Error;
use std::sync::Arc;

use uuid::Uuid;
use validator::ValidationErrors;

use crate::domain::{Pessoa, RejectedPayload};
use crate::metrics::Readings;
use crate::mirror::Mirror;
use crate::store::{Store, StoreError};
use crate::writer::{Outcome, WriteError, Writer};

/// One replica's people; cloned for each request, sharing everything.
#[derive(Clone)]
pub(crate) struct People {
    store: Store,
    mirror: Arc<Mirror>,
    writer: Writer,
    /// The last byte of the ids this replica makes, if set.
    id_slot: Option<u8>,
}

/// A person just stored: its id and its record, as JSON.
pub(crate) struct Created {
    pub(crate) id: Uuid,
    pub(crate) record: Vec<u8>,
}

/// Why [`People`] did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeopleError {
    /// The body is not a person's JSON: malformed, not an object, or of the wrong types.
    #[error(transparent)]
    Malformed(serde_json::Error),
    /// The person's fields break rules: every rule broken, by field.
    #[error(transparent)]
    Invalid(ValidationErrors),
    #[error("apelido: already taken")]
    ApelidoTaken,
    /// The database is out of reach or too slow, or the writers could not take the person in
    /// time: it passes, so worth retrying. Nothing was stored. The store logs an outage once
    /// for all the calls it fails.
    #[error(transparent)]
    Unavailable(Box<dyn Error + Send + Sync>),
    /// A bug: the code and the data disagree (a stored row that breaks the rules, say).
    #[error(transparent)]
    Bug(Box<dyn Error + Send + Sync>),
}

impl From<RejectedPayload> for PeopleError {
    fn from(rejected: RejectedPayload) -> Self {
        match rejected {
            RejectedPayload::Malformed(error) => PeopleError::Malformed(error),
            RejectedPayload::Invalid(errors) => PeopleError::Invalid(errors),
        }
    }
}

impl From<StoreError> for PeopleError {
    fn from(error: StoreError) -> Self {
        if error.is_outage() {
            PeopleError::Unavailable(Box::new(error))
        } else {
            PeopleError::Bug(Box::new(error))
        }
    }
}

impl From<WriteError> for PeopleError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Store(error) => StoreError::Shared(error).into(),
            other => PeopleError::Unavailable(Box::new(other)),
        }
    }
}

impl People {
    pub(crate) fn new(
        store: Store,
        mirror: Arc<Mirror>,
        writer: Writer,
        id_slot: Option<u8>,
    ) -> People {
        People {
            store,
            mirror,
            writer,
            id_slot,
        }
    }

    /// Stores the person a `POST /pessoas` body describes, under a new id, once its row has
    /// committed.
    pub(crate) async fn create(&self, body: &[u8]) -> Result<Created, PeopleError> {
        let pessoa = Pessoa::parse(body, self.id_slot)?;
        self.store.ensure_reachable()?;
        let record = serde_json::to_vec(&pessoa).expect("a person serialises");
        match self.writer.create(pessoa.clone()).await? {
            Outcome::Created => {
                self.mirror.add_stored(&pessoa);
                Ok(Created {
                    id: pessoa.id(),
                    record,
                })
            }
            Outcome::ApelidoTaken => Err(PeopleError::ApelidoTaken),
        }
    }

    /// The record of the person with this id, as JSON, if one is stored.
    pub(crate) async fn find(&self, id: Uuid) -> Result<Option<Vec<u8>>, PeopleError> {
        Ok(self.mirror.find(id).await?)
    }

    /// The records of the people with `term` inside their apelido, nome or one stack item,
    /// case-insensitively, as a JSON array: every person whose `201` was sent before this call
    /// may be among them, whichever replica sent it.
    pub(crate) async fn search(&self, term: &str) -> Result<Vec<u8>, PeopleError> {
        self.store.ensure_reachable()?;
        Ok(self.mirror.search(term).await?)
    }

    /// How many people are stored, every one committed before this call counted.
    pub(crate) async fn count(&self) -> Result<i64, PeopleError> {
        self.store.ensure_reachable()?;
        Ok(self.mirror.count_stored().await?)
    }

    /// What the metrics report of the mirror and the pool at this moment.
    pub(crate) fn readings(&self) -> Readings {
        let (mirror_bytes, mirror_budget_bytes) = self.mirror.memory();
        Readings {
            mirror_people: self.mirror.count(),
            mirror_bytes,
            mirror_budget_bytes,
            mirror_full: self.mirror.is_full(),
            pool: self.store.pool_status(),
            families: self.mirror.registry().gather(),
        }
    }
}
