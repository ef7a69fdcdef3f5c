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
pub(crate) use grams::{grams_of, grams_of_term};
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

    /// Up to `n` distinct three-byte pieces of `term` (folded) made of ASCII letters and digits,
    /// those the fewest people here hold first: the trigrams of a database's trigram index that
    /// narrow a search for the term down at the least cost, if the people here are like the
    /// others. People hold a piece in their apelido or nome, or through a stack item.
    pub(crate) fn rarest_trigrams<'t>(&self, term: &'t str, n: usize) -> Vec<&'t str> {
        let mut pieces: Vec<(usize, &'t str)> = term
            .as_bytes()
            .windows(3)
            .enumerate()
            .filter(|(_, window)| window.iter().all(u8::is_ascii_alphanumeric))
            .map(|(start, window)| {
                let key = [window[0], window[1], window[2]];
                let in_text = self.text.listed(&key).map_or(0, |(_, people)| people);
                let in_stack: usize = self.stack.sequences.listed(&key).map_or(0, |(slot, _)| {
                    self.stack.sequences.lists.lists[slot as usize]
                        .cursor()
                        .map(|item| self.stack.people.lists[item as usize].len())
                        .sum()
                });
                (in_text + in_stack, &term[start..start + 3])
            })
            .collect();
        pieces.sort_unstable();
        pieces.dedup_by_key(|(_, piece)| *piece);
        pieces.into_iter().take(n).map(|(_, piece)| piece).collect()
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::Pessoa;

    /// A person as the index takes one, for the tests of its parts.
    pub(super) fn person<'a>(
        apelido: &'a str,
        nome: &'a str,
        stack: Option<Vec<&'a str>>,
    ) -> PersonRef<'a> {
        PersonRef {
            id: Uuid::nil(),
            apelido,
            nome,
            nascimento: "2000-01-01",
            stack,
        }
    }

    fn pessoa(apelido: &str, nome: &str, stack: Option<&[&str]>) -> Pessoa {
        born(apelido, nome, "2000-01-01", stack)
    }

    fn born(apelido: &str, nome: &str, nascimento: &str, stack: Option<&[&str]>) -> Pessoa {
        let fields = crate::domain::PessoaPayload {
            apelido: Some(apelido.to_owned()),
            nome: Some(nome.to_owned()),
            nascimento: Some(nascimento.to_owned()),
            stack: stack.map(|items| items.iter().map(|s| s.to_string()).collect()),
        };
        Pessoa::try_from((Uuid::new_v4(), fields)).expect("a valid person")
    }

    fn index_of(people: &[Pessoa]) -> SearchIndex {
        let mut index = SearchIndex::default();
        for pessoa in people {
            assert!(index.insert(&pessoa.into()));
        }
        index.flush();
        index
    }

    fn records(index: &SearchIndex, term: &str, limit: usize) -> Vec<serde_json::Value> {
        let mut out = vec![b'['];
        index.search(term, limit, &mut out);
        out.push(b']');
        serde_json::from_slice(&out).expect("a JSON array")
    }

    fn apelidos(index: &SearchIndex, term: &str) -> Vec<String> {
        apelidos_up_to(index, term, 50)
    }

    fn apelidos_up_to(index: &SearchIndex, term: &str, limit: usize) -> Vec<String> {
        let mut found: Vec<String> = records(index, term, limit)
            .into_iter()
            .map(|record| record["apelido"].as_str().unwrap().to_owned())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn finds_terms_inside_one_field_in_any_case() {
        let index = index_of(&[
            pessoa("zeca", "José Pagodinho", Some(&["Samba", "Node"])),
            pessoa("Nodinho", "Fulano", None),
            pessoa("outro", "ΟΔΟΣ", Some(&["Python"])),
        ]);
        assert_eq!(apelidos(&index, "nod"), ["Nodinho", "zeca"]);
        assert_eq!(apelidos(&index, "PAGOD"), ["zeca"]);
        assert_eq!(apelidos(&index, "pYtHoN"), ["outro"]);
        assert_eq!(apelidos(&index, "JOSÉ"), ["zeca"]);
        assert_eq!(apelidos(&index, "no"), ["Nodinho", "zeca"], "two bytes");
        assert_eq!(apelidos(&index, "z"), ["zeca"], "one byte");
        assert_eq!(apelidos(&index, "é"), ["zeca"], "one character, two bytes");
        assert_eq!(apelidos(&index, "ODE"), ["zeca"], "in a stack item");
        assert!(apelidos(&index, "kotlin").is_empty());
        assert!(apelidos(&index, "q").is_empty());
    }

    #[test]
    fn folds_case_the_unicode_way() {
        let index = index_of(&[
            pessoa("rua", "Straße", None),
            pessoa("grego", "ΟΔΟΣ", Some(&["ΣΊΣΥΦΟΣ"])),
            pessoa("kelvin", "\u{212A}elvin", None),
        ]);
        assert_eq!(apelidos(&index, "STRASSE"), ["rua"]);
        assert_eq!(apelidos(&index, "straße"), ["rua"]);
        assert_eq!(apelidos(&index, "ss"), ["rua"]);
        assert_eq!(apelidos(&index, "οδος"), ["grego"], "final sigma");
        assert_eq!(apelidos(&index, "ΟΔΟΣ"), ["grego"]);
        assert_eq!(apelidos(&index, "οσ"), ["grego"]);
        assert_eq!(apelidos(&index, "σίσυφος"), ["grego"], "in a stack item");
        assert_eq!(
            apelidos(&index, "KELVIN"),
            ["kelvin"],
            "the Kelvin sign folds to k"
        );
    }

    #[test]
    fn never_matches_across_fields() {
        let index = index_of(&[pessoa("zeca", "José", Some(&["Samba", "Node"]))]);
        assert!(apelidos(&index, "sambanode").is_empty());
        assert!(apelidos(&index, "zecajosé").is_empty());
        assert!(apelidos(&index, "az").is_empty());
        assert!(apelidos(&index, "a\0n").is_empty());
        assert!(apelidos(&index, "a\0").is_empty());
        assert!(apelidos(&index, "\0").is_empty());
    }

    #[test]
    fn terms_are_literal() {
        let index = index_of(&[
            pessoa("cem", "100% certo", None),
            pessoa("sublinhado", "snake_case", None),
            pessoa("comum", "100 certo snakeXcase", None),
        ]);
        assert_eq!(apelidos(&index, "0%"), ["cem"]);
        assert_eq!(apelidos(&index, "%"), ["cem"]);
        assert_eq!(apelidos(&index, "e_c"), ["sublinhado"]);
        assert_eq!(apelidos(&index, "_"), ["sublinhado"]);
    }

    #[test]
    fn returns_at_most_the_limit_once_each() {
        let people: Vec<Pessoa> = (0..60)
            .map(|i| pessoa(&format!("muitos{i}"), "Nome muitos", Some(&["Go", "Go"])))
            .collect();
        let index = index_of(&people);
        assert_eq!(records(&index, "muitos", 50).len(), 50);
        assert_eq!(records(&index, "os", 7).len(), 7);
        assert_eq!(records(&index, "go", 100).len(), 60, "each person once");
        assert_eq!(records(&index, "o", 100).len(), 60, "each person once");
        assert_eq!(
            records(&index, "muitos5", 50).len(),
            11,
            "muitos5 and muitos50 to 59"
        );
    }

    #[test]
    fn a_search_visits_each_matching_item_once_however_many_match() {
        // A hostile writer's 49 people with 100 distinct items each, every item holding the
        // term twice, so that each comes back under several of the term's sequences.
        let people: Vec<Pessoa> = (0..49)
            .map(|person| {
                let items: Vec<String> = (0..100).map(|i| format!("zq{person}x{i}zq")).collect();
                let items: Vec<&str> = items.iter().map(String::as_str).collect();
                pessoa(&format!("hostil{person}"), "Nome", Some(&items))
            })
            .collect();
        let mut index = index_of(&people);
        index.insert(&(&pessoa("outro", "Nome", Some(&["Rust"]))).into());
        index.flush();
        for term in ["zq", "ZQ", "q0x1", "x17"] {
            let expected_items = people
                .iter()
                .flat_map(|p| p.stack().into_iter().flatten())
                .filter(|item| fold(item.as_ref()).contains(&*fold(term)))
                .count();
            let mut out = vec![b'['];
            let searched = index.search(term, 50, &mut out);
            assert_eq!(
                searched.items_visited, expected_items,
                "{term}: each matching item once"
            );
            let expected_people = people
                .iter()
                .filter(|&p| matches(&p.into(), &fold(term)))
                .count();
            assert_eq!(searched.people, expected_people, "{term}");
        }
    }

    #[test]
    fn records_come_back_as_given() {
        let zeca = pessoa(
            "zeca \"o\" \\",
            "José\tda Silva",
            Some(&["Samba", "C#", "Samba"]),
        );
        let nobody = born("ninguém", "N", "1999-12-31", None);
        let empty = pessoa("vazio", "V", Some(&[]));
        let mut index = index_of(&[zeca.clone(), nobody.clone(), empty.clone()]);
        assert!(!index.insert(&(&zeca).into()), "already present");
        assert_eq!(index.count(), 3);
        for pessoa in [&zeca, &nobody, &empty] {
            assert_eq!(
                index.get(&pessoa.id()).unwrap(),
                serde_json::to_vec(pessoa).unwrap(),
                "{pessoa:?}"
            );
        }
        assert!(index.get(&Uuid::new_v4()).is_none());
    }

    #[test]
    fn finds_every_match_among_many_people() {
        // Lists long enough to be packed, and terms whose sequences must be intersected.
        let people: Vec<Pessoa> = (0..3000)
            .map(|i| {
                pessoa(
                    &format!("{}ana{i}", i % 7),
                    &format!("nome {}", i % 13),
                    None,
                )
            })
            .collect();
        let index = index_of(&people);
        for term in [
            "ana1", "3ana2", "ana", "nome 1", "e 12", "6ana29", "5ana2999",
        ] {
            let found = apelidos_up_to(&index, term, people.len());
            let mut expected: Vec<String> = people
                .iter()
                .filter(|&p| matches(&p.into(), term))
                .map(|p| p.apelido().as_ref().to_owned())
                .collect();
            expected.sort();
            assert_eq!(found, expected, "{term}");
        }
    }

    #[test]
    fn counts_what_it_holds() {
        let mut index = SearchIndex::default();
        let empty = index.heap_bytes();
        for i in 0..1000 {
            index.insert(&(&pessoa(&format!("p{i}"), "Fulano de Tal", Some(&["Rust"]))).into());
        }
        let full = index.heap_bytes();
        assert!(full > empty + 1000 * 40, "{empty} then {full}");
    }
}
