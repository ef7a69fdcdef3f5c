//! Every person, in memory: the records as the API returns them, and an index for substring
//! search over apelido, nome and the stack items.
//!
//! Each field is case-folded (every character lowercased on its own, so a term folds the same
//! way wherever it appears) and the index maps every three-byte sequence of a folded field to
//! the people whose fields contain it. A term of three bytes or more can only be inside the
//! fields of people listed under each of its own three-byte sequences, so a search checks only
//! the people of its rarest one; a shorter term checks people in order until enough match.

use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::Pessoa;

/// Separates the folded fields of a person. No field holds it (validation rejects NUL), so a
/// term without it never matches across two fields.
const FIELD_SEPARATOR: char = '\0';

#[derive(Default)]
pub struct SearchIndex {
    people: Vec<Entry>,
    by_id: HashMap<Uuid, u32>,
    /// For each three-byte sequence, the positions in `people` of those whose folded fields
    /// contain it, ascending.
    trigrams: HashMap<[u8; 3], Vec<u32>>,
}

struct Entry {
    /// The record as `GET /pessoas/<id>` returns it.
    json: Box<[u8]>,
    /// apelido, nome and the stack items, folded, separated by [`FIELD_SEPARATOR`].
    fields: Box<str>,
}

impl SearchIndex {
    /// How many people the index holds.
    pub fn count(&self) -> usize {
        self.people.len()
    }

    /// Adds `pessoa` unless a person with its id is already here; returns whether it was added.
    pub fn insert(&mut self, pessoa: &Pessoa) -> bool {
        if self.by_id.contains_key(&pessoa.id) {
            return false;
        }
        let position = u32::try_from(self.people.len()).expect("fewer than 2^32 people");
        let fields = folded_fields(pessoa);
        let mut keys: Vec<[u8; 3]> = fields
            .split(FIELD_SEPARATOR)
            .flat_map(|field| trigrams(field.as_bytes()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            self.trigrams.entry(key).or_default().push(position);
        }
        self.by_id.insert(pessoa.id, position);
        self.people.push(Entry {
            json: serde_json::to_vec(pessoa)
                .expect("a person serialises")
                .into(),
            fields: fields.into(),
        });
        true
    }

    /// The record of the person with this id, as JSON.
    pub fn get(&self, id: &Uuid) -> Option<&[u8]> {
        let position = *self.by_id.get(id)?;
        Some(&self.people[position as usize].json)
    }

    /// The records (as JSON) of up to `limit` people with `term` inside their apelido, nome or
    /// one stack item, case-insensitively.
    pub fn search(&self, term: &str, limit: usize) -> Vec<&[u8]> {
        let term = fold(term);
        if term.contains(FIELD_SEPARATOR) {
            return Vec::new();
        }
        let matches = |position: &usize| self.people[*position].fields.contains(term.as_str());
        let found: Vec<usize> = if term.len() < 3 {
            (0..self.people.len()).filter(matches).take(limit).collect()
        } else {
            let mut rarest: Option<&Vec<u32>> = None;
            for key in trigrams(term.as_bytes()) {
                let Some(list) = self.trigrams.get(&key) else {
                    // Nobody has this sequence, so nobody has the term.
                    return Vec::new();
                };
                if rarest.is_none_or(|shortest| list.len() < shortest.len()) {
                    rarest = Some(list);
                }
            }
            rarest
                .into_iter()
                .flatten()
                .map(|&position| position as usize)
                .filter(matches)
                .take(limit)
                .collect()
        };
        found
            .into_iter()
            .map(|position| &*self.people[position].json)
            .collect()
    }
}

/// Lowercases every character on its own, so that folding a term and folding a field that
/// contains it agree (whole-string lowercasing treats a final sigma by its context).
fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

fn folded_fields(pessoa: &Pessoa) -> String {
    let mut fields = fold(&pessoa.apelido);
    fields.push(FIELD_SEPARATOR);
    fields.push_str(&fold(&pessoa.nome));
    for item in pessoa.stack.iter().flatten() {
        fields.push(FIELD_SEPARATOR);
        fields.push_str(&fold(item));
    }
    fields
}

fn trigrams(bytes: &[u8]) -> impl Iterator<Item = [u8; 3]> + '_ {
    bytes
        .windows(3)
        .map(|window| [window[0], window[1], window[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pessoa(apelido: &str, nome: &str, stack: Option<&[&str]>) -> Pessoa {
        Pessoa {
            id: Uuid::new_v4(),
            apelido: apelido.to_owned(),
            nome: nome.to_owned(),
            nascimento: "2000-01-01".to_owned(),
            stack: stack.map(|items| items.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn index_of(people: &[Pessoa]) -> SearchIndex {
        let mut index = SearchIndex::default();
        for pessoa in people {
            assert!(index.insert(pessoa));
        }
        index
    }

    fn apelidos(index: &SearchIndex, term: &str) -> Vec<String> {
        let mut found: Vec<String> = index
            .search(term, 50)
            .into_iter()
            .map(|json| {
                let record: serde_json::Value = serde_json::from_slice(json).unwrap();
                record["apelido"].as_str().unwrap().to_owned()
            })
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
        assert_eq!(
            apelidos(&index, "οσ"),
            ["outro"],
            "a final sigma folds as any other"
        );
        assert_eq!(
            apelidos(&index, "no"),
            ["Nodinho", "zeca"],
            "under three bytes"
        );
        assert_eq!(apelidos(&index, "z"), ["zeca"]);
        assert!(apelidos(&index, "kotlin").is_empty());
    }

    #[test]
    fn never_matches_across_fields() {
        let index = index_of(&[pessoa("zeca", "José", Some(&["Samba", "Node"]))]);
        assert!(apelidos(&index, "sambanode").is_empty());
        assert!(apelidos(&index, "zecajosé").is_empty());
        assert!(apelidos(&index, "a\0n").is_empty());
        assert!(apelidos(&index, "a\0").is_empty());
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
    }

    #[test]
    fn returns_at_most_the_limit() {
        let people: Vec<Pessoa> = (0..60)
            .map(|i| pessoa(&format!("muitos{i}"), "Nome", None))
            .collect();
        let index = index_of(&people);
        assert_eq!(index.search("muitos", 50).len(), 50);
        assert_eq!(index.search("os", 7).len(), 7);
        assert_eq!(
            index.search("muitos5", 50).len(),
            11,
            "muitos5 and muitos50 to 59"
        );
    }

    #[test]
    fn keeps_one_entry_per_id_and_returns_records_by_id() {
        let zeca = pessoa("zeca", "José", Some(&["Samba"]));
        let mut index = index_of(std::slice::from_ref(&zeca));
        assert!(!index.insert(&zeca), "already present");
        assert_eq!(index.count(), 1);
        assert_eq!(apelidos(&index, "zeca"), ["zeca"]);
        let record: serde_json::Value =
            serde_json::from_slice(index.get(&zeca.id).unwrap()).unwrap();
        assert_eq!(record["nome"], "José");
        assert_eq!(record["stack"], serde_json::json!(["Samba"]));
        assert_eq!(record["id"], zeca.id.to_string());
        assert!(index.get(&Uuid::new_v4()).is_none());
    }
}
