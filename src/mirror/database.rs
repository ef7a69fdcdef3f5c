//! Searching the database for what memory cannot answer: the people a mirror leaves out.
//!
//! Every match in memory was found (fewer than [`SEARCH_LIMIT`] of them), so the database is
//! asked for the others, and any it returns from memory are skipped: at most
//! `SEARCH_LIMIT - wanted` of them match. A term of one or two characters, or one without three
//! ASCII letters or digits in a row, which the trigram index cannot narrow down, is found
//! through the short grams' lists (`pessoas_gramas`); any other through the trigram index
//! (`sql/search-index.sql`), but a term of three or four characters with a space, which has one
//! trigram at most to narrow it down, through its own list (`pessoas_gramas_espaco`). The
//! database lower-cases, so each row it returns is checked with this replica's own folding.

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

    /// Appends up to `wanted` people whose searchable text the database finds matching the
    /// term. The trigram index narrows the rows down by a few of the term's rarest trigrams here,
    /// in the names and in the stacks apart: each trigram the index reads costs it the whole list
    /// of the rows that hold it.
    async fn search_by_trigrams(
        &self,
        term: &str,
        wanted: usize,
        array: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let pattern = SearchPattern::of(term);
        let (mut names, mut stack, indexed_before, left_out_from) = {
            let state = self.read();
            let narrowing = state
                .people
                .rarest_trigrams(&pattern.literal, NARROWING_TRIGRAMS);
            let owned = |trigrams: Vec<&str>| -> Vec<String> {
                trigrams.into_iter().map(str::to_owned).collect()
            };
            (
                owned(narrowing.names),
                owned(narrowing.stack),
                state.indexed_before,
                state.left_out_from,
            )
        };
        // A term with parts that are not literal in the database's text (`ss`, `σ`) narrows by
        // the whole expression too, which pg_trgm reads as alternatives: its literal runs alone
        // may be short and common (`epa` of `epass`). So does a term with no trigram here, which
        // comes only when its grams' lists were all full.
        for narrowing in [&mut names, &mut stack] {
            if pattern.literal != term || narrowing.is_empty() {
                narrowing.truncate(NARROWING_TRIGRAMS - 1);
                narrowing.insert(0, pattern.regex.clone());
            }
        }
        // The database checks the whole expression, so every row it returns matches but those in
        // memory, which are at most `SEARCH_LIMIT - wanted`: one page of the limit holds every
        // match that can be appended.
        let limit = SEARCH_LIMIT;
        let mut rows = Vec::new();
        let mut within_budget = true;
        if let Some(before) = indexed_before {
            if let Some(found) = self.search_spaced_gram(term, before).await? {
                rows = found;
            } else {
                let indexed =
                    self.store
                        .search_indexed(before, &names, &stack, &pattern.regex, limit as i64);
                match indexed.await? {
                    Some(found) => rows = found,
                    None => within_budget = false,
                }
            }
        }
        if let Some(from) = left_out_from
            && within_budget
            && rows.len() < limit
        {
            let left = (limit - rows.len()) as i64;
            match self.store.search_from(from, &pattern.regex, left).await? {
                Some(found) => rows.extend(found),
                None => within_budget = false,
            }
        }
        if !within_budget {
            self.counters.searches_cut_short.inc();
        }
        self.append_matches(&rows, term, wanted, array);
        Ok(())
    }

    /// The people the search index's snapshot saw whom `term` (folded) matches and memory does
    /// not hold, when it is a spaced gram (see `index::is_spaced_gram`): those on its list, enough
    /// of them when it is full; or None when it is not, or the lists of a snapshot from `before`
    /// on are not all written.
    async fn search_spaced_gram(
        &self,
        term: &str,
        before: i64,
    ) -> Result<Option<Vec<Row>>, StoreError> {
        if !index::is_spaced_gram(term) {
            return Ok(None);
        }
        let Some(list) = self.store.spaced_gram_list(term, before).await? else {
            return Ok(None);
        };
        let outside: Vec<Uuid> = {
            let state = self.read();
            list.into_iter()
                .filter(|id| !state.people.contains(id))
                .collect()
        };
        if outside.is_empty() {
            return Ok(Some(Vec::new()));
        }
        Ok(Some(self.store.find_many(&outside).await?))
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
        self.counters.search_database_rows.inc_by(rows.len() as u64);
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

/// A term (folded) as PostgreSQL's regular expression over the text the database lower-cases
/// (`pessoas_busca`): it matches wherever the text's full case folding holds the term. Literal,
/// but for what lower case leaves apart and folding does not: a run of `s` matches any `s` and `ß`
/// that fold to it (`ss` is `ss` or `ß`), and `σ β θ φ π κ ρ ε μ ṡ ι` their variant forms too
/// (`ς ϐ ϑ ϕ ϖ ϰ ϱ ϵ µ ẛ ι`). Still missed: a long `ſ`, the Latin and Armenian ligatures, Greek
/// letters with iota subscript, a dotted capital I and Cherokee.
struct SearchPattern {
    regex: String,
    /// The term, with a line in place of each part that is not literal in the database's text:
    /// where its trigrams come from.
    literal: String,
}

impl SearchPattern {
    fn of(term: &str) -> Self {
        let mut regex = String::with_capacity(term.len() + 2);
        let mut literal = String::with_capacity(term.len());
        let mut characters = term.chars().peekable();
        while let Some(character) = characters.next() {
            if character == 's' && characters.peek() == Some(&'s') {
                let mut run = 1;
                while characters.next_if_eq(&'s').is_some() {
                    run += 1;
                }
                regex.push_str(&s_run(run));
                literal.push('\n');
            } else if let Some(variants) = variant_forms(character) {
                regex.push('[');
                regex.push(character);
                regex.push_str(variants);
                regex.push(']');
                literal.push('\n');
            } else {
                // In PostgreSQL's expressions a backslash makes any character but a letter or
                // digit literal.
                if character.is_ascii() && !character.is_ascii_alphanumeric() {
                    regex.push('\\');
                }
                regex.push(character);
                literal.push(character);
            }
        }
        SearchPattern { regex, literal }
    }
}

/// The forms other than `letter` that lower case keeps and full case folding maps to it.
fn variant_forms(letter: char) -> Option<&'static str> {
    Some(match letter {
        'σ' => "ς",
        'β' => "ϐ",
        'θ' => "ϑ",
        'φ' => "ϕ",
        'π' => "ϖ",
        'κ' => "ϰ",
        'ρ' => "ϱ",
        'ε' => "ϵ",
        'μ' => "µ",
        'ṡ' => "ẛ",
        'ι' => "\u{1FBE}\u{345}",
        _ => return None,
    })
}

/// An expression for a run of `length` folded `s`: every sequence of `s` and `ß` that folds to
/// it, for the runs a name may hold; any sequence of at least half as many, past that.
fn s_run(length: usize) -> String {
    fn sequences(length: usize) -> Vec<String> {
        match length {
            0 => vec![String::new()],
            1 => vec!["s".to_owned()],
            _ => {
                let ones = sequences(length - 1)
                    .into_iter()
                    .map(|rest| format!("s{rest}"));
                let twos = sequences(length - 2)
                    .into_iter()
                    .map(|rest| format!("ß{rest}"));
                ones.chain(twos).collect()
            }
        }
    }
    match length {
        ..=6 => format!("(?:{})", sequences(length).join("|")),
        _ => format!("[sß]{{{},{length}}}", length.div_ceil(2)),
    }
}

#[cfg(test)]
mod tests {
    use super::SearchPattern;

    #[test]
    fn search_patterns_match_terms_literally_and_what_lower_case_leaves_apart() {
        let regex = |term| SearchPattern::of(term).regex;
        assert_eq!(regex("c++ é"), "c\\+\\+\\ é");
        assert_eq!(regex("100%_a\\b"), "100\\%\\_a\\\\b");
        assert_eq!(regex("strasse"), "stra(?:ss|ß)e");
        assert_eq!(regex("sss"), "(?:sss|sß|ßs)");
        assert_eq!(regex("ssssssss"), "[sß]{4,8}");
        assert_eq!(regex("οδοσ"), "οδο[σς]");
        let pattern = SearchPattern::of("a stra");
        assert_eq!(pattern.literal, "a stra");
        assert_eq!(SearchPattern::of("epass σb").literal, "epa\n \nb");
    }
}
