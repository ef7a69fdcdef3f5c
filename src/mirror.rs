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
//!
//! At start the mirror loads the table in pages, in (insert_xact, id) order, up to the horizon
//! of a snapshot taken first; each page is one short statement.
//!
//! The mirror has a memory budget. When the next person would take it past the budget, it
//! stops growing for good ("full"): it still holds every committed row older than some
//! transaction, its frontier. From then on a search that finds fewer than [`SEARCH_LIMIT`]
//! people in memory goes on in the database, reading the rows from the frontier on, page by
//! page, and matching them here with the same case folding; a lookup by id that misses memory
//! reads the database, as it always did.

use std::sync::RwLock;

use uuid::Uuid;

use crate::domain::Pessoa;
use crate::search_index::{self, SearchIndex};
use crate::store::{self, PageStart, Store, StoreError};

/// The most people one search returns.
pub const SEARCH_LIMIT: usize = 50;

/// Rows per page when loading the table or searching past a full mirror: a statement well
/// inside the database timeout, and a few MB in flight.
const PAGE_ROWS: i64 = 10_000;

pub struct Mirror {
    store: Store,
    budget_bytes: usize,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    people: SearchIndex,
    /// Every committed row inserted by a transaction older than this one is in `people`.
    horizon: i64,
    /// Set once the budget is reached: rows inserted by this transaction or later may be
    /// missing, and the mirror no longer grows.
    frontier: Option<i64>,
    /// How many people the mirror held when it last gave back its room to grow.
    shrunk_at: usize,
}

impl State {
    /// Adds `person` if the budget allows it; otherwise the mirror is full from `frontier` on.
    fn admit(&mut self, person: &search_index::PersonRef, budget: usize, frontier: i64) -> bool {
        if self.frontier.is_some() {
            return false;
        }
        if self.people.heap_bytes() >= budget && self.people.count() >= self.shrunk_at * 17 / 16 {
            // Lists keep room to grow; giving it back may make room for many more people.
            self.people.shrink();
            self.shrunk_at = self.people.count();
        }
        if self.people.heap_bytes() >= budget {
            tracing::warn!(
                "the mirror reached its memory budget of {} MiB with {} people; searches \
                 that find fewer than {SEARCH_LIMIT} people in memory now also read the rows \
                 inserted from transaction {frontier} on from the database",
                budget >> 20,
                self.people.count()
            );
            self.frontier = Some(frontier);
            return false;
        }
        self.people.insert(person);
        true
    }
}

impl Mirror {
    /// A mirror holding every person stored so far that fits in `budget_bytes`. Nothing else
    /// sees the mirror while it loads, so it is built unlocked and shared once whole.
    pub async fn load(store: Store, budget_bytes: usize) -> Result<Mirror, StoreError> {
        let horizon = store.snapshot_horizon().await?;
        let mut state = State::default();
        let mut start: PageStart = (i64::MIN, Uuid::nil());
        loop {
            let mut admitted = true;
            let rows = store
                .page(start, horizon, PAGE_ROWS, |row| {
                    let (insert_xact, person) = store::stored_person(row)?;
                    admitted = state.admit(&person, budget_bytes, insert_xact);
                    if admitted {
                        start = (insert_xact, person.id);
                    }
                    Ok(admitted)
                })
                .await?;
            state.people.flush();
            if !admitted {
                break;
            }
            if rows < PAGE_ROWS {
                state.horizon = horizon;
                break;
            }
        }
        state.people.shrink();
        let mirror = Mirror {
            store,
            budget_bytes,
            state: RwLock::new(state),
        };
        mirror.catch_up().await?;
        Ok(mirror)
    }

    /// Adds a person this replica has just stored, so that the lookup that usually follows a
    /// `201` needs no database. The catch-up that reads the row later finds it here already.
    pub fn add_stored(&self, pessoa: &Pessoa) {
        let mut state = self.write();
        // Every committed row older than the horizon is here; this one may be newer.
        let frontier = state.horizon;
        if state.admit(&pessoa.into(), self.budget_bytes, frontier) {
            state.people.flush();
        }
    }

    /// How many people the mirror holds.
    pub fn count(&self) -> usize {
        self.read().people.count()
    }

    /// About how many bytes the mirror holds, and its budget.
    pub fn memory(&self) -> (usize, usize) {
        (self.read().people.heap_bytes(), self.budget_bytes)
    }

    /// Whether the mirror has reached its budget and stopped growing.
    pub fn is_full(&self) -> bool {
        self.read().frontier.is_some()
    }

    /// The records of up to [`SEARCH_LIMIT`] people with `term` inside their apelido, nome or
    /// one stack item, case-insensitively, as a JSON array.
    pub async fn search(&self, term: &str) -> Result<Vec<u8>, StoreError> {
        self.catch_up().await?;
        let mut array = vec![b'['];
        let (found, frontier) = {
            let state = self.read();
            (
                state.people.search(term, SEARCH_LIMIT, &mut array),
                state.frontier,
            )
        };
        if let Some(frontier) = frontier
            && found < SEARCH_LIMIT
        {
            self.search_database(term, frontier, SEARCH_LIMIT - found, &mut array)
                .await?;
        }
        array.push(b']');
        Ok(array)
    }

    /// Appends up to `wanted` matches among the rows from `frontier` on that are not in memory
    /// (those in memory were searched there, and every match found, as it found fewer than the
    /// limit). The whole scan is bounded by the database timeout.
    async fn search_database(
        &self,
        term: &str,
        frontier: i64,
        mut wanted: usize,
        array: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let term = search_index::fold(term);
        let scan = async {
            let mut start: PageStart = (frontier - 1, Uuid::max());
            loop {
                let rows = self
                    .store
                    .page(start, i64::MAX, PAGE_ROWS, |row| {
                        let (insert_xact, person) = store::stored_person(row)?;
                        start = (insert_xact, person.id);
                        if self.read().people.contains(&person.id)
                            || !search_index::matches(&person, &term)
                        {
                            return Ok(true);
                        }
                        if array.len() > 1 {
                            array.push(b',');
                        }
                        search_index::render_record(array, &person);
                        wanted -= 1;
                        Ok(wanted > 0)
                    })
                    .await?;
                if wanted == 0 || rows < PAGE_ROWS {
                    return Ok(());
                }
            }
        };
        let limit = self.store.timeout();
        tokio::time::timeout(limit, scan)
            .await
            .unwrap_or(Err(StoreError::TimedOut(limit)))
    }

    /// The record of the person with this id, as JSON. People are never changed or removed,
    /// so one already mirrored is answered from memory; others are looked up in the database.
    pub async fn find(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(record) = self.read().people.get(&id) {
            return Ok(Some(record));
        }
        let pessoa = self.store.find(id).await?;
        Ok(pessoa.map(|p| serde_json::to_vec(&p).expect("a person serialises")))
    }

    /// Adds every row committed before this call, unless the mirror is full.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let _timer = crate::metrics::MIRROR_CATCH_UP_SECONDS.start_timer();
        let since = {
            let state = self.read();
            if state.frontier.is_some() {
                return Ok(());
            }
            state.horizon
        };
        let (horizon, added) = self.store.added_since(since).await?;
        let mut state = self.write();
        let mut admitted = true;
        for row in &added {
            let (_, person) = store::stored_person(row)?;
            if state.people.contains(&person.id) {
                continue;
            }
            // Everything older than the current horizon is in memory already.
            let frontier = state.horizon;
            admitted = state.admit(&person, self.budget_bytes, frontier);
            if !admitted {
                break;
            }
        }
        state.people.flush();
        if admitted {
            // Catch-ups run concurrently, and one that started earlier may finish later.
            state.horizon = state.horizon.max(horizon);
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .expect("no thread panics holding the mirror")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .expect("no thread panics holding the mirror")
    }
}
