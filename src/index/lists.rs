//! Posting lists: for each key, the ids that have it, packed.

use bitpacking::{BitPacker, BitPacker4x};

/// Lists of ids, each extended with ids larger than any it has, the way search engines keep
/// posting lists: a list holds its ids in blocks of [`List::BLOCK`], each packed as the gaps
/// between neighbours in as few bits as the block's largest gap needs (`bitpacking`, SIMD), and
/// its newest ids, fewer than a block, as they are. At a million people a sequence's gaps take
/// about 11 bits, against 16 in a bitmap's array of `u16`.
///
/// Appends wait in a queue that [`Lists::flush`] files list by list: filing a list's new ids in
/// one go is much faster than visiting lists at random for each id.
#[derive(Default)]
pub(super) struct Lists {
    pub(super) lists: Vec<List>,
    /// The lists' own bytes, summed: see [`List::heap_bytes`].
    pub(super) list_bytes: usize,
    /// (list, id) in the order given.
    pub(super) pending: Vec<(u32, u32)>,
    /// Reused by each flush: where each list's ids start in `sorted`, and the ids by list.
    pub(super) starts: Vec<usize>,
    pub(super) sorted: Vec<u32>,
}

impl Lists {
    pub(super) fn heap_bytes(&self) -> usize {
        self.lists.capacity() * size_of::<List>()
            + self.list_bytes
            + self.pending.capacity() * size_of::<(u32, u32)>()
            + self.starts.capacity() * size_of::<usize>()
            + self.sorted.capacity() * size_of::<u32>()
    }

    pub(super) fn new_list(&mut self) -> u32 {
        self.lists.push(List::default());
        u32::try_from(self.lists.len() - 1).expect("fewer than 2^32 lists")
    }

    pub(super) fn append(&mut self, list: u32, id: u32) {
        self.pending.push((list, id));
    }

    /// Files every pending id in its list. Ids arrive in increasing order, so a stable order by
    /// list keeps each list's new ids increasing; a counting sort gives it when there are many.
    pub(super) fn flush(&mut self) {
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
    pub(super) fn extend(&mut self, list: u32, ids: impl Iterator<Item = u32>) {
        let list = &mut self.lists[list as usize];
        let before = list.heap_bytes();
        list.extend(ids);
        self.list_bytes += list.heap_bytes() - before;
    }

    /// Gives back the room each list keeps for growth, and counts its bytes anew.
    pub(super) fn shrink(&mut self) {
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
pub(super) struct List {
    /// Per packed block: its last id, and where its bytes end in `packed`. A block's bits per
    /// gap follow from its length, and the id before it is the previous block's last.
    pub(super) blocks: Vec<(u32, u32)>,
    pub(super) packed: Vec<u8>,
    /// The ids after the last block, increasing.
    pub(super) tail: Vec<u32>,
}

impl List {
    const BLOCK: usize = BitPacker4x::BLOCK_LEN;

    pub(super) fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * size_of::<(u32, u32)>()
            + self.packed.capacity()
            + self.tail.capacity() * size_of::<u32>()
    }

    pub(super) fn len(&self) -> usize {
        self.blocks.len() * Self::BLOCK + self.tail.len()
    }

    /// Appends increasing `ids`, all larger than the list's last but the first, which may
    /// equal it (then it is here already).
    pub(super) fn extend(&mut self, ids: impl Iterator<Item = u32>) {
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

    pub(super) fn pack_tail(&mut self) {
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
    pub(super) fn unpack(&self, block: usize, ids: &mut [u32; List::BLOCK]) {
        let start = match block {
            0 => 0,
            _ => self.blocks[block - 1].1 as usize,
        };
        let end = self.blocks[block].1 as usize;
        let bits = u8::try_from((end - start) * 8 / Self::BLOCK).expect("at most 32 bits a gap");
        let before = block.checked_sub(1).map(|previous| self.blocks[previous].0);
        BitPacker4x::new().decompress_strictly_sorted(before, &self.packed[start..end], ids, bits);
    }

    pub(super) fn cursor(&self) -> Cursor<'_> {
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
pub(super) struct Cursor<'l> {
    pub(super) list: &'l List,
    /// The block unpacked in `ids`; past the last block, the tail.
    pub(super) block: usize,
    pub(super) ids: [u32; List::BLOCK],
    /// The next id's place in the current block.
    pub(super) at: usize,
}

impl Cursor<'_> {
    pub(super) fn enter(&mut self, block: usize) {
        self.block = block;
        self.at = 0;
        if block < self.list.blocks.len() {
            self.list.unpack(block, &mut self.ids);
        }
    }

    pub(super) fn current(&self) -> &[u32] {
        if self.block < self.list.blocks.len() {
            &self.ids
        } else {
            &self.list.tail
        }
    }

    /// Whether the list holds `id`; each call must ask about an id larger than the last.
    pub(super) fn seek(&mut self, id: u32) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
