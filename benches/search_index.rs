//! The in-memory search index at 1,000,000 people shaped like the stress test's (the replay's
//! seeded payload generator), searched with the contest's own terms, stack names and the worst
//! cases. Before the timings it prints the index's bytes per person, as it counts them and as
//! the allocator saw them.
//!
//! `cargo bench --bench search_index`

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use replay::payloads::{DEFAULT_SEED, PayloadGenerator};
use rinha::domain::Pessoa;
use rinha::index::SearchIndex;
use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const PEOPLE: usize = 1_000_000;
const TERMS: &str = include_str!("../gatling/resources/termos-busca.tsv");

fn people() -> Vec<Pessoa> {
    let mut payloads = PayloadGenerator::new(DEFAULT_SEED);
    std::iter::from_fn(|| Some(Pessoa::parse(payloads.next_payload().as_bytes(), None).ok()))
        .flatten()
        .take(PEOPLE)
        .collect()
}

fn index_of(people: &[Pessoa]) -> SearchIndex {
    let mut index = SearchIndex::default();
    for pages in people.chunks(10_000) {
        for pessoa in pages {
            index.insert(&pessoa.into());
        }
        index.flush();
    }
    index.shrink();
    index
}

fn allocated() -> usize {
    epoch::advance().expect("jemalloc statistics refresh");
    stats::allocated::read().expect("jemalloc statistics")
}

fn bench(c: &mut Criterion) {
    let people = people();

    let before = allocated();
    let started = Instant::now();
    let index = index_of(&people);
    let built_in = started.elapsed();
    let allocated = allocated() - before;
    eprintln!(
        "{PEOPLE} people indexed in {built_in:.2?}: {:.0} bytes per person as the index counts \
         them, {:.0} as allocated",
        index.heap_bytes() as f64 / PEOPLE as f64,
        allocated as f64 / PEOPLE as f64,
    );

    let search = |term: &str| {
        let mut out = Vec::with_capacity(16 * 1024);
        index.search(black_box(term), 50, &mut out)
    };
    // The contest's terms are apelidos and nomes of its own payloads, so most match nobody here:
    // the search stops at a three-byte sequence nobody has, or walks its rarest one's people.
    let terms: Vec<&str> = TERMS.lines().skip(1).collect();
    let mut next = terms.iter().cycle();
    c.bench_function("search a contest term", |b| {
        b.iter(|| search(next.next().expect("cycles")))
    });
    c.bench_function("search a stack name", |b| b.iter(|| search("script")));
    c.bench_function("search one letter", |b| b.iter(|| search("e")));
    // The worst cases: every sequence of the index is read for a short term nobody has, and a
    // longer term of common sequences that matches nobody walks a whole list and checks it
    // against every other.
    c.bench_function("search a two-byte term nobody has", |b| {
        b.iter(|| search("q#"))
    });
    c.bench_function("search a long term of common sequences nobody has", |b| {
        b.iter(|| search("anaanaanaanaanaana"))
    });

    // A hostile writer: 40 people with 7,000 distinct items each, all holding one term, which
    // a search goes through item by item.
    let mut hostile = SearchIndex::default();
    for person in 0..40 {
        let items: Vec<String> = (0..7_000).map(|i| format!("zq{person}-{i}")).collect();
        let payload = serde_json::json!({
            "apelido": format!("hostil{person}"),
            "nome": "Hostil",
            "nascimento": "2000-01-01",
            "stack": items,
        });
        let pessoa = Pessoa::parse(payload.to_string().as_bytes(), None).expect("valid");
        hostile.insert(&(&pessoa).into());
    }
    hostile.flush();
    c.bench_function("search a term inside 280,000 distinct items", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(16 * 1024);
            hostile.search(black_box("zq"), 50, &mut out)
        })
    });

    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("insert 1,000,000 people", |b| {
        b.iter(|| index_of(black_box(&people)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
