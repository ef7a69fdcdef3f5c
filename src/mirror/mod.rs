//! Each replica's copy of the people table, in memory: it answers every search and most lookups
//! by id, so PostgreSQL keeps no search index and each write costs it a few B-tree entries.
//!
//! A search must see every person whose `201` was sent before the search arrived, whichever
//! replica sent it. So before each search the mirror catches up. Every row records the
//! transaction that inserted it (`insert_xact`, indexed with the id). A catch-up's first
//! statement takes a snapshot: the first transaction not yet begun (`xmax`) and the ones still
//! in progress. Every other transaction older than `xmax` had finished, so its rows, if
//! committed, are visible to that statement and to every later one. The catch-up reads the
//! rows of the transactions that were in progress at the previous catch-up's snapshot and the
//! rows of transactions from its `xmax` on: every row that could have been committed since.
//! The same statement reads the first page of each, later statements any further pages. So the
//! mirror then holds every row committed before the snapshot, and the next catch-up starts from
//! it. A row is read again only while its transaction was in progress at a snapshot: a
//! transaction someone leaves open costs each catch-up one index probe for its own rows,
//! however long it stays open, and nothing for anyone else's.
//!
//! A replica runs one catch-up at a time. A search that arrives while one runs waits for the
//! next, whose snapshot is then taken after it arrived, and every search waiting shares that
//! one. A catch-up holds at most one page of each kind of row at a time.
//!
//! A row written behind the API's back that breaks the rules a new person keeps (a null stack
//! item, a date past year 9999, an empty apelido) is skipped, counted in
//! `mirror_undecodable_rows_total` and logged once; a lookup of it fails as a bug would.
//!
//! At start the mirror loads the table in pages, in (insert_xact, id) order, up to the `xmax`
//! of a snapshot taken first; each page is one short statement. A catch-up then reads the rows
//! of the transactions that snapshot saw in progress, and the newer ones.
//!
//! The mirror has a memory budget. When the next person would take it past the budget, it
//! stops growing for good ("full"): it still holds every committed row older than some
//! transaction, its frontier. From then on a search that finds fewer than [`SEARCH_LIMIT`]
//! people in memory goes on in the database, reading the rows from the frontier on, page by
//! page, and matching them here with the same case folding; a lookup by id that misses memory
//! reads the database, as it always did.

mod catch_up;
mod counters;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

use prometheus::Registry;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::Pessoa;
use crate::index::record::render_record;
use crate::index::{self, PersonRef, SearchIndex};
use crate::store::rows::{self, PersonRow, page_key};
use crate::store::{PageStart, Snapshot, Store, StoreError};
use catch_up::CatchUp;
use counters::Counters;

/// The most people one search returns.
pub(crate) const SEARCH_LIMIT: usize = 50;

/// Rows per page when loading the table, catching up or searching past a full mirror: a
/// statement well inside the database timeout, and a few MB in flight.
const PAGE_ROWS: i64 = 10_000;

pub(crate) struct Mirror {
    store: Store,
    budget_bytes: usize,
    state: RwLock<State>,
    /// How many catch-ups have begun. A catch-up numbered above the count a search read when
    /// it arrived took its snapshot after the search arrived.
    catch_ups_begun: AtomicU64,
    /// Held for the whole of a catch-up, so that one runs at a time.
    last_catch_up: tokio::sync::Mutex<CatchUp>,
    /// The ids of the rows skipped as undecodable, so that each is counted and logged once.
    undecodable: Mutex<HashSet<Uuid>>,
    counters: Counters,
}

#[derive(Default)]
struct State {
    people: SearchIndex,
    /// The snapshot of the last catch-up: every row committed before it is in `people`.
    seen: Snapshot,
    /// Set once the budget is reached: rows inserted by this transaction or later may be
    /// missing, and the mirror no longer grows.
    frontier: Option<i64>,
    /// How many people the mirror held when it last gave back its room to grow.
    shrunk_at: usize,
}

impl State {
    /// Adds `person` if the budget allows it; otherwise the mirror is full from `frontier` on.
    fn admit(&mut self, person: &PersonRef, budget: usize, frontier: i64) -> bool {
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
    pub(crate) async fn load(store: Store, budget_bytes: usize) -> Result<Mirror, StoreError> {
        let mirror = Mirror {
            store,
            budget_bytes,
            state: RwLock::default(),
            catch_ups_begun: AtomicU64::new(0),
            last_catch_up: tokio::sync::Mutex::new(CatchUp {
                number: 0,
                outcome: Ok(()),
            }),
            undecodable: Mutex::default(),
            counters: Counters::new(),
        };
        let snapshot = mirror.store.snapshot().await?;
        let mut state = State::default();
        let mut start: PageStart = (i64::MIN, Uuid::nil());
        loop {
            let mut admitted = true;
            let rows = mirror
                .store
                .page(start, snapshot.xmax, PAGE_ROWS, |row| {
                    let key = page_key(row)?;
                    let Some((insert_xact, person)) = mirror.decoded(row) else {
                        start = key;
                        return Ok(true);
                    };
                    // Rows of transactions then in progress may commit after their page was
                    // read: the catch-ups read them, unless the mirror is full.
                    let frontier = insert_xact.min(snapshot.xmin);
                    admitted = state.admit(&person, budget_bytes, frontier);
                    if admitted {
                        start = key;
                    }
                    Ok(admitted)
                })
                .await?;
            state.people.flush();
            if !admitted {
                break;
            }
            if rows < PAGE_ROWS {
                state.seen = snapshot;
                break;
            }
        }
        state.people.shrink();
        *mirror.write() = state;
        mirror.catch_up().await?;
        Ok(mirror)
    }

    /// Adds a person this replica has just stored, so that the lookup that usually follows a
    /// `201` needs no database. The catch-up that reads the row later finds it here already.
    pub(crate) fn add_stored(&self, pessoa: &Pessoa) {
        let mut state = self.write();
        // Every row committed before the last catch-up's snapshot is here, so every one older
        // than the oldest transaction it saw in progress; this one may be newer.
        let frontier = state.seen.xmin;
        if state.admit(&pessoa.into(), self.budget_bytes, frontier) {
            state.people.flush();
        }
    }

    /// How many people the mirror holds.
    pub(crate) fn count(&self) -> usize {
        self.read().people.count()
    }

    /// How many people are stored, every one committed before this call counted. While the
    /// mirror holds everyone, that is a catch-up (which reads only the rows added since the last
    /// one) and the people here, with the rows it had to leave out as undecodable; a full mirror
    /// has the database count them.
    pub(crate) async fn count_stored(&self) -> Result<i64, StoreError> {
        self.catch_up().await?;
        let held = {
            let state = self.read();
            state.frontier.is_none().then(|| state.people.count())
        };
        match held {
            Some(people) => {
                let undecodable = self
                    .undecodable
                    .lock()
                    .expect("never poisoned: no panics under it")
                    .len();
                Ok((people + undecodable) as i64)
            }
            None => self.store.count().await,
        }
    }

    /// About how many bytes the mirror holds, and its budget.
    pub(crate) fn memory(&self) -> (usize, usize) {
        (self.read().people.heap_bytes(), self.budget_bytes)
    }

    /// Whether the mirror has reached its budget and stopped growing.
    pub(crate) fn is_full(&self) -> bool {
        self.read().frontier.is_some()
    }

    /// The records of up to [`SEARCH_LIMIT`] people with `term` inside their apelido, nome or
    /// one stack item, case-insensitively, as a JSON array.
    pub(crate) async fn search(&self, term: &str) -> Result<Vec<u8>, StoreError> {
        self.catch_up().await?;
        let mut array = vec![b'['];
        let (searched, frontier) = {
            let state = self.read();
            (
                state.people.search(term, SEARCH_LIMIT, &mut array),
                state.frontier,
            )
        };
        self.counters
            .search_items_visited
            .inc_by(searched.items_visited as u64);
        let found = searched.people;
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
        let term = index::fold(term);
        let scan = async {
            let mut start: PageStart = (frontier - 1, Uuid::max());
            loop {
                let rows = self
                    .store
                    .page(start, i64::MAX, PAGE_ROWS, |row| {
                        start = page_key(row)?;
                        let Some((_, person)) = self.decoded(row) else {
                            return Ok(true);
                        };
                        if self.read().people.contains(&person.id)
                            || !index::matches(&person, &term)
                        {
                            return Ok(true);
                        }
                        if array.len() > 1 {
                            array.push(b',');
                        }
                        render_record(array, &person);
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
    pub(crate) async fn find(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(record) = self.read().people.get(&id) {
            return Ok(Some(record));
        }
        self.store
            .find(id, |row| {
                let mut record = Vec::new();
                render_record(&mut record, &person_ref(row));
                record
            })
            .await
    }

    /// The person in `row`, or None for a row that does not read as one, which is counted
    /// and logged the first time it is met.
    fn decoded<'r>(&self, row: &'r Row) -> Option<(i64, PersonRef<'r>)> {
        match rows::person(row) {
            Ok(person) => Some((person.insert_xact, person_ref(person))),
            Err(error) => {
                let id: Option<Uuid> = row.try_get(1).ok();
                let first = self
                    .undecodable
                    .lock()
                    .expect("never poisoned: no panics under it")
                    .insert(id.unwrap_or_default());
                if first {
                    self.counters.undecodable_rows.inc();
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        ?id,
                        "a stored row does not read as a person; it is left out of searches"
                    );
                }
                None
            }
        }
    }

    /// The mirror's own metrics.
    pub(crate) fn registry(&self) -> &Registry {
        &self.counters.registry
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|_| Self::abandon())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|_| Self::abandon())
    }

    /// Ends the process when a panic left the mirror half changed. A panic in a connection's
    /// task ends only that task (see `contain_connection_panics` in `http/server.rs`), but one that struck
    /// while the mirror was being changed leaves it in doubt for every request after: a fresh
    /// process, started again by its supervisor, loads a sound one.
    fn abandon() -> ! {
        tracing::error!("a panic left the in-memory mirror half changed; ending the process");
        std::process::abort()
    }
}

/// A stored person as the index takes one.
fn person_ref(row: PersonRow<'_>) -> PersonRef<'_> {
    PersonRef {
        id: row.id,
        apelido: row.apelido,
        nome: row.nome,
        nascimento: row.nascimento,
        stack: row.stack,
    }
}
