//! Text search by three-byte sequences: which strings contain which sequence.

use hashbrown::HashMap;

use super::lists::{Cursor, List, Lists};

/// Pads a field shorter than a sequence. No field holds it (validation rejects NUL), so no term
/// that could match contains it.
pub(super) const PAD: u8 = 0;

/// Strings by their three-byte sequences: for each sequence, the ids of the strings that contain
/// it (a string shorter than a sequence is padded with NUL first). Ids are added in increasing
/// order.
#[derive(Default)]
pub(super) struct Sequences {
    pub(super) slots: HashMap<[u8; 3], u32>,
    pub(super) keys: Vec<[u8; 3]>,
    pub(super) lists: Lists,
    /// Reused for each string added.
    pub(super) scratch: Vec<[u8; 3]>,
}

impl Sequences {
    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.allocation_size()
            + self.keys.capacity() * 3
            + self.lists.heap_bytes()
            + self.scratch.capacity() * 3
    }

    /// Queues `id` under every sequence of `fields`; see [`Lists::flush`].
    pub(super) fn add<'s>(&mut self, id: u32, fields: impl IntoIterator<Item = &'s str>) {
        self.scratch.clear();
        for field in fields {
            match *field.as_bytes() {
                [] => {}
                [a] => self.scratch.push([PAD, a, PAD]),
                [a, b] => self.scratch.extend([[PAD, a, b], [a, b, PAD]]),
                ref bytes => self
                    .scratch
                    .extend(bytes.windows(3).map(|w| [w[0], w[1], w[2]])),
            }
        }
        let Sequences {
            slots,
            keys,
            lists,
            scratch,
        } = self;
        // A sequence may repeat: the list holds the id once (see `List::extend`).
        for key in scratch.iter() {
            let slot = *slots.entry(*key).or_insert_with(|| {
                keys.push(*key);
                lists.new_list()
            });
            lists.append(slot, id);
        }
    }

    /// The ids listed under `sequence`, each once: how many strings contain it.
    pub(super) fn listed(&self, sequence: &[u8; 3]) -> Option<(u32, usize)> {
        let slot = *self.slots.get(sequence)?;
        Some((slot, self.lists.lists[slot as usize].len()))
    }

    /// Calls `take` with the ids of strings that contain `term` (folded, without NUL), some
    /// perhaps more than once, until it returns false. `confirm` tells whether the string of an
    /// id really contains the term, for the ids that sequences alone cannot decide. Returns
    /// false when `take` asked to stop.
    pub(super) fn search(
        &self,
        term: &str,
        mut confirm: impl FnMut(u32) -> bool,
        mut take: impl FnMut(u32) -> bool,
    ) -> bool {
        let term = term.as_bytes();
        if term.len() < 3 {
            // Every sequence that holds the term belongs only to strings that contain it.
            for (slot, key) in self.keys.iter().enumerate() {
                if key.windows(term.len()).any(|window| window == term) {
                    for id in self.lists.lists[slot].cursor() {
                        if !take(id) {
                            return false;
                        }
                    }
                }
            }
            return true;
        }
        let mut slots = Vec::with_capacity(term.len() - 2);
        for window in term.windows(3) {
            match self.slots.get(window) {
                Some(&slot) => slots.push(slot),
                // Nobody has this sequence, so nobody has the term.
                None => return true,
            }
        }
        slots.sort_unstable();
        slots.dedup();
        let mut lists: Vec<&List> = slots
            .iter()
            .map(|&slot| &self.lists.lists[slot as usize])
            .collect();
        lists.sort_unstable_by_key(|list| list.len());
        let (rarest, others) = lists
            .split_first()
            .expect("a term of 3 bytes has a sequence");
        // Candidates come in increasing order, so each other list is walked once, forwards.
        let mut others: Vec<Cursor> = others.iter().map(|list| list.cursor()).collect();
        for id in rarest.cursor() {
            if others.iter_mut().all(|list| list.seek(id)) && confirm(id) && !take(id) {
                return false;
            }
        }
        true
    }
}
