//! The in-memory search index at the stress test's size: 46,000 people shaped like the contest's
//! (random letters, stacks of 1–26 of its 25 languages), searched with the contest's own terms.
//!
//! `cargo bench --bench search_index`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rinha::domain::Pessoa;
use rinha::search_index::SearchIndex;
use uuid::Uuid;

const PEOPLE: usize = 46_000;
const TERMS: &str = include_str!("../gatling/resources/termos-busca.tsv");
const LANGUAGES: [&str; 25] = [
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

/// A fixed-seed xorshift generator, so every run indexes the same people.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }

    fn text(&mut self, max_chars: usize, alphabet: &[u8]) -> String {
        let chars = 1 + self.below(max_chars);
        (0..chars)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
}

fn people() -> Vec<Pessoa> {
    let letters = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let letters_or_space = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ";
    let mut random = Random(0x5eed);
    (0..PEOPLE)
        .map(|_| Pessoa {
            id: Uuid::from_u128(random.below(usize::MAX) as u128),
            apelido: random.text(32, letters),
            nome: random.text(100, letters_or_space),
            nascimento: "1990-01-01".to_owned(),
            stack: (random.below(14) > 0).then(|| {
                let items = 1 + random.below(26);
                (0..items)
                    .map(|_| LANGUAGES[random.below(LANGUAGES.len())].to_owned())
                    .collect()
            }),
        })
        .collect()
}

fn index_of(people: &[Pessoa]) -> SearchIndex {
    let mut index = SearchIndex::default();
    for pessoa in people {
        index.insert(pessoa);
    }
    index
}

fn bench(c: &mut Criterion) {
    let people = people();
    let mut group = c.benchmark_group("search_index");
    group.sample_size(10);
    group.bench_function("insert 46,000 people", |b| {
        b.iter(|| index_of(black_box(&people)))
    });
    group.finish();

    let index = index_of(&people);
    // The contest's terms are apelidos and nomes of its own payloads, so most match nobody here:
    // the search stops at a three-byte sequence nobody has, or checks its rarest one's people.
    let terms: Vec<&str> = TERMS.lines().skip(1).collect();
    let mut next = terms.iter().cycle();
    c.bench_function("search a contest term", |b| {
        b.iter(|| {
            index
                .search(black_box(next.next().expect("cycles")), 50)
                .len()
        })
    });
    c.bench_function("search a stack name", |b| {
        b.iter(|| index.search(black_box("script"), 50).len())
    });
    // Under three bytes there is no sequence to narrow by, and a rare pair is checked against
    // every person.
    c.bench_function("search a rare two-letter term", |b| {
        b.iter(|| index.search(black_box("q#"), 50).len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
