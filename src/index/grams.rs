//! Short grams: the pieces of text by which the database finds, past a full mirror, the people
//! a term that the trigram index cannot narrow down matches (see `sql/schema.sql`,
//! `pessoas_gramas`).
//!
//! A gram is one or two characters of a folded field. A term of one or two characters is a gram
//! itself. A longer term with three ASCII letters or digits in a row has a trigram that
//! `pg_trgm` indexes whatever the database's locale, so the trigram index serves it; any other
//! longer term holds each of its two-character pieces, and the people listed under any one of
//! them are every candidate, when that list is not full.
//!
//! Spaced grams: three or four characters of a folded field, holding a space. Such a term has one
//! trigram at most to narrow it down (`ab c` has `ab `, of every field that ends in `ab`), so
//! `rinha index-search` lists the people it indexes under these too (`pessoas_gramas_espaco`).
//! Longer pieces are not listed: at the sizes past a mirror every four-character list is full
//! already (76,573 lists of 50 at 10,000,000 people), and a full list of a piece leaves matches out.

use std::collections::BTreeSet;

use super::fold::fold;
use super::record::PersonRef;

/// Calls `each` with every gram of the person's apelido, nome and stack items, each field
/// folded and cut on its own, so that no gram spans two fields; a gram may come more than once.
pub(crate) fn for_each_gram(person: &PersonRef, mut each: impl FnMut(&str)) {
    for field in fields(person) {
        let folded = fold(field);
        let mut characters = folded.char_indices().peekable();
        while let Some((start, character)) = characters.next() {
            let one = start + character.len_utf8();
            each(&folded[start..one]);
            if let Some(&(_, next)) = characters.peek() {
                each(&folded[start..one + next.len_utf8()]);
            }
        }
    }
}

/// Calls `each` with every spaced gram of the person's fields, each folded and cut on its own; a
/// gram may come more than once.
pub(crate) fn for_each_spaced_gram(person: &PersonRef, mut each: impl FnMut(&str)) {
    for field in fields(person) {
        if !field.contains(' ') {
            continue;
        }
        let folded = fold(field);
        let starts: Vec<usize> = folded
            .char_indices()
            .map(|(start, _)| start)
            .chain([folded.len()])
            .collect();
        for length in [3, 4] {
            for window in starts.windows(length + 1) {
                let gram = &folded[window[0]..window[length]];
                if gram.contains(' ') {
                    each(gram);
                }
            }
        }
    }
}

/// The person's apelido, nome and stack items.
fn fields<'p>(person: &PersonRef<'p>) -> impl Iterator<Item = &'p str> {
    [person.apelido, person.nome]
        .into_iter()
        .chain(person.stack.iter().flatten().copied())
}

/// Whether `term` (folded) is a spaced gram, and so answered by its list.
pub(crate) fn is_spaced_gram(term: &str) -> bool {
    (3..=4).contains(&term.chars().count()) && term.contains(' ')
}

/// The grams by which the database finds the people matching `term` (folded), or None when
/// the trigram index narrows it down: the term itself when it is a gram, else its
/// two-character pieces.
pub(crate) fn grams_of_term(term: &str) -> Option<Vec<String>> {
    let characters: Vec<(usize, char)> = term.char_indices().collect();
    if characters.len() <= 2 {
        return Some(vec![term.to_owned()]);
    }
    let has_trigram = term
        .as_bytes()
        .windows(3)
        .any(|window| window.iter().all(u8::is_ascii_alphanumeric));
    if has_trigram {
        return None;
    }
    let ends = characters
        .iter()
        .map(|&(start, _)| start)
        .skip(2)
        .chain([term.len()]);
    let pieces = characters
        .iter()
        .zip(ends)
        .map(|(&(start, _), end)| term[start..end].to_owned());
    Some(pieces.collect::<BTreeSet<_>>().into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::person;

    fn collected(walk: impl FnOnce(&mut dyn FnMut(&str))) -> BTreeSet<String> {
        let mut grams = BTreeSet::new();
        walk(&mut |gram| {
            grams.insert(gram.to_owned());
        });
        grams
    }

    fn grams_of(person: &PersonRef) -> BTreeSet<String> {
        collected(|each| for_each_gram(person, each))
    }

    fn spaced_grams_of(person: &PersonRef) -> BTreeSet<String> {
        collected(|each| for_each_spaced_gram(person, each))
    }

    fn strings(grams: &[&str]) -> BTreeSet<String> {
        grams.iter().map(|gram| gram.to_string()).collect()
    }

    #[test]
    fn a_person_has_every_piece_of_one_or_two_characters_of_each_field_folded() {
        let grams = grams_of(&person("Zé", "ab", Some(vec!["C#"])));
        let expected = ["z", "é", "zé", "a", "b", "ab", "c", "#", "c#"];
        assert_eq!(grams, strings(&expected));
        assert!(
            !grams_of(&person("ab", "cd", None)).contains("bc"),
            "never across fields"
        );
        assert!(grams_of(&person("STRASSE", "Straße", None)).contains("ss"));
    }

    #[test]
    fn a_person_has_every_piece_of_three_or_four_characters_with_a_space_of_each_field_folded() {
        let grams = spaced_grams_of(&person("a b", "Zé Ná", Some(vec!["Ruby on", "Go"])));
        let expected = [
            "a b", "zé ", "é n", " ná", "zé n", "é ná", "by ", "y o", " on", "uby ", "by o", "y on",
        ];
        assert_eq!(grams, strings(&expected));
        assert!(spaced_grams_of(&person("ab", "cd", Some(vec!["ef"]))).is_empty());
    }

    #[test]
    fn terms_of_three_or_four_characters_with_a_space_are_spaced_grams() {
        assert!(is_spaced_gram("a b"));
        assert!(is_spaced_gram("zé n"));
        assert!(!is_spaced_gram("abc"));
        assert!(!is_spaced_gram("a "));
        assert!(!is_spaced_gram("abc de"));
    }

    #[test]
    fn only_terms_without_three_ascii_letters_or_digits_in_a_row_need_grams() {
        assert_eq!(grams_of_term("zq"), Some(vec!["zq".to_owned()]));
        assert_eq!(grams_of_term("é"), Some(vec!["é".to_owned()]));
        assert_eq!(grams_of_term("zqx"), None);
        assert_eq!(grams_of_term("josé"), None);
        assert_eq!(
            grams_of_term("c++"),
            Some(vec!["++".to_owned(), "c+".to_owned()])
        );
        assert_eq!(
            grams_of_term("ção"),
            Some(vec!["ão".to_owned(), "çã".to_owned()])
        );
        assert_eq!(
            grams_of_term("o b o"),
            Some(vec![
                " b".to_owned(),
                " o".to_owned(),
                "b ".to_owned(),
                "o ".to_owned()
            ])
        );
    }
}
