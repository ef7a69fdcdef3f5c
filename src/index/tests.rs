//! The index's own tests: search, folding, records and memory, on people built here.

use super::*;
use crate::domain::Pessoa;

/// A person as the index takes one, for the tests of its parts.
pub(super) fn person<'a>(
    apelido: &'a str,
    nome: &'a str,
    stack: Option<Vec<&'a str>>,
) -> PersonRef<'a> {
    PersonRef {
        id: Uuid::nil(),
        apelido,
        nome,
        nascimento: "2000-01-01",
        stack,
    }
}

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
    // A hostile writer's 49 people with 100 distinct items each, every item holding the
    // term twice, so that each comes back under several of the term's sequences.
    let people: Vec<Pessoa> = (0..49)
        .map(|person| {
            let items: Vec<String> = (0..100).map(|i| format!("zq{person}x{i}zq")).collect();
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
fn the_rarest_trigrams_include_the_edges_of_words() {
    let people = [
        pessoa("yust1", "Ana Yust", Some(&["Rust"])),
        pessoa("yust2", "Ana Yust", Some(&["Rust"])),
        pessoa("must3", "Bia Must", Some(&["Rust"])),
    ];
    let index = index_of(&people);
    let names = |term, n| index.rarest_trigrams(term, n).names;
    // `ust` is held by three names, `yus` by two, like ` yu` and `m y`, which spans two words
    // and so is no trigram of pg_trgm's, nor is anything with a character that is not ASCII.
    assert_eq!(names("m yust", 2), [" yu", "yus"]);
    assert_eq!(names("m yust", 9), [" yu", "yus", "ust"]);
    assert_eq!(names("ana ", 9), ["ana", "na "]);
    assert_eq!(names("aé b", 9), Vec::<&str>::new());
}

#[test]
fn the_rarest_trigrams_are_counted_apart_in_names_and_in_stacks() {
    let people = [
        pessoa("a", "Ana Ure", Some(&["Java"])),
        pessoa("b", "Bia Ure", Some(&["Java"])),
        pessoa("c", "Cia Ure", Some(&["Rust"])),
    ];
    let index = index_of(&people);
    // `jav` is held by two stacks and no name, `ure` by three names and no stack, `avu` and
    // `vur` by nobody.
    let narrowing = index.rarest_trigrams("javure", 2);
    assert_eq!(narrowing.names, ["avu", "jav"]);
    assert_eq!(narrowing.stack, ["avu", "ure"]);
}
