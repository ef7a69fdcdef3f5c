//! The in-memory search index at the stress test's size: the first 46,000 valid people of the
//! stress test's payloads (the replay's seeded generator), searched with the contest's own terms.
//!
//! `cargo bench --bench search_index`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use replay::payloads::{DEFAULT_SEED, PayloadGenerator};
use rinha::domain::Pessoa;
use rinha::search_index::SearchIndex;

const PEOPLE: usize = 46_000;
const TERMS: &str = include_str!("../gatling/resources/termos-busca.tsv");

fn people() -> Vec<Pessoa> {
    let mut payloads = PayloadGenerator::new(DEFAULT_SEED);
    std::iter::from_fn(|| Some(Pessoa::parse(payloads.next_payload().as_bytes()).ok()))
        .flatten()
        .take(PEOPLE)
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
