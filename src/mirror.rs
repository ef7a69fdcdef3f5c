//! Each replica's copy of the people table, in memory: it answers every search and most lookups
//! by id, so PostgreSQL keeps no search index and each write costs it a few B-tree entries.
//!
//! A search must see every person whose `201` was sent before the search arrived, whichever
//! replica sent it. So before each search the mirror catches up, in one statement: it reads the
//! rows added since its horizon, and its snapshot's horizon (the oldest transaction still
//! running). Every row records the transaction that inserted it (`insert_xact`). A transaction
//! older than the horizon has finished, so its rows, if committed, were in that snapshot: the
//! mirror then holds every committed row whose transaction is older than its horizon, and the
//! next catch-up reads only newer ones. Rows of transactions that were still running are read
//! again each time until the horizon passes them, and added once. (So a transaction someone
//! leaves open holds the horizon back, and each catch-up reads every row since it: slower
//! searches, never missing ones.)

use std::sync::RwLock;

use uuid::Uuid;

use crate::search_index::SearchIndex;
use crate::store::{Store, StoreError};

/// The most people one search returns.
pub const SEARCH_LIMIT: usize = 50;

pub struct Mirror {
    store: Store,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    people: SearchIndex,
    /// Every committed row inserted by a transaction older than this one is in `people`.
    horizon: i64,
}

impl Mirror {
    /// A mirror holding every person stored so far.
    pub async fn load(store: Store) -> Result<Mirror, StoreError> {
        let mirror = Mirror {
            store,
            state: RwLock::default(),
        };
        mirror.catch_up().await?;
        Ok(mirror)
    }

    /// How many people the mirror holds.
    pub fn count(&self) -> usize {
        self.read().people.count()
    }

    /// The records of up to [`SEARCH_LIMIT`] people with `term` inside their apelido, nome or
    /// one stack item, case-insensitively, as a JSON array.
    pub async fn search(&self, term: &str) -> Result<Vec<u8>, StoreError> {
        self.catch_up().await?;
        let state = self.read();
        let records = state.people.search(term, SEARCH_LIMIT);
        let mut array = Vec::with_capacity(2 + records.iter().map(|r| r.len() + 1).sum::<usize>());
        array.push(b'[');
        for (i, record) in records.into_iter().enumerate() {
            if i > 0 {
                array.push(b',');
            }
            array.extend_from_slice(record);
        }
        array.push(b']');
        Ok(array)
    }

    /// The record of the person with this id, as JSON. People are never changed or removed,
    /// so one already mirrored is answered from memory; others are looked up in the database.
    pub async fn find(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(record) = self.read().people.get(&id) {
            return Ok(Some(record.to_vec()));
        }
        let pessoa = self.store.find(id).await?;
        Ok(pessoa.map(|p| serde_json::to_vec(&p).expect("a person serialises")))
    }

    /// Adds every row committed before this call.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let since = self.read().horizon;
        let (horizon, added) = self.store.added_since(since).await?;
        let mut state = self
            .state
            .write()
            .expect("no thread panics holding the mirror");
        for pessoa in &added {
            state.people.insert(pessoa);
        }
        // Catch-ups run concurrently, and one that started earlier may finish later.
        state.horizon = state.horizon.max(horizon);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .expect("no thread panics holding the mirror")
    }
}
