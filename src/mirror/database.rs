//! Searching the database for what memory cannot answer: the people a mirror leaves out.
//!
//! Every match in memory was found (fewer than [`SEARCH_LIMIT`] of them), so the database is
//! asked for the others, and any it returns from memory are skipped: at most
//! `SEARCH_LIMIT - wanted` of them match. A term of one or two characters, or one without three
//! ASCII letters or digits in a row, which the trigram index cannot narrow down, is found
//! through the short grams' lists (`pessoas_gramas`); any other through the trigram index
//! (`sql/search-index.sql`). The database lower-cases, so each row it returns is checked with
//! this replica's own folding.

use std::collections::HashSet;

use tokio_postgres::Row;
use uuid::Uuid;

use super::{Mirror, SEARCH_LIMIT};
use crate::index::record::render_record;
use crate::index::{self};
use crate::store::StoreError;

/// How many of a term's trigrams narrow a search in the trigram index: three random ones leave
/// about one row in ten million to check.
const NARROWING_TRIGRAMS: usize = 3;

impl Mirror {
    /// Appends up to `wanted` people matching `term` (folded) who are not in memory: those in
    /// memory were searched there, and every match found, as it found fewer than the limit.
    /// So at most `SEARCH_LIMIT - wanted` of the people the database finds are in memory.
    pub(super) async fn search_database(
        &self,
        term: &str,
        wanted: usize,
        array: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let Some(grams) = index::grams_of_term(term) else {
            return self.search_by_trigrams(term, wanted, array).await;
        };
        let lists = self.store.gram_lists(&grams).await?;
        if lists.len() < grams.len() {
            // A gram nobody's fields hold.
            return Ok(());
        }
        let shortest = lists.into_iter().map(|(_, ids)| ids).min_by_key(Vec::len);
        let candidates = shortest.unwrap_or_default();
        // A full list of the term itself lists enough matches; a full list of one of its
        // pieces may leave matches out, and so does every one of them here.
        if candidates.len() >= SEARCH_LIMIT && grams.len() > 1 {
            return self.search_by_trigrams(term, wanted, array).await;
        }
        let outside: Vec<Uuid> = {
            let state = self.read();
            candidates
                .into_iter()
                .filter(|id| !state.people.contains(id))
                .collect()
        };
        if outside.is_empty() {
            return Ok(());
        }
        let rows = self.store.find_many(&outside).await?;
        self.append_matches(&rows, term, wanted, array);
        Ok(())
    }

    /// Appends up to `wanted` people whose searchable text the database finds LIKE the term.
    /// The trigram index narrows the rows down by the term's rarest trigrams here, a few: each
    /// trigram the index reads costs it the whole list of the rows that hold it.
    async fn search_by_trigrams(
        &self,
        term: &str,
        wanted: usize,
        array: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let pattern = like_pattern(term);
        // The trigrams of the pattern's literal runs, apart: those the database's own text
        // holds wherever the term matches.
        let literal = pattern.replace(['%', '_'], "\n");
        let narrowing: Vec<String> = self
            .read()
            .people
            .rarest_trigrams(&literal, NARROWING_TRIGRAMS)
            .into_iter()
            .map(|trigram| format!("%{trigram}%"))
            .collect();
        // A term with no ASCII trigram comes here only when its grams' lists were all full: the
        // index then narrows by what trigrams it finds in the whole pattern.
        let narrowing = match narrowing.is_empty() {
            true => vec![pattern.clone()],
            false => narrowing,
        };
        let (indexed_before, left_out_from) = {
            let state = self.read();
            (state.indexed_before, state.left_out_from)
        };
        let start = array.len();
        // Room for the matches in memory, and more only when rows the database finds but
        // folding does not match crowd out others.
        let mut limit = SEARCH_LIMIT;
        loop {
            array.truncate(start);
            let mut rows = Vec::new();
            if let Some(before) = indexed_before {
                let indexed = self
                    .store
                    .search_indexed(before, &narrowing, &pattern, limit as i64);
                rows = indexed.await?;
            }
            if let Some(from) = left_out_from
                && rows.len() < limit
            {
                let left = (limit - rows.len()) as i64;
                rows.extend(self.store.search_from(from, &pattern, left).await?);
            }
            if self.append_matches(&rows, term, wanted, array) == wanted || rows.len() < limit {
                return Ok(());
            }
            limit *= 4;
        }
    }

    /// Appends up to `wanted` of the people in `rows` who match `term` (folded) and are not in
    /// memory; returns how many.
    fn append_matches(
        &self,
        rows: &[Row],
        term: &str,
        wanted: usize,
        array: &mut Vec<u8>,
    ) -> usize {
        let mut found = 0;
        // Two searches of the database may both find a row.
        let mut appended = HashSet::new();
        for row in rows {
            if found == wanted {
                break;
            }
            let Some((_, person)) = self.decoded(row) else {
                continue;
            };
            // The database lower-cases; this is full case folding, and fields apart.
            if self.read().people.contains(&person.id)
                || !index::matches(&person, term)
                || !appended.insert(person.id)
            {
                continue;
            }
            if array.len() > 1 {
                array.push(b',');
            }
            render_record(array, &person);
            found += 1;
        }
        found
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
