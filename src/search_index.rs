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

use std::borrow::Cow;
use std::hash::BuildHasher;

use bitpacking::{BitPacker, BitPacker4x};
use hashbrown::{HashMap, HashSet, HashTable};
use uuid::Uuid;

use crate::domain::Pessoa;

/// Pads a field shorter than a sequence. No field holds it (validation rejects NUL), so no term
/// that could match contains it.
const PAD: u8 = 0;

/// Marks a null stack in a packed record.
const NULL_STACK: u64 = 0;

/// A person's fields, borrowed from wherever they were read.
pub struct PersonRef<'a> {
    pub id: Uuid,
    pub apelido: &'a str,
    pub nome: &'a str,
    /// `YYYY-MM-DD`, a real date.
    pub nascimento: &'a str,
    pub stack: Option<Vec<&'a str>>,
}

impl<'a> From<&'a Pessoa> for PersonRef<'a> {
    fn from(pessoa: &'a Pessoa) -> Self {
        PersonRef {
            id: pessoa.id(),
            apelido: pessoa.apelido().as_ref(),
            nome: pessoa.nome().as_ref(),
            nascimento: pessoa.nascimento().as_ref(),
            stack: pessoa
                .stack()
                .map(|items| items.iter().map(AsRef::as_ref).collect()),
        }
    }
}

/// What a search found, and the work it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Searched {
    /// People appended.
    pub people: usize,
    /// Distinct stack items whose people the search went through.
    pub items_visited: usize,
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
    /// Reused for each record packed.
    scratch: Vec<u8>,
    /// apelido and nome, by sequence; the ids are positions.
    text: Sequences,
    stack: StackItems,
}

#[derive(Default)]
struct StackItems {
    names: Vec<Box<str>>,
    folded: Vec<Box<str>>,
    numbers: HashMap<Box<str>, u32>,
    /// The bytes of every name, held twice, and of every folded name: counted as they come,
    /// since the budget is checked for every person.
    text_bytes: usize,
    /// For each item, the positions of the people who have it.
    people: Lists,
    /// The folded items, by sequence; the ids are item numbers.
    sequences: Sequences,
}

/// Per person: apelido and nome (each a length, then UTF-8), nascimento in three bytes, and the
/// stack as a count (0 for null, else items + 1) then item numbers, all varints. Kept in chunks
/// of [`Records::CHUNK`] bytes (a larger record gets a chunk of its own), so that the arena grows
/// a little at a time and never copies itself.
#[derive(Default)]
struct Records {
    chunks: Vec<Vec<u8>>,
    /// The chunks' capacities, summed.
    bytes: usize,
}

impl Records {
    const CHUNK: usize = 64 << 10;

    fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<Vec<u8>>() + self.bytes
    }

    /// Stores `record` whole inside one chunk; returns where it starts.
    fn push(&mut self, record: &[u8]) -> u32 {
        let fits = |chunk: &Vec<u8>| chunk.len() + record.len() <= chunk.capacity();
        if !self.chunks.last().is_some_and(fits) {
            let chunk = Vec::with_capacity(Self::CHUNK.max(record.len()));
            self.bytes += chunk.capacity();
            self.chunks.push(chunk);
        }
        let index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[index];
        let start = index * Self::CHUNK + chunk.len();
        chunk.extend_from_slice(record);
        u32::try_from(start).expect("records under 4 GiB")
    }

    fn at(&self, start: u32) -> &[u8] {
        let start = start as usize;
        &self.chunks[start / Self::CHUNK][start % Self::CHUNK..]
    }
}

impl SearchIndex {
    /// How many people the index holds.
    pub fn count(&self) -> usize {
        self.ids.len()
    }

    /// Whether the person with this id is here.
    pub fn contains(&self, id: &Uuid) -> bool {
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

        let mut record = std::mem::take(&mut self.scratch);
        record.clear();
        push_text(&mut record, person.apelido);
        push_text(&mut record, person.nome);
        record.extend_from_slice(&pack_date(person.nascimento).to_le_bytes()[..3]);
        match &person.stack {
            None => push_varint(&mut record, NULL_STACK),
            Some(items) => {
                push_varint(&mut record, items.len() as u64 + 1);
                for item in items {
                    let number = self.stack.number(item);
                    push_varint(&mut record, u64::from(number));
                    self.stack.people.append(number, position);
                }
            }
        }
        self.offsets.push(self.records.push(&record));
        self.scratch = record;

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
    pub fn get(&self, id: &Uuid) -> Option<Vec<u8>> {
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

    fn position(&self, id: &Uuid) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.by_id
            .find(hash, |&p| self.ids[p as usize] == *id)
            .map(|&p| p as usize)
    }

    fn texts(&self, position: usize) -> (&str, &str) {
        let mut cursor = self.records.at(self.offsets[position]);
        let apelido = take_text(&mut cursor);
        let nome = take_text(&mut cursor);
        (apelido, nome)
    }

    /// Appends the person's record as JSON, the way `serde_json` writes a [`Pessoa`].
    fn render(&self, position: usize, out: &mut Vec<u8>) {
        let mut cursor = self.records.at(self.offsets[position]);
        let apelido = take_text(&mut cursor);
        let nome = take_text(&mut cursor);
        let (date, rest) = cursor.split_at(3);
        cursor = rest;
        let nascimento = unpack_date(u32::from_le_bytes([date[0], date[1], date[2], 0]));
        let stack = match take_varint(&mut cursor) {
            NULL_STACK => None,
            count => Some(
                (1..count)
                    .map(|_| &*self.stack.names[take_varint(&mut cursor) as usize])
                    .collect::<Vec<&str>>(),
            ),
        };
        render_record(
            out,
            &PersonRef {
                id: self.ids[position],
                apelido,
                nome,
                nascimento: &nascimento,
                stack,
            },
        );
    }
}

/// Appends `person` as JSON, the way `serde_json` writes a [`Pessoa`].
pub fn render_record(out: &mut Vec<u8>, person: &PersonRef) {
    let string = |out: &mut Vec<u8>, text: &str| {
        serde_json::to_writer(&mut *out, text).expect("writing into memory");
    };
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(
        person
            .id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"apelido\":");
    string(out, person.apelido);
    out.extend_from_slice(b",\"nome\":");
    string(out, person.nome);
    out.extend_from_slice(b",\"nascimento\":");
    string(out, person.nascimento);
    out.extend_from_slice(b",\"stack\":");
    match &person.stack {
        None => out.extend_from_slice(b"null"),
        Some(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, item);
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

/// Whether `term` (already folded) lies inside the apelido, nome or one stack item of `person`.
pub fn matches(person: &PersonRef, term: &str) -> bool {
    let inside = |field: &str| fold(field).contains(term);
    inside(person.apelido)
        || inside(person.nome)
        || person.stack.iter().flatten().any(|item| inside(item))
}

/// Full Unicode case folding. ASCII text, the common case, folds to its lowercase.
pub fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        }
    } else {
        Cow::Owned(
            icu_casemap::CaseMapper::new()
                .fold_string(text)
                .into_owned(),
        )
    }
}

impl StackItems {
    fn heap_bytes(&self) -> usize {
        // Each name is held twice (as a key and in `names`), each with its own allocation.
        self.names.capacity() * size_of::<Box<str>>() * 2
            + self.folded.capacity() * size_of::<Box<str>>()
            + self.text_bytes
            + self.numbers.allocation_size()
            + self.people.heap_bytes()
            + self.sequences.heap_bytes()
    }

    /// The number of `item`, given a new one when it is new.
    fn number(&mut self, item: &str) -> u32 {
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

/// Lists of ids, each extended with ids larger than any it has, the way search engines keep
/// posting lists: a list holds its ids in blocks of [`List::BLOCK`], each packed as the gaps
/// between neighbours in as few bits as the block's largest gap needs (`bitpacking`, SIMD), and
/// its newest ids, fewer than a block, as they are. At a million people a sequence's gaps take
/// about 11 bits, against 16 in a bitmap's array of `u16`.
///
/// Appends wait in a queue that [`Lists::flush`] files list by list: filing a list's new ids in
/// one go is much faster than visiting lists at random for each id.
#[derive(Default)]
struct Lists {
    lists: Vec<List>,
    /// The lists' own bytes, summed: see [`List::heap_bytes`].
    list_bytes: usize,
    /// (list, id) in the order given.
    pending: Vec<(u32, u32)>,
    /// Reused by each flush: where each list's ids start in `sorted`, and the ids by list.
    starts: Vec<usize>,
    sorted: Vec<u32>,
}

impl Lists {
    fn heap_bytes(&self) -> usize {
        self.lists.capacity() * size_of::<List>()
            + self.list_bytes
            + self.pending.capacity() * size_of::<(u32, u32)>()
            + self.starts.capacity() * size_of::<usize>()
            + self.sorted.capacity() * size_of::<u32>()
    }

    fn new_list(&mut self) -> u32 {
        self.lists.push(List::default());
        u32::try_from(self.lists.len() - 1).expect("fewer than 2^32 lists")
    }

    fn append(&mut self, list: u32, id: u32) {
        self.pending.push((list, id));
    }

    /// Files every pending id in its list. Ids arrive in increasing order, so a stable order by
    /// list keeps each list's new ids increasing; a counting sort gives it when there are many.
    fn flush(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        if pending.len() < self.lists.len() {
            pending.sort_by_key(|&(list, _)| list);
            for run in pending.chunk_by(|a, b| a.0 == b.0) {
                self.extend(run[0].0, run.iter().map(|&(_, id)| id));
            }
        } else {
            let mut starts = std::mem::take(&mut self.starts);
            starts.clear();
            starts.resize(self.lists.len() + 1, 0);
            for &(list, _) in &pending {
                starts[list as usize + 1] += 1;
            }
            for i in 1..starts.len() {
                starts[i] += starts[i - 1];
            }
            let mut sorted = std::mem::take(&mut self.sorted);
            sorted.clear();
            sorted.resize(pending.len(), 0);
            // Each list's next free place, advanced as its ids are placed; afterwards each
            // holds the start of the next list.
            let mut next = starts[..self.lists.len()].to_vec();
            for &(list, id) in &pending {
                sorted[next[list as usize]] = id;
                next[list as usize] += 1;
            }
            for list in 0..self.lists.len() {
                let run = &sorted[starts[list]..starts[list + 1]];
                if !run.is_empty() {
                    self.extend(list as u32, run.iter().copied());
                }
            }
            self.starts = starts;
            self.sorted = sorted;
        }
        pending.clear();
        self.pending = pending;
    }

    /// Appends increasing `ids` (repeats allowed) to a list.
    fn extend(&mut self, list: u32, ids: impl Iterator<Item = u32>) {
        let list = &mut self.lists[list as usize];
        let before = list.heap_bytes();
        list.extend(ids);
        self.list_bytes += list.heap_bytes() - before;
    }

    /// Gives back the room each list keeps for growth, and counts its bytes anew.
    fn shrink(&mut self) {
        self.pending.shrink_to_fit();
        self.starts = Vec::new();
        self.sorted = Vec::new();
        self.list_bytes = 0;
        for list in &mut self.lists {
            list.blocks.shrink_to_fit();
            list.packed.shrink_to_fit();
            list.tail.shrink_to_fit();
            self.list_bytes += list.heap_bytes();
        }
    }
}

#[derive(Default)]
struct List {
    /// Per packed block: its last id, and where its bytes end in `packed`. A block's bits per
    /// gap follow from its length, and the id before it is the previous block's last.
    blocks: Vec<(u32, u32)>,
    packed: Vec<u8>,
    /// The ids after the last block, increasing.
    tail: Vec<u32>,
}

impl List {
    const BLOCK: usize = BitPacker4x::BLOCK_LEN;

    fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * size_of::<(u32, u32)>()
            + self.packed.capacity()
            + self.tail.capacity() * size_of::<u32>()
    }

    fn len(&self) -> usize {
        self.blocks.len() * Self::BLOCK + self.tail.len()
    }

    /// Appends increasing `ids`, all larger than the list's last but the first, which may
    /// equal it (then it is here already).
    fn extend(&mut self, ids: impl Iterator<Item = u32>) {
        let mut last = self
            .tail
            .last()
            .or(self.blocks.last().map(|(last, _)| last))
            .copied();
        for id in ids {
            if last == Some(id) {
                continue;
            }
            debug_assert!(last.is_none_or(|last| last < id), "ids come in order");
            last = Some(id);
            self.tail.push(id);
            if self.tail.len() == Self::BLOCK {
                self.pack_tail();
            }
        }
    }

    fn pack_tail(&mut self) {
        let packer = BitPacker4x::new();
        let before = self.blocks.last().map(|&(last, _)| last);
        let bits = packer.num_bits_strictly_sorted(before, &self.tail);
        let start = self.packed.len();
        self.packed
            .resize(start + BitPacker4x::compressed_block_size(bits), 0);
        packer.compress_strictly_sorted(before, &self.tail, &mut self.packed[start..], bits);
        let end = u32::try_from(self.packed.len()).expect("lists under 4 GiB");
        let last = *self.tail.last().expect("a full tail");
        self.blocks.push((last, end));
        self.tail.clear();
    }

    /// Unpacks block `block` into `ids`.
    fn unpack(&self, block: usize, ids: &mut [u32; List::BLOCK]) {
        let start = match block {
            0 => 0,
            _ => self.blocks[block - 1].1 as usize,
        };
        let end = self.blocks[block].1 as usize;
        let bits = u8::try_from((end - start) * 8 / Self::BLOCK).expect("at most 32 bits a gap");
        let before = block.checked_sub(1).map(|previous| self.blocks[previous].0);
        BitPacker4x::new().decompress_strictly_sorted(before, &self.packed[start..end], ids, bits);
    }

    fn cursor(&self) -> Cursor<'_> {
        let mut cursor = Cursor {
            list: self,
            block: 0,
            ids: [0; List::BLOCK],
            at: 0,
        };
        cursor.enter(0);
        cursor
    }
}

/// Walks a list forwards, a block unpacked at a time: as an iterator, or skipping ahead to
/// each id it is asked about, as an intersection does.
struct Cursor<'l> {
    list: &'l List,
    /// The block unpacked in `ids`; past the last block, the tail.
    block: usize,
    ids: [u32; List::BLOCK],
    /// The next id's place in the current block.
    at: usize,
}

impl Cursor<'_> {
    fn enter(&mut self, block: usize) {
        self.block = block;
        self.at = 0;
        if block < self.list.blocks.len() {
            self.list.unpack(block, &mut self.ids);
        }
    }

    fn current(&self) -> &[u32] {
        if self.block < self.list.blocks.len() {
            &self.ids
        } else {
            &self.list.tail
        }
    }

    /// Whether the list holds `id`; each call must ask about an id larger than the last.
    fn seek(&mut self, id: u32) -> bool {
        let blocks = &self.list.blocks;
        if self.block < blocks.len() && blocks[self.block].0 < id {
            let skip = blocks[self.block..].partition_point(|&(last, _)| last < id);
            self.enter(self.block + skip);
        }
        let ids = self.current();
        let at = self.at + ids[self.at..].partition_point(|&other| other < id);
        let found = ids.get(at) == Some(&id);
        self.at = at;
        found
    }
}

impl Iterator for Cursor<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            if let Some(&id) = self.current().get(self.at) {
                self.at += 1;
                return Some(id);
            }
            if self.block >= self.list.blocks.len() {
                return None;
            }
            self.enter(self.block + 1);
        }
    }
}

/// Strings by their three-byte sequences: for each sequence, the ids of the strings that contain
/// it (a string shorter than a sequence is padded with NUL first). Ids are added in increasing
/// order.
#[derive(Default)]
struct Sequences {
    slots: HashMap<[u8; 3], u32>,
    keys: Vec<[u8; 3]>,
    lists: Lists,
    /// Reused for each string added.
    scratch: Vec<[u8; 3]>,
}

impl Sequences {
    fn heap_bytes(&self) -> usize {
        self.slots.allocation_size()
            + self.keys.capacity() * 3
            + self.lists.heap_bytes()
            + self.scratch.capacity() * 3
    }

    /// Queues `id` under every sequence of `fields`; see [`Lists::flush`].
    fn add<'s>(&mut self, id: u32, fields: impl IntoIterator<Item = &'s str>) {
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

    /// Calls `take` with the ids of strings that contain `term` (folded, without NUL), some
    /// perhaps more than once, until it returns false. `confirm` tells whether the string of an
    /// id really contains the term, for the ids that sequences alone cannot decide. Returns
    /// false when `take` asked to stop.
    fn search(
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

fn push_text(records: &mut Vec<u8>, text: &str) {
    push_varint(records, text.len() as u64);
    records.extend_from_slice(text.as_bytes());
}

fn take_text<'r>(cursor: &mut &'r [u8]) -> &'r str {
    let length = take_varint(cursor) as usize;
    let (text, rest) = cursor.split_at(length);
    *cursor = rest;
    std::str::from_utf8(text).expect("records hold the UTF-8 they were given")
}

/// LEB128: seven bits a byte, low bits first, the high bit set on every byte but the last.
fn push_varint(records: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        records.push((value as u8) | 0x80);
        value >>= 7;
    }
    records.push(value as u8);
}

fn take_varint(cursor: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for (i, &byte) in cursor.iter().enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *cursor = &cursor[i + 1..];
            return value;
        }
    }
    unreachable!("records end every varint")
}

/// `YYYY-MM-DD` in 23 bits: year, month and day side by side.
fn pack_date(date: &str) -> u32 {
    let number = |range: std::ops::Range<usize>| -> u32 {
        date.get(range)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0)
    };
    (number(0..4) << 9) | (number(5..7) << 5) | number(8..10)
}

fn unpack_date(packed: u32) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        packed >> 9,
        (packed >> 5) & 0xf,
        packed & 0x1f
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A hostile writer's people: 7,000 distinct items, each holding the term twice, so
        // that each comes back under several of the term's sequences.
        let people: Vec<Pessoa> = (0..40)
            .map(|person| {
                let items: Vec<String> = (0..175).map(|i| format!("zq{person}x{i}zq")).collect();
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
    fn lists_keep_every_id_across_packed_blocks() {
        // Gaps of every width, up to the largest a `u32` allows: seven packed blocks and a tail.
        let mut ids: Vec<u32> = (0..1000).map(|i| i * i / 7 + i).collect();
        ids.extend([1 << 31, u32::MAX]);
        let mut lists = Lists::default();
        lists.new_list();
        for &id in &ids {
            lists.append(0, id);
            lists.append(0, id);
        }
        lists.flush();
        let list = &lists.lists[0];
        assert_eq!(list.len(), ids.len(), "each id once");
        assert!(list.blocks.len() == 7 && list.tail.len() == 106);
        assert_eq!(list.cursor().collect::<Vec<u32>>(), ids);
        for step in [1, 97, 4099] {
            let mut cursor = list.cursor();
            for candidate in (0..ids[999] + 2).step_by(step).chain([1 << 31, u32::MAX]) {
                let held = ids.binary_search(&candidate).is_ok();
                assert_eq!(cursor.seek(candidate), held, "{candidate}, step {step}");
            }
        }
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

    #[test]
    fn varints_and_dates_round_trip() {
        for value in [0, 1, 127, 128, 300, 65_535, u64::from(u32::MAX)] {
            let mut bytes = Vec::new();
            push_varint(&mut bytes, value);
            let mut cursor = &bytes[..];
            assert_eq!(take_varint(&mut cursor), value);
            assert!(cursor.is_empty());
        }
        for date in ["0001-01-01", "2000-02-29", "9999-12-31"] {
            assert_eq!(unpack_date(pack_date(date)), date);
        }
    }
}
