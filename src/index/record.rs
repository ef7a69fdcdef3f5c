//! A person's record: the fields as borrowed, packed into the byte arena, and rendered as JSON.

use uuid::Uuid;

use crate::domain::Pessoa;

/// A person's fields, borrowed from wherever they were read.
pub struct PersonRef<'a> {
    pub(crate) id: Uuid,
    pub(crate) apelido: &'a str,
    pub(crate) nome: &'a str,
    /// `YYYY-MM-DD`, a real date.
    pub(crate) nascimento: &'a str,
    pub(crate) stack: Option<Vec<&'a str>>,
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

/// Marks a null stack in a packed record.
const NULL_STACK: u64 = 0;

/// Per person: apelido and nome (each a length, then UTF-8), nascimento in three bytes, and the
/// stack as a count (0 for null, else items + 1) then item numbers, all varints. Kept in chunks
/// of [`Records::CHUNK`] bytes (a larger record gets a chunk of its own), so that the arena grows
/// a little at a time and never copies itself.
#[derive(Default)]
pub(super) struct Records {
    chunks: Vec<Vec<u8>>,
    /// The chunks' capacities, summed.
    bytes: usize,
    /// Reused for each record packed.
    scratch: Vec<u8>,
}

impl Records {
    const CHUNK: usize = 64 << 10;

    pub(super) fn heap_bytes(&self) -> usize {
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

    /// Packs `person` and stores it; `number` gives each stack item's number. Returns where the
    /// record starts.
    pub(super) fn pack(&mut self, person: &PersonRef, mut number: impl FnMut(&str) -> u32) -> u32 {
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
                    push_varint(&mut record, u64::from(number(item)));
                }
            }
        }
        let start = self.push(&record);
        self.scratch = record;
        start
    }

    /// The apelido and nome of the record at `start`.
    pub(super) fn texts(&self, start: u32) -> (&str, &str) {
        let mut cursor = self.at(start);
        let apelido = take_text(&mut cursor);
        let nome = take_text(&mut cursor);
        (apelido, nome)
    }

    /// Appends the record at `start`, of the person `id`, as JSON; `names` are the stack items
    /// by number.
    pub(super) fn render(&self, start: u32, id: Uuid, names: &[Box<str>], out: &mut Vec<u8>) {
        let mut cursor = self.at(start);
        let apelido = take_text(&mut cursor);
        let nome = take_text(&mut cursor);
        let (date, rest) = cursor.split_at(3);
        cursor = rest;
        let nascimento = unpack_date(u32::from_le_bytes([date[0], date[1], date[2], 0]));
        let stack = match take_varint(&mut cursor) {
            NULL_STACK => None,
            count => Some(
                (1..count)
                    .map(|_| &*names[take_varint(&mut cursor) as usize])
                    .collect::<Vec<&str>>(),
            ),
        };
        let person = PersonRef {
            id,
            apelido,
            nome,
            nascimento: &nascimento,
            stack,
        };
        render_record(out, &person);
    }

    fn at(&self, start: u32) -> &[u8] {
        let start = start as usize;
        &self.chunks[start / Self::CHUNK][start % Self::CHUNK..]
    }
}

/// Appends `person` as JSON, the way `serde_json` writes a [`Pessoa`].
pub(crate) fn render_record(out: &mut Vec<u8>, person: &PersonRef) {
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

fn push_text(records: &mut Vec<u8>, text: &str) {
    push_varint(records, text.len() as u64);
    records.extend_from_slice(text.as_bytes());
}

pub(super) fn take_text<'r>(cursor: &mut &'r [u8]) -> &'r str {
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
