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
//! stops growing for good ("full"). It then still holds every committed row before some
//! [`Frontier`]. From then on a search that finds fewer than [`SEARCH_LIMIT`] people in memory
//! goes on in the database, among the rows past the frontier only, through the trigram index
//! that `rinha index-search` builds (`sql/search-index.sql`), and checks each row it gets with
//! the same case folding as here; a lookup by id that misses memory reads the database, as it
//! always did.

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
    /// Set once the budget is reached, and the mirror no longer grows.
    frontier: Option<Frontier>,
    /// How many people the mirror held when it last gave back its room to grow.
    shrunk_at: usize,
}

/// Which rows a full mirror may lack: those from `from` on, in (insert_xact, id) order, and
/// those of the transactions `in_progress`, which may have committed after they were read. It
/// holds every other committed row, and of these rows only a few: the people this replica
/// stored itself before the mirror filled, and the rows of `in_progress` read before.
#[derive(Clone, Debug)]
pub(crate) struct Frontier {
    from: PageStart,
    in_progress: Vec<i64>,
}

impl Frontier {
    /// The rows a catch-up with this snapshot had not read: those of the transactions then in
    /// progress, and of every later one.
    fn past(snapshot: &Snapshot) -> Frontier {
        Frontier {
            from: (snapshot.xmax, Uuid::nil()),
            in_progress: snapshot.in_progress.clone(),
        }
    }
}

impl State {
    /// Adds `person` if the budget allows it; otherwise the mirror is full, its rows past
    /// `frontier()`.
    fn admit(
        &mut self,
        person: &PersonRef,
        budget: usize,
        frontier: impl FnOnce() -> Frontier,
    ) -> bool {
        if self.frontier.is_some() {
            return false;
        }
        if self.people.heap_bytes() >= budget && self.people.count() >= self.shrunk_at * 17 / 16 {
            // Lists keep room to grow; giving it back may make room for many more people.
            self.people.shrink();
            self.shrunk_at = self.people.count();
        }
        if self.people.heap_bytes() >= budget {
            let frontier = frontier();
            tracing::warn!(
                "the mirror reached its memory budget of {} MiB with {} people; searches \
                 that find fewer than {SEARCH_LIMIT} people in memory now also search the \
                 rows past {frontier:?} in the database, which needs its search index \
                 (`rinha index-search`) to be quick",
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
                    let Some((_, person)) = mirror.decoded(row) else {
                        start = key;
                        return Ok(true);
                    };
                    // Every row before this one was read, but those of transactions then in
                    // progress, which may commit later (the catch-ups read them, unless the
                    // mirror is full).
                    let frontier = || Frontier {
                        from: key,
                        in_progress: snapshot.in_progress.clone(),
                    };
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
        // Every row committed before the last catch-up's snapshot is here.
        let frontier = Frontier::past(&state.seen);
        if state.admit(&pessoa.into(), self.budget_bytes, || frontier) {
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
                state.frontier.clone(),
            )
        };
        self.counters
            .search_items_visited
            .inc_by(searched.items_visited as u64);
        let found = searched.people;
        if let Some(frontier) = frontier
            && found < SEARCH_LIMIT
        {
            self.search_database(term, &frontier, SEARCH_LIMIT - found, &mut array)
                .await?;
        }
        array.push(b']');
        Ok(array)
    }

    /// Appends up to `wanted` matches among the rows past `frontier` that are not in memory
    /// (those in memory were searched there, and every match found, as it found fewer than the
    /// limit). Bounded by the database timeout.
    async fn search_database(
        &self,
        term: &str,
        frontier: &Frontier,
        wanted: usize,
        array: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let term = index::fold(term);
        let pattern = like_pattern(&term);
        let search = async {
            let start = array.len();
            // Room for rows past the frontier that are in memory all the same (see
            // `Frontier`): few, but a search asks for more only when they crowd out others.
            let mut limit = wanted + SEARCH_LIMIT;
            loop {
                array.truncate(start);
                let rows = self
                    .store
                    .search_past(&pattern, frontier.from, &frontier.in_progress, limit as i64)
                    .await?;
                let mut found = 0;
                for row in &rows {
                    let Some((_, person)) = self.decoded(row) else {
                        continue;
                    };
                    // The database lower-cases; this is full case folding, and fields apart.
                    if self.read().people.contains(&person.id) || !index::matches(&person, &term) {
                        continue;
                    }
                    if array.len() > 1 {
                        array.push(b',');
                    }
                    render_record(array, &person);
                    found += 1;
                    if found == wanted {
                        return Ok(());
                    }
                }
                if rows.len() < limit {
                    return Ok(());
                }
                limit *= 4;
            }
        };
        let limit = self.store.timeout();
        tokio::time::timeout(limit, search)
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

/// A LIKE pattern that matches every text lower-cased by the database (`pessoas_busca`) whose
/// full case folding holds `term`, already folded: the term, literal, but for what lower() leaves
/// apart and folding does not: `ss` matches any run (a `ß`), and `σ β θ φ π κ ρ ε μ ṡ ι` any one
/// character (their variant forms, `ς ϐ ϑ ϕ ϖ ϰ ϱ ϵ µ ẛ ι`). Still missed: a long `ſ`, the Latin
/// and Armenian ligatures, Greek letters with iota subscript, a dotted capital I and Cherokee.
fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    let mut characters = term.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            's' if characters.peek() == Some(&'s') => {
                characters.next();
                pattern.push('%');
            }
            'σ' | 'β' | 'θ' | 'φ' | 'π' | 'κ' | 'ρ' | 'ε' | 'μ' | 'ṡ' | 'ι' => {
                pattern.push('_')
            }
            '%' | '_' | '\\' => {
                pattern.push('\\');
                pattern.push(character);
            }
            _ => pattern.push(character),
        }
    }
    pattern.push('%');
    pattern
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

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_match_terms_literally_and_what_lower_case_leaves_apart() {
        assert_eq!(like_pattern("c++"), "%c++%");
        assert_eq!(like_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
        assert_eq!(like_pattern("strasse"), "%stra%e%");
        assert_eq!(like_pattern("sss"), "%%s%");
        assert_eq!(like_pattern("οδοσ"), "%οδο_%");
    }
}
