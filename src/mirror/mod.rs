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
//! rows of transactions from its `xmax` on, but those of transactions in progress at its own
//! snapshot: every row committed since, each read once. The same statement reads the first
//! page of each, later statements any further pages. The next catch-up starts from its
//! snapshot. A transaction someone leaves open costs each catch-up one index probe for its
//! own rows, however long it stays open, and nothing for anyone else's.
//!
//! A replica runs one catch-up at a time. A search that arrives while one runs waits for the
//! next, whose snapshot is then taken after it arrived, and every search waiting shares that
//! one. A catch-up holds at most one page of each kind of row at a time.
//!
//! A row written behind the API's back that breaks the rules a new person keeps (a null stack
//! item, a date past year 9999, an empty apelido) is skipped, counted in
//! `mirror_undecodable_rows_total` and logged once; a lookup of it fails as a bug would.
//!
//! At start the mirror loads the table in pages, in (insert_xact, id) order, the rows a
//! snapshot taken first saw committed; each page is one short statement. A catch-up then reads
//! the rows committed since.
//!
//! The mirror has a memory budget, and holds only the people that fit ("leaving out" the
//! others, which are counted all the same). A table past it loads three quarters of the room,
//! keeping the rest for the people stored from then on, who are the ones most often looked up
//! and searched. What it knows of the people it leaves out is a filter of pieces
//! ([`PieceFilter`]): the one `rinha index-search` saved for the rows its snapshot saw (the
//! load then starts from that snapshot), with everyone left out since added. A search that
//! finds fewer than [`SEARCH_LIMIT`] people in memory asks the database for more (see
//! `database`) only when the filter cannot rule its term out. Without a saved filter, a table
//! past the budget at start has every such search ask the database. A lookup by id that
//! misses memory reads the database.

mod catch_up;
mod counters;
mod database;
mod gram_lists;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

use prometheus::Registry;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::Pessoa;
use crate::index::record::render_record;
use crate::index::{self, PersonRef, PieceFilter, SearchIndex};
use crate::store::rows::{self, PersonRow, page_key};
use crate::store::{PageStart, Snapshot, Store, StoreError};
use catch_up::CatchUp;
use counters::Counters;
pub(crate) use gram_lists::index_stored_people;

/// The most people one search returns.
pub(crate) const SEARCH_LIMIT: usize = 50;

/// Rows per page when loading the table or catching up: a statement well inside the database
/// timeout, and a few MB in flight.
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
    /// The snapshot of the last catch-up: every row committed before it was read once.
    seen: Snapshot,
    /// How many of the rows read are not in `people`: left out, or undecodable.
    left_out: u64,
    /// What the mirror knows of the people it left out.
    filter: LeftOut,
    /// With a saved filter: the `xmax` of its snapshot. The people left out at load are of
    /// transactions before it, in the search index built with that filter.
    indexed_before: Option<i64>,
    /// The oldest transaction of the other people left out (all of them without a saved
    /// filter), which the search index does not hold.
    left_out_from: Option<i64>,
    /// Set once the budget is reached, and the mirror no longer grows.
    full: bool,
    /// How many people the mirror held when it last gave back its room to grow.
    shrunk_at: usize,
}

/// The people a mirror left out, as far as searches are concerned.
#[derive(Default)]
enum LeftOut {
    /// None: memory answers every search.
    #[default]
    Nobody,
    /// Every one of them is in the filter.
    Filtered(PieceFilter),
    /// Some were left out at start with no filter saved: any may match any term.
    Unfiltered,
}

impl State {
    /// The share of the budget the people may take: the rest is the filter's, or kept for it.
    fn people_budget(&self, budget: usize) -> usize {
        match &self.filter {
            LeftOut::Filtered(filter) => budget.saturating_sub(filter.heap_bytes()),
            LeftOut::Nobody | LeftOut::Unfiltered => budget - budget / 8,
        }
    }

    /// Adds `person` if the people then take less than `limit` bytes.
    fn admit_within(&mut self, person: &PersonRef, limit: usize) -> bool {
        if self.people.heap_bytes() >= limit && self.people.count() >= self.shrunk_at * 17 / 16 {
            // Lists keep room to grow; giving it back may make room for many more people.
            self.people.shrink();
            self.shrunk_at = self.people.count();
        }
        if self.people.heap_bytes() >= limit {
            return false;
        }
        self.people.insert(person);
        true
    }

    /// Adds `person` if the budget allows it; otherwise the mirror is full from now on.
    fn admit(&mut self, person: &PersonRef, budget: usize) -> bool {
        if self.full {
            return false;
        }
        if self.admit_within(person, self.people_budget(budget)) {
            return true;
        }
        tracing::warn!(
            "the mirror reached its memory budget of {} MiB with {} people; the people stored \
             from now on are left out, and found in the database",
            budget >> 20,
            self.people.count()
        );
        self.full = true;
        false
    }

    /// Adds `person`, left out by a catch-up, to the filter (the caller counts it). The first
    /// person left out while running gets a filter made in the room kept for it.
    fn filter_out(&mut self, insert_xact: i64, person: &PersonRef, budget: usize) {
        self.left_out_from = Some(
            self.left_out_from
                .map_or(insert_xact, |x| x.min(insert_xact)),
        );
        match &mut self.filter {
            LeftOut::Nobody => {
                let mut filter = PieceFilter::sized_for(u64::MAX, budget / 8);
                filter.add(person);
                self.filter = LeftOut::Filtered(filter);
            }
            LeftOut::Filtered(filter) => filter.add(person),
            LeftOut::Unfiltered => {}
        }
    }

    /// Whether a person left out may hold `term` (folded).
    fn may_have_left_out(&self, term: &str) -> bool {
        match &self.filter {
            LeftOut::Nobody => false,
            LeftOut::Filtered(filter) => filter.may_hold(term),
            LeftOut::Unfiltered => true,
        }
    }
}

impl Mirror {
    /// A mirror holding every person stored so far that fits in `budget_bytes`, in
    /// (insert_xact, id) order, and the count of the rest. Nothing else sees the mirror while it
    /// loads, so it is built unlocked and shared once whole.
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
        let mut state = State::default();
        let saved = mirror.store.saved_filter().await?;
        let (seen, saved) = match saved {
            Some((seen, bytes)) => match PieceFilter::from_bytes(&bytes) {
                Some(filter) if filter.heap_bytes() <= budget_bytes / 2 => (seen, Some(filter)),
                _ => {
                    tracing::warn!(
                        "the saved filter of pieces ({} MiB) is unreadable or past half this \
                         replica's budget; ignored",
                        bytes.len() >> 20
                    );
                    (mirror.store.snapshot().await?, None)
                }
            },
            None => (mirror.store.snapshot().await?, None),
        };
        let room = match &saved {
            Some(filter) => budget_bytes.saturating_sub(filter.heap_bytes()),
            None => state.people_budget(budget_bytes),
        };
        // The rest is kept for the people stored from now on.
        let loading = room / 4 * 3;
        let mut start: PageStart = (i64::MIN, Uuid::nil());
        loop {
            let mut left_from = None;
            let rows = mirror
                .store
                .page(start, seen.xmax, PAGE_ROWS, |row| {
                    let key = page_key(row)?;
                    if seen.in_progress.contains(&key.0) {
                        // Read by a catch-up, once its transaction has finished.
                        start = key;
                        return Ok(true);
                    }
                    match mirror.decoded(row) {
                        Some((_, person)) if !state.admit_within(&person, loading) => {
                            left_from = Some(key);
                            return Ok(false);
                        }
                        Some(_) => {}
                        None => state.left_out += 1,
                    }
                    start = key;
                    Ok(true)
                })
                .await?;
            state.people.flush();
            if let Some(key) = left_from {
                // The rest is counted through the index, never read.
                state.left_out += mirror.store.count_from(key, &seen).await? as u64;
                state.filter = match saved {
                    Some(filter) => {
                        state.indexed_before = Some(seen.xmax);
                        LeftOut::Filtered(filter)
                    }
                    None => {
                        state.left_out_from = Some(i64::MIN);
                        tracing::warn!(
                            "the table is past this replica's memory budget and no filter of \
                             pieces is saved (`rinha index-search` saves one): every search \
                             that finds fewer than {SEARCH_LIMIT} people in memory asks the \
                             database"
                        );
                        LeftOut::Unfiltered
                    }
                };
                break;
            }
            if rows < PAGE_ROWS {
                break;
            }
        }
        let filter = match &state.filter {
            LeftOut::Filtered(filter) => {
                format!(
                    ", in a filter of {} MiB with {:.0}% of its bits set",
                    filter.heap_bytes() >> 20,
                    filter.load() * 100.0
                )
            }
            LeftOut::Nobody | LeftOut::Unfiltered => String::new(),
        };
        tracing::info!(
            "the mirror loaded {} people in {} MiB; {} rows left out{filter}",
            state.people.count(),
            state.people.heap_bytes() >> 20,
            state.left_out
        );
        state.seen = seen;
        state.people.shrink();
        *mirror.write() = state;
        mirror.catch_up().await?;
        Ok(mirror)
    }

    /// Adds a person this replica has just stored, so that the lookup that usually follows a
    /// `201` needs no database. The catch-up that reads the row later finds it here already.
    pub(crate) fn add_stored(&self, pessoa: &Pessoa) {
        let mut state = self.write();
        if state.admit(&pessoa.into(), self.budget_bytes) {
            state.people.flush();
        }
    }

    /// How many people the mirror holds.
    pub(crate) fn count(&self) -> usize {
        self.read().people.count()
    }

    /// How many people are stored, every one committed before this call counted: a catch-up
    /// (which reads only the rows committed since the last one), then the people here and the
    /// rows read but left out.
    pub(crate) async fn count_stored(&self) -> Result<i64, StoreError> {
        self.catch_up().await?;
        let state = self.read();
        Ok(state.people.count() as i64 + state.left_out as i64)
    }

    /// About how many bytes the mirror holds, and its budget.
    pub(crate) fn memory(&self) -> (usize, usize) {
        let state = self.read();
        let filter = match &state.filter {
            LeftOut::Filtered(filter) => filter.heap_bytes(),
            LeftOut::Nobody | LeftOut::Unfiltered => 0,
        };
        (state.people.heap_bytes() + filter, self.budget_bytes)
    }

    /// Whether the mirror has reached its budget and stopped growing.
    pub(crate) fn is_full(&self) -> bool {
        self.read().full
    }

    /// The records of up to [`SEARCH_LIMIT`] people with `term` inside their apelido, nome or
    /// one stack item, case-insensitively, as a JSON array.
    pub(crate) async fn search(&self, term: &str) -> Result<Vec<u8>, StoreError> {
        self.catch_up().await?;
        let mut array = vec![b'['];
        let folded = index::fold(term);
        let (searched, past_memory) = {
            let state = self.read();
            let searched = state.people.search(term, SEARCH_LIMIT, &mut array);
            let past_memory = match state.filter {
                LeftOut::Nobody => false,
                _ => searched.people < SEARCH_LIMIT,
            };
            let ask = past_memory && state.may_have_left_out(&folded);
            (searched, past_memory.then_some(ask))
        };
        self.counters
            .search_items_visited
            .inc_by(searched.items_visited as u64);
        match past_memory {
            Some(false) => self.counters.searches_ruled_out.inc(),
            Some(true) => {
                self.counters.searches_in_database.inc();
                let search =
                    self.search_database(&folded, SEARCH_LIMIT - searched.people, &mut array);
                let limit = self.store.timeout();
                tokio::time::timeout(limit, search)
                    .await
                    .unwrap_or(Err(StoreError::TimedOut(limit)))?;
            }
            None => {}
        }
        array.push(b']');
        Ok(array)
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
