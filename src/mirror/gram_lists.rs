//! Indexing the people already stored, for a table past what a mirror holds: part of `rinha
//! index-search`. It lists each person under its short grams (see `pessoas_gramas` in
//! `sql/schema.sql`), for the people written behind the API's back (the writers list everyone
//! they insert themselves), lists them under their spaced grams (see `pessoas_gramas_espaco`),
//! and saves the filter of the pieces of everyone (see `pessoas_pedacos`), which a replica then
//! loads rather than reading the people it leaves out.

use std::collections::HashMap;

use uuid::Uuid;

use super::{PAGE_ROWS, SEARCH_LIMIT, person_ref};
use crate::index::{PieceFilter, for_each_gram, for_each_spaced_gram};
use crate::store::rows::{self, page_key};
use crate::store::{PageStart, Snapshot, Store, StoreError};

/// (gram, id) pairs per statement when the lists are written.
const PAIRS_PER_STATEMENT: usize = 50_000;

/// What indexing the people stored did.
pub(crate) struct Indexed {
    pub(crate) people: u64,
    pub(crate) grams: usize,
    pub(crate) spaced_grams: usize,
    pub(crate) filter_bytes: usize,
    pub(crate) filter_load: f64,
}

/// Reads every person `snapshot` saw committed, adds up to [`SEARCH_LIMIT`] of them to each
/// gram's list and to each spaced gram's list of that snapshot, and saves the filter of their
/// pieces, of at most `filter_bytes`, with that snapshot. A row that does not read as a person is
/// skipped.
pub(crate) async fn index_stored_people(
    store: &Store,
    snapshot: &Snapshot,
    filter_bytes: usize,
) -> Result<Indexed, StoreError> {
    // Room for a fifth more people than today's.
    let expected = store.estimated_people().await?.max(0) as u64 / 4 * 5;
    let mut filter = PieceFilter::sized_for(expected, filter_bytes);
    let mut lists: HashMap<String, Vec<Uuid>> = HashMap::new();
    let mut spaced_lists: HashMap<String, Vec<Uuid>> = HashMap::new();
    let mut start: PageStart = (i64::MIN, Uuid::nil());
    let mut read = 0;
    loop {
        let rows = store
            .page(start, snapshot.xmax, PAGE_ROWS, |row| {
                start = page_key(row)?;
                if snapshot.in_progress.contains(&start.0) {
                    // Listed by its writer, and added by the replicas that read it.
                    return Ok(true);
                }
                if let Ok(person) = rows::person(row) {
                    let person = person_ref(person);
                    filter.add(&person);
                    for_each_gram(&person, |gram| list(&mut lists, gram, person.id));
                    for_each_spaced_gram(&person, |gram| list(&mut spaced_lists, gram, person.id));
                }
                Ok(true)
            })
            .await?;
        read += rows as u64;
        if rows < PAGE_ROWS {
            break;
        }
    }
    let grams = lists.len();
    for chunk in pairs(lists).chunks(PAIRS_PER_STATEMENT) {
        store.list_grams(chunk).await?;
    }
    let spaced_grams = spaced_lists.len();
    for chunk in pairs(spaced_lists).chunks(PAIRS_PER_STATEMENT) {
        store.list_spaced_grams(chunk, snapshot.xmax).await?;
    }
    store.spaced_grams_listed(snapshot.xmax).await?;
    let bytes = filter.to_bytes();
    store.save_filter(snapshot, &bytes).await?;
    Ok(Indexed {
        people: read,
        grams,
        spaced_grams,
        filter_bytes: bytes.len(),
        filter_load: filter.load(),
    })
}

/// Adds `id` to the list of `gram` in `lists` unless it is full.
fn list(lists: &mut HashMap<String, Vec<Uuid>>, gram: &str, id: Uuid) {
    let list = match lists.get_mut(gram) {
        Some(list) => list,
        None => lists.entry(gram.to_owned()).or_default(),
    };
    // A gram may come more than once from one person, who is then the list's last.
    if list.len() < SEARCH_LIMIT && list.last() != Some(&id) {
        list.push(id);
    }
}

/// The (gram, id) pairs of `lists`, in gram order.
fn pairs(lists: HashMap<String, Vec<Uuid>>) -> Vec<(String, Uuid)> {
    let mut pairs: Vec<(String, Uuid)> = lists
        .into_iter()
        .flat_map(|(gram, ids)| ids.into_iter().map(move |id| (gram.clone(), id)))
        .collect();
    pairs.sort_unstable();
    pairs
}
