//! Every person, in memory and compact: the records packed into one byte arena, and indexes
//! for substring search over apelido, nome and the stack items.
//!
//! Text is matched under full Unicode case folding (`Straße` folds to `strasse`, `ΟΔΟΣ` and
//! `οδος` to `οδοσ`), which folds each character on its own, so a term folds the same way
//! wherever it appears. Two indexes serve a search:
//! - apelido and nome: each folded field is cut into three-byte sequences (a field shorter than
//!   three bytes is padded with NUL first), and each sequence keeps a compressed list of the
//!   people whose fields contain it. A term of three bytes or more can only be inside the
//!   fields of people listed under every one of its sequences, so a search walks the rarest
//!   list, checks the others, and confirms each candidate on its fields. A term of one or two
//!   bytes lies inside some sequence of every field that contains it, so such a search gathers
//!   the people of the sequences that contain the term, with nothing to confirm.
//! - the stack: items repeat (the contest uses 25 names), so each distinct item is stored once,
//!   people hold its number, and each item lists the people who have it. The distinct items are
//!   indexed by three-byte sequences in the same way, so that a search never reads them all.
//!
//! No search checks every person: at worst it reads the lists of the term's sequences.

mod fold;
mod grams;
mod lists;
mod pieces;
pub(crate) mod record;
mod sequences;
mod stack_items;

use std::hash::BuildHasher;

use hashbrown::{HashSet, HashTable};
use uuid::Uuid;

pub(crate) use fold::{fold, matches};
pub(crate) use grams::{for_each_gram, for_each_spaced_gram, grams_of_term, is_spaced_gram};
pub use pieces::PieceFilter;
pub use record::PersonRef;
use record::Records;
use sequences::{PAD, Sequences};
use stack_items::StackItems;

/// What a search found, and the work it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Searched {
    /// People appended.
    pub(crate) people: usize,
    /// Distinct stack items whose people the search went through.
    pub(crate) items_visited: usize,
}

struct Positions {
    found: Vec<u32>,
    items_visited: usize,
}

#[derive(Default)]
pub struct SearchIndex {
    ids: Vec<Uuid>,
    /// Where each person's packed record starts in `records`.
    offsets: Vec<u32>,
    records: Records,
    /// Positions, found by the id at that position.
    by_id: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// apelido and nome, by sequence; the ids are positions.
    text: Sequences,
    stack: StackItems,
}

impl SearchIndex {
    /// How many people the index holds.
    pub(crate) fn count(&self) -> usize {
        self.ids.len()
    }

    /// Whether the person with this id is here.
    pub(crate) fn contains(&self, id: &Uuid) -> bool {
        self.position(id).is_some()
    }

    /// About how many bytes of memory the index holds, as the allocator will have given them:
    /// its size classes round each allocation up, by about 1/16 here.
    pub fn heap_bytes(&self) -> usize {
        let counted = self.ids.capacity() * size_of::<Uuid>()
            + self.offsets.capacity() * size_of::<u32>()
            + self.records.heap_bytes()
            + self.by_id.allocation_size()
            + self.text.heap_bytes()
            + self.stack.heap_bytes();
        counted + counted / 16
    }

    /// Adds `person` unless a person with its id is already here; returns whether it was added.
    pub fn insert(&mut self, person: &PersonRef) -> bool {
        if self.contains(&person.id) {
            return false;
        }
        let position = u32::try_from(self.ids.len()).expect("fewer than 2^32 people");
        let apelido = fold(person.apelido);
        let nome = fold(person.nome);
        self.text.add(position, [&*apelido, &*nome]);

        let stack = &mut self.stack;
        let start = self.records.pack(person, |item| {
            let number = stack.number(item);
            stack.people.append(number, position);
            number
        });
        self.offsets.push(start);

        let hasher = &self.hasher;
        let ids = &self.ids;
        self.by_id
            .insert_unique(hasher.hash_one(person.id), position, |&p| {
                hasher.hash_one(ids[p as usize])
            });
        self.ids.push(person.id);
        true
    }

    /// Files the people inserted since the last call under their sequences and stack items:
    /// searches see them only then. Filing many at once is much faster than one by one, as
    /// each list is then extended in one go.
    pub fn flush(&mut self) {
        self.text.lists.flush();
        self.stack.people.flush();
    }

    /// Gives back the room the lists keep for growth: after a large load, or before deciding
    /// that the budget is reached. (The vectors by position keep theirs: giving it back would
    /// only have the next person double them again.)
    pub fn shrink(&mut self) {
        self.text.lists.shrink();
        self.stack.people.shrink();
    }

    /// The record of the person with this id, as `GET /pessoas/<id>` returns it.
    pub(crate) fn get(&self, id: &Uuid) -> Option<Vec<u8>> {
        let position = self.position(id)?;
        let mut json = Vec::with_capacity(256);
        self.render(position, &mut json);
        Some(json)
    }

    /// Up to `limit` people with `term` inside their apelido, nome or one stack item,
    /// case-insensitively, each as its record appended to `out` after a comma when `out` holds
    /// one already.
    pub fn search(&self, term: &str, limit: usize, out: &mut Vec<u8>) -> Searched {
        let searched = self.search_positions(&fold(term), limit);
        for &position in &searched.found {
            if out.len() > 1 {
                out.push(b',');
            }
            self.render(position as usize, out);
        }
        Searched {
            people: searched.found.len(),
            items_visited: searched.items_visited,
        }
    }

    /// The positions of up to `limit` people matching the folded `term`.
    fn search_positions(&self, term: &str, limit: usize) -> Positions {
        let mut found: Vec<u32> = Vec::with_capacity(limit.min(64));
        let mut items_visited = 0;
        if term.is_empty() || term.as_bytes().contains(&PAD) || limit == 0 {
            return Positions {
                found,
                items_visited,
            };
        }
        // At most `limit` people, so a list is the quickest set.
        let mut take = |position: u32| {
            if !found.contains(&position) {
                found.push(position);
            }
            found.len() < limit
        };
        let more = self.text.search(
            term,
            |position| {
                let (apelido, nome) = self.texts(position as usize);
                [apelido, nome]
                    .into_iter()
                    .any(|field| fold(field).contains(term))
            },
            &mut take,
        );
        if more {
            // An item may come once for each of its sequences that holds a short term; any
            // number of items may match, so each is looked up in constant time, in a set that
            // grows with the items visited rather than with all the items held.
            let mut items_seen = HashSet::new();
            self.stack.sequences.search(
                term,
                |number| self.stack.folded[number as usize].contains(term),
                |number| {
                    if !items_seen.insert(number) {
                        return true;
                    }
                    items_visited += 1;
                    self.stack.people.lists[number as usize]
                        .cursor()
                        .all(&mut take)
                },
            );
        }
        Positions {
            found,
            items_visited,
        }
    }

    /// Up to `n` distinct three-byte pieces of `term` (folded) that a database's trigram index
    /// narrows a search down by, those the fewest people here hold first: the least costly, if
    /// the people here are like the others. Apart for the names and for the stacks, which the
    /// index keeps apart: a piece every `Rust` holds may be rare in names. A piece is three ASCII
    /// letters or digits, or two with a space before or after them: `pg_trgm` indexes a word's
    /// edge as a trigram of its own, which a term with short words often needs (`m yust` has one
    /// trigram inside a word, `yus`).
    pub(crate) fn rarest_trigrams<'t>(&self, term: &'t str, n: usize) -> Narrowing<'t> {
        let pieces: Vec<(usize, usize, &'t str)> = term
            .as_bytes()
            .windows(3)
            .enumerate()
            .filter(|(_, window)| match **window {
                [b' ', b, c] | [b, c, b' '] => {
                    b.is_ascii_alphanumeric() && c.is_ascii_alphanumeric()
                }
                _ => window.iter().all(u8::is_ascii_alphanumeric),
            })
            .map(|(start, window)| {
                let key = [window[0], window[1], window[2]];
                let in_text = self.text.listed(&key).map_or(0, |(_, people)| people);
                let in_stack: usize = self.stack.sequences.listed(&key).map_or(0, |(slot, _)| {
                    self.stack.sequences.lists.lists[slot as usize]
                        .cursor()
                        .map(|item| self.stack.people.lists[item as usize].len())
                        .sum()
                });
                (in_text, in_stack, &term[start..start + 3])
            })
            .collect();
        let rarest = |count: fn(&(usize, usize, &'t str)) -> usize| {
            let mut counted: Vec<(usize, &'t str)> =
                pieces.iter().map(|piece| (count(piece), piece.2)).collect();
            counted.sort_unstable();
            counted.dedup_by_key(|(_, piece)| *piece);
            counted
                .into_iter()
                .take(n)
                .map(|(_, piece)| piece)
                .collect()
        };
        Narrowing {
            names: rarest(|piece| piece.0),
            stack: rarest(|piece| piece.1),
        }
    }

    fn position(&self, id: &Uuid) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.by_id
            .find(hash, |&p| self.ids[p as usize] == *id)
            .map(|&p| p as usize)
    }

    fn texts(&self, position: usize) -> (&str, &str) {
        self.records.texts(self.offsets[position])
    }

    /// Appends the person's record as JSON, the way `serde_json` writes a [`crate::domain::Pessoa`].
    fn render(&self, position: usize, out: &mut Vec<u8>) {
        let start = self.offsets[position];
        self.records
            .render(start, self.ids[position], &self.stack.names, out);
    }
}

/// The trigrams a search narrows the database's trigram index down by (see
/// [`SearchIndex::rarest_trigrams`]): for the apelido and nome, and for the stack's items.
#[derive(Debug)]
pub(crate) struct Narrowing<'t> {
    pub(crate) names: Vec<&'t str>,
    pub(crate) stack: Vec<&'t str>,
}

#[cfg(test)]
pub(super) mod tests;
