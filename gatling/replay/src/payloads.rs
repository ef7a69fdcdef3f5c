//! The creation payloads: a seeded generator with the contest generator's distribution, and the TSV
//! feeder files Gatling reads (`payload` and `t` columns).
//!
//! Distribution, per payload: each of the four fields is valid with probability 98/99, else one of its
//! invalid variants.
//! - apelido: 1-32 ASCII letters; invalid: 35 letters.
//! - nome: 1-100 letters or spaces; invalid: 120.
//! - nascimento: `YYYY-MM-DD` with year 1940-2020, month 01-13 and day 01-29 (so month 13 and 29 February
//!   of common years are not real dates); invalid: "12-12-2000", null, 10 or "?!?!?".
//! - stack: null with probability 1/14, else 1-26 picks with repetition from the contest's list (which
//!   names C# twice); invalid: ["1" x 40], "string" or 1.
//!
//! Lines are JSON objects written like Python's `json.dumps` (`", "` and `": "` separators), as in the
//! contest's file. Gatling's TSV feeder splits on tabs and unquotes fields that start with a double quote;
//! a payload always starts with `{` and never contains a tab or a line break, so it reaches the request
//! body exactly as written.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use crate::rng::SplitMix64;

pub const PAYLOAD_COLUMN: &str = "payload";
pub const TERM_COLUMN: &str = "t";
pub const DEFAULT_COUNT: usize = 100_000;
pub const DEFAULT_SEED: u64 = 2023;

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LETTERS_AND_SPACE: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ";
const STACKS: &[&str] = &[
    "Javascript",
    "Python",
    "Go",
    "Java",
    "Kotlin",
    "PHP",
    "C#",
    "Swift",
    "R",
    "Ruby",
    "C",
    "C++",
    "Matlab",
    "TypeScript",
    "Scala",
    "SQL",
    "HTML",
    "CSS",
    "NoSQL",
    "Rust",
    "Perl",
    "C#",
    "Clojure",
    "MySQL",
    "Postgres",
];
const INVALID_NASCIMENTOS: &[&str] = &["\"12-12-2000\"", "null", "10", "\"?!?!?\""];
const INVALID_STACKS: &[&str] = &[
    "[\"1111111111111111111111111111111111111111\"]",
    "\"string\"",
    "1",
];

/// Generates payloads one after the other; the same seed always yields the same sequence.
pub struct PayloadGenerator {
    random: SplitMix64,
}

impl PayloadGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            random: SplitMix64::new(seed),
        }
    }

    pub fn next_payload(&mut self) -> String {
        let apelido_valid = self.field_is_valid();
        let nome_valid = self.field_is_valid();
        let nascimento_valid = self.field_is_valid();
        let stack_valid = self.field_is_valid();

        let apelido = if apelido_valid {
            let length = self.random.between(1, 32) as usize;
            self.text(LETTERS, length)
        } else {
            self.text(LETTERS, 35)
        };
        let nome = if nome_valid {
            let length = self.random.between(1, 100) as usize;
            self.text(LETTERS_AND_SPACE, length)
        } else {
            self.text(LETTERS_AND_SPACE, 120)
        };
        let nascimento = if nascimento_valid {
            let year = self.random.between(1940, 2020);
            let month = self.random.between(1, 13);
            let day = self.random.between(1, 29);
            format!("\"{year}-{month:02}-{day:02}\"")
        } else {
            (*self.random.pick(INVALID_NASCIMENTOS)).to_owned()
        };
        let stack = if !stack_valid {
            (*self.random.pick(INVALID_STACKS)).to_owned()
        } else if self.random.below(14) == 0 {
            "null".to_owned()
        } else {
            let picks = self.random.between(1, 26) as usize;
            let names: Vec<String> = (0..picks)
                .map(|_| format!("\"{}\"", self.random.pick(STACKS)))
                .collect();
            format!("[{}]", names.join(", "))
        };

        let mut line = String::with_capacity(64 + apelido.len() + nome.len() + stack.len());
        write!(
            line,
            "{{\"apelido\": \"{apelido}\", \"nome\": \"{nome}\", \"nascimento\": {nascimento}, \"stack\": {stack}}}"
        )
        .expect("writing to a String cannot fail");
        line
    }

    fn field_is_valid(&mut self) -> bool {
        self.random.below(99) != 0
    }

    /// Letters from an alphabet that needs no JSON escaping, so the text goes into the JSON verbatim.
    fn text(&mut self, alphabet: &[u8], length: usize) -> String {
        (0..length)
            .map(|_| char::from(*self.random.pick(alphabet)))
            .collect()
    }
}

/// 2023-08-01T00:00:00Z, the contest's month, in Unix milliseconds.
const FIRST_MILLISECOND: u128 = 1_690_848_000_000;

/// Writes `count` people to `out` as PostgreSQL `COPY … FROM STDIN` text for the columns
/// `(id, apelido, nome, nascimento, stack)`, shaped like the valid payloads: increasing UUIDv7 ids,
/// letters, real dates and stacks from the contest's list. Each apelido ends in the person's
/// number, so it is unique and, holding a digit, never equal to a payload's.
pub fn write_people(out: &mut impl io::Write, count: usize, seed: u64) -> io::Result<()> {
    let mut generator = PayloadGenerator::new(seed);
    let mut line = String::with_capacity(512);
    for number in 0..count {
        let random = &mut generator.random;
        line.clear();
        // Version 7, as the service makes them: the person's number stands for the millisecond,
        // so ids increase with it, as they do with time, and the table's order follows the
        // index the replicas load it by.
        let random_bits = (u128::from(random.next_u64()) << 64) | u128::from(random.next_u64());
        let id = ((FIRST_MILLISECOND + number as u128) << 80)
            | (0x7 << 76)
            | (random_bits & (0xfff << 64))
            | (0x2 << 62)
            | (random_bits & ((1 << 62) - 1));
        let hex = format!("{id:032x}");
        let suffix = number.to_string();
        let letters = generator.random.between(1, 32 - suffix.len() as u64) as usize;
        let apelido = generator.text(LETTERS, letters);
        let nome_length = generator.random.between(1, 100) as usize;
        let nome = generator.text(LETTERS_AND_SPACE, nome_length);
        let year = generator.random.between(1940, 2020);
        let month = generator.random.between(1, 12);
        let day = generator.random.between(1, 28);
        write!(
            line,
            "{}-{}-{}-{}-{}\t{apelido}{suffix}\t{nome}\t{year}-{month:02}-{day:02}\t",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
        .expect("writing to a String cannot fail");
        if generator.random.below(14) == 0 {
            line.push_str("\\N");
        } else {
            let picks = generator.random.between(1, 26) as usize;
            let names: Vec<&str> = (0..picks).map(|_| *generator.random.pick(STACKS)).collect();
            // The contest's names need no quoting in an array literal.
            write!(line, "{{{}}}", names.join(",")).expect("writing to a String cannot fail");
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

/// Writes `count` payloads as a one-column TSV feeder file, atomically (a half-written file is never left
/// under the final name).
pub fn write_payload_file(path: &Path, count: usize, seed: u64) -> io::Result<()> {
    let partial = path.with_extension("tsv.partial");
    {
        let mut writer = io::BufWriter::new(fs::File::create(&partial)?);
        writeln!(writer, "{PAYLOAD_COLUMN}")?;
        let mut generator = PayloadGenerator::new(seed);
        for _ in 0..count {
            writeln!(writer, "{}", generator.next_payload())?;
        }
        writer.flush()?;
    }
    fs::rename(partial, path)
}

/// Reads a one-column TSV feeder the way Gatling's does for this project's files: the header names the
/// column, every non-empty line is one record. Quoted fields and extra columns would be read differently
/// by Gatling's CSV parser, so they are refused instead of guessed at.
pub fn read_feeder(path: &Path, column: &str) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().map(str::trim).unwrap_or_default();
    if header != column {
        return Err(format!(
            "{}: expected the header `{column}`, found `{header}`",
            path.display()
        ));
    }
    let mut records = Vec::new();
    for (index, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        if line.contains('\t') || line.starts_with('"') {
            return Err(format!(
                "{} line {}: tabs and quoted fields are not supported in a one-column feeder",
                path.display(),
                index + 2
            ));
        }
        records.push(line.to_owned());
    }
    if records.is_empty() {
        return Err(format!("{}: no records", path.display()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const SAMPLE: usize = 60_000;

    /// One parsed sample shared by the distribution tests.
    fn sample() -> &'static [Value] {
        static SAMPLE_PAYLOADS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
        SAMPLE_PAYLOADS.get_or_init(|| {
            let mut generator = PayloadGenerator::new(DEFAULT_SEED);
            (0..SAMPLE)
                .map(|_| {
                    serde_json::from_str(&generator.next_payload()).expect("payloads are JSON")
                })
                .collect()
        })
    }

    fn fraction(values: &[Value], predicate: impl Fn(&Value) -> bool) -> f64 {
        values.iter().filter(|value| predicate(value)).count() as f64 / values.len() as f64
    }

    fn letters(value: &Value, alphabet: &[u8], lengths: std::ops::RangeInclusive<usize>) -> bool {
        value.as_str().is_some_and(|text| {
            lengths.contains(&text.len()) && text.bytes().all(|byte| alphabet.contains(&byte))
        })
    }

    fn generated_valid_nascimento(value: &Value) -> bool {
        let Some(text) = value.as_str() else {
            return false;
        };
        let parts: Vec<&str> = text.split('-').collect();
        parts.len() == 3
            && parts[0].len() == 4
            && parts[1].len() == 2
            && parts[2].len() == 2
            && parts[0]
                .parse::<u32>()
                .is_ok_and(|year| (1940..=2020).contains(&year))
            && parts[1]
                .parse::<u32>()
                .is_ok_and(|month| (1..=13).contains(&month))
            && parts[2]
                .parse::<u32>()
                .is_ok_and(|day| (1..=29).contains(&day))
    }

    fn generated_valid_stack(value: &Value) -> bool {
        value.is_null()
            || value.as_array().is_some_and(|items| {
                (1..=26).contains(&items.len())
                    && items
                        .iter()
                        .all(|item| item.as_str().is_some_and(|name| STACKS.contains(&name)))
            })
    }

    fn all_generated_valid(payload: &Value) -> bool {
        letters(&payload["apelido"], LETTERS, 1..=32)
            && letters(&payload["nome"], LETTERS_AND_SPACE, 1..=100)
            && generated_valid_nascimento(&payload["nascimento"])
            && generated_valid_stack(&payload["stack"])
    }

    #[test]
    fn four_fields_are_each_valid_with_probability_98_in_99() {
        let payloads = sample();
        let expected = (98.0f64 / 99.0).powi(4);
        let observed = fraction(payloads, all_generated_valid);
        // The binomial standard deviation at n = 60,000 is about 0.0008; (97/99)^4 would be 0.92.
        assert!(
            (observed - expected).abs() < 0.004,
            "observed {observed}, expected {expected}"
        );
        let apelido_valid = fraction(payloads, |payload| {
            letters(&payload["apelido"], LETTERS, 1..=32)
        });
        assert!(
            (apelido_valid - 98.0 / 99.0).abs() < 0.002,
            "apelido valid {apelido_valid}"
        );
    }

    #[test]
    fn invalid_variants_are_the_listed_ones() {
        for payload in sample() {
            let apelido = &payload["apelido"];
            assert!(
                letters(apelido, LETTERS, 1..=32) || letters(apelido, LETTERS, 35..=35),
                "{payload}"
            );
            let nome = &payload["nome"];
            assert!(
                letters(nome, LETTERS_AND_SPACE, 1..=100)
                    || letters(nome, LETTERS_AND_SPACE, 120..=120)
            );
            let nascimento = &payload["nascimento"];
            let invalid_nascimento = [
                Value::from("12-12-2000"),
                Value::Null,
                Value::from(10),
                Value::from("?!?!?"),
            ];
            assert!(
                generated_valid_nascimento(nascimento) || invalid_nascimento.contains(nascimento)
            );
            let stack = &payload["stack"];
            let invalid_stack = [
                serde_json::json!(["1".repeat(40)]),
                Value::from("string"),
                Value::from(1),
            ];
            assert!(
                generated_valid_stack(stack) || invalid_stack.contains(stack),
                "{payload}"
            );
        }
    }

    #[test]
    fn dates_reach_month_13_and_day_29_and_stacks_are_sometimes_null() {
        let payloads = sample();
        let dates: Vec<&str> = payloads
            .iter()
            .filter_map(|payload| payload["nascimento"].as_str())
            .collect();
        assert!(dates.iter().any(|date| date.contains("-13-")));
        assert!(dates.iter().any(|date| date.ends_with("-29")));
        assert!(
            dates.iter().any(|date| date.starts_with("1940-"))
                && dates.iter().any(|date| date.starts_with("2020-"))
        );
        let month_13 =
            dates.iter().filter(|date| date.contains("-13-")).count() as f64 / dates.len() as f64;
        assert!(
            (month_13 - 1.0 / 13.0).abs() < 0.005,
            "month 13 share {month_13}"
        );
        let null_stack = fraction(payloads, |payload| payload["stack"].is_null());
        assert!(
            (null_stack - 98.0 / 99.0 / 14.0).abs() < 0.005,
            "null stack share {null_stack}"
        );
        let longest_stack = payloads
            .iter()
            .filter_map(|payload| payload["stack"].as_array())
            .map(Vec::len)
            .max();
        assert_eq!(longest_stack, Some(26));
    }

    #[test]
    fn a_seed_always_yields_the_same_payloads() {
        let mut first = PayloadGenerator::new(9);
        let mut second = PayloadGenerator::new(9);
        let mut other = PayloadGenerator::new(10);
        let a: Vec<String> = (0..100).map(|_| first.next_payload()).collect();
        let b: Vec<String> = (0..100).map(|_| second.next_payload()).collect();
        let c: Vec<String> = (0..100).map(|_| other.next_payload()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn payloads_are_written_like_python_json_dumps() {
        let line = PayloadGenerator::new(1).next_payload();
        assert!(line.starts_with("{\"apelido\": \""), "{line}");
        assert!(
            line.contains("\", \"nome\": \"")
                && line.contains(", \"nascimento\": ")
                && line.contains(", \"stack\": ")
        );
    }

    #[test]
    fn the_file_reads_back_record_for_record() {
        let directory =
            std::env::temp_dir().join(format!("replay-payloads-{}", std::process::id()));
        fs::create_dir_all(&directory).unwrap();
        let path = directory.join("pessoas-payloads.tsv");
        write_payload_file(&path, 2_000, 77).unwrap();
        let records = read_feeder(&path, PAYLOAD_COLUMN).unwrap();
        let mut generator = PayloadGenerator::new(77);
        let expected: Vec<String> = (0..2_000).map(|_| generator.next_payload()).collect();
        assert_eq!(records, expected);
        assert!(
            records
                .iter()
                .all(|record| !record.contains('\t') && record.starts_with('{'))
        );
        assert!(read_feeder(&path, TERM_COLUMN).is_err());
        fs::remove_dir_all(directory).unwrap();
    }

    #[test]
    fn the_contest_search_terms_file_is_a_valid_feeder() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/termos-busca.tsv");
        let terms = read_feeder(&path, TERM_COLUMN).unwrap();
        assert_eq!(terms.len(), 5_000);
    }

    #[test]
    fn people_have_increasing_version_7_ids() {
        let mut out = Vec::new();
        write_people(&mut out, 1_000, DEFAULT_SEED).expect("writing into memory");
        let ids: Vec<u128> = String::from_utf8(out)
            .expect("UTF-8")
            .lines()
            .map(|line| {
                let hex = line.split('\t').next().expect("an id").replace('-', "");
                u128::from_str_radix(&hex, 16).expect("hexadecimal")
            })
            .collect();
        assert_eq!(ids.len(), 1_000);
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(
            ids.iter()
                .all(|id| (id >> 76) & 0xf == 7 && (id >> 62) & 0x3 == 2)
        );
    }
}
