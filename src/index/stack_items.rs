//! The distinct stack items: each stored once, numbered, with the people who have it, and
//! indexed by sequence so that a search never reads them all.

use hashbrown::HashMap;

use super::fold::fold;
use super::lists::Lists;
use super::sequences::Sequences;

#[derive(Default)]
pub(super) struct StackItems {
    pub(super) names: Vec<Box<str>>,
    pub(super) folded: Vec<Box<str>>,
    pub(super) numbers: HashMap<Box<str>, u32>,
    /// The bytes of every name, held twice, and of every folded name: counted as they come,
    /// since the budget is checked for every person.
    pub(super) text_bytes: usize,
    /// For each item, the positions of the people who have it.
    pub(super) people: Lists,
    /// The folded items, by sequence; the ids are item numbers.
    pub(super) sequences: Sequences,
}

impl StackItems {
    pub(super) fn heap_bytes(&self) -> usize {
        // Each name is held twice (as a key and in `names`), each with its own allocation.
        self.names.capacity() * size_of::<Box<str>>() * 2
            + self.folded.capacity() * size_of::<Box<str>>()
            + self.text_bytes
            + self.numbers.allocation_size()
            + self.people.heap_bytes()
            + self.sequences.heap_bytes()
    }

    /// The number of `item`, given a new one when it is new.
    pub(super) fn number(&mut self, item: &str) -> u32 {
        if let Some(&number) = self.numbers.get(item) {
            return number;
        }
        let number = self.people.new_list();
        let folded = fold(item);
        self.sequences.add(number, [&*folded]);
        self.sequences.lists.flush();
        self.text_bytes += item.len() * 2 + folded.len();
        self.folded.push(folded.into());
        self.names.push(item.into());
        self.numbers.insert(item.into(), number);
        number
    }
}
