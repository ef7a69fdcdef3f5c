//! What a full mirror knows of the people it leaves out: a filter of the seven-byte pieces of
//! their folded fields. Each piece sets one bit of a bitset, chosen by its hash (a Bloom filter
//! with one hash). A term lies inside a field only if each of its pieces does, so a term of
//! seven bytes or more one of whose pieces finds its bit clear is inside none of the fields
//! added: the database need not be asked.
//!
//! A piece of random text sets a bit that others may share, so with the filter a little over
//! half full a piece alone proves little; but a term has as many pieces as it has bytes past
//! the sixth, and each must find its bit set: a random term of 20 bytes passes about once in
//! 10,000. Pieces shorter than seven bytes would not do: at ten million people nearly every
//! five- or six-letter piece is somewhere.

use super::fold::fold;
use super::record::PersonRef;

/// The bytes of a piece.
pub(crate) const PIECE: usize = 7;

/// About how many pieces a person of the contest's shapes has (an apelido of about 20 bytes
/// and a nome of about 70; the stack's items repeat), to size a filter.
const PIECES_PER_PERSON: u64 = 80;

/// The smallest filter, in bits.
const MIN_BITS: u64 = 1 << 16;

#[derive(Clone)]
pub struct PieceFilter {
    words: Vec<u64>,
    /// 64 less the bits of a bit's number: a hash shifted right by it is a bit's number.
    shift: u32,
}

impl PieceFilter {
    /// A filter for about `people` people, each bit set by at most about two pieces in three,
    /// but of at most `max_bytes`.
    pub fn sized_for(people: u64, max_bytes: usize) -> PieceFilter {
        let wanted = people
            .saturating_mul(PIECES_PER_PERSON * 3 / 2)
            .checked_next_power_of_two()
            .unwrap_or(1 << 63);
        let most = (max_bytes as u64 * 8).max(MIN_BITS);
        let most = if most.is_power_of_two() {
            most
        } else {
            most.next_power_of_two() / 2
        };
        PieceFilter::with_bits(wanted.clamp(MIN_BITS, most))
    }

    fn with_bits(bits: u64) -> PieceFilter {
        debug_assert!(bits.is_power_of_two() && bits >= 64);
        PieceFilter {
            words: vec![0; (bits / 64) as usize],
            shift: 64 - bits.trailing_zeros(),
        }
    }

    /// The filter whose bytes [`PieceFilter::to_bytes`] gave, if they make one.
    pub fn from_bytes(bytes: &[u8]) -> Option<PieceFilter> {
        let bits = bytes.len() as u64 * 8;
        if !bits.is_power_of_two() || bits < MIN_BITS {
            return None;
        }
        let mut filter = PieceFilter::with_bits(bits);
        for (word, chunk) in filter.words.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        }
        Some(filter)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.words
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .collect()
    }

    /// Adds the pieces of the person's apelido, nome and stack items, each folded.
    pub fn add(&mut self, person: &PersonRef) {
        let fields = [person.apelido, person.nome]
            .into_iter()
            .chain(person.stack.iter().flatten().copied());
        for field in fields {
            for piece in fold(field).as_bytes().windows(PIECE) {
                let bit = self.bit(piece);
                self.words[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
    }

    /// Whether some person added may have `term` (folded) inside a field: false only when one
    /// of its pieces was never added. A term shorter than a piece may be anywhere.
    pub fn may_hold(&self, term: &str) -> bool {
        term.as_bytes().windows(PIECE).all(|piece| {
            let bit = self.bit(piece);
            self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * size_of::<u64>()
    }

    /// The share of bits set.
    pub fn load(&self) -> f64 {
        let set: u64 = self
            .words
            .iter()
            .map(|word| u64::from(word.count_ones()))
            .sum();
        set as f64 / (self.words.len() * 64) as f64
    }

    fn bit(&self, piece: &[u8]) -> u64 {
        let value = piece
            .iter()
            .fold(0u64, |value, &byte| value << 8 | u64::from(byte));
        // Fibonacci hashing: the multiplication spreads every byte into the top bits.
        value.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::person;

    #[test]
    fn every_term_inside_a_field_added_may_be_held() {
        let mut filter = PieceFilter::sized_for(10, 1 << 20);
        filter.add(&person(
            "Zezinho",
            "José da Silva Straße",
            Some(vec!["TypeScript"]),
        ));
        for term in [
            "zezinho",
            "josé da silva",
            "strasse",
            "typescript",
            "eScRi",
            "ab",
        ] {
            assert!(filter.may_hold(&fold(term)), "{term}");
        }
        for term in ["zezinhoz", "silva straßex", "typescriptjosé", "qwertyuiop"] {
            assert!(!filter.may_hold(&fold(term)), "{term}");
        }
    }

    #[test]
    fn rules_out_nearly_every_random_term_at_its_sized_load() {
        // xorshift: random enough letters, the same each run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut text = |len: usize| -> String {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b'a' + (state % 26) as u8)
                })
                .collect()
        };
        let people = 20_000;
        let mut filter = PieceFilter::sized_for(people, 1 << 30);
        for _ in 0..people {
            let (apelido, nome) = (text(20), text(70));
            filter.add(&person(&apelido, &nome, None));
        }
        assert!(filter.load() < 0.6, "{}", filter.load());
        let passed = (0..10_000).filter(|_| filter.may_hold(&text(12))).count();
        assert!(
            passed < 200,
            "{passed} of 10,000 random 12-byte terms passed"
        );
        let copy = PieceFilter::from_bytes(&filter.to_bytes()).unwrap();
        assert_eq!(copy.words, filter.words);
    }
}
