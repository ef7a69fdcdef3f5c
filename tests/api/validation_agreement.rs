//! The replay's contract check (`replay::validation`), which gives a run its expected count, and the
//! service's own parsing (`rinha::domain::Pessoa::parse`, what `POST /pessoas` runs before storing)
//! agree on every payload: the generated feeder's, and cases built deterministically around each rule's
//! edges. No database is needed: the service's unique apelido is modelled as the set of apelidos it
//! has accepted, which is what its `ON CONFLICT (apelido) DO NOTHING` keeps.

use std::collections::HashSet;

use replay::payloads::{DEFAULT_SEED, PayloadGenerator};
use replay::rng::SplitMix64;
use replay::validation::{accepted_apelido, expected_people};
use rinha::domain::Pessoa;

/// The apelido the service stores a body under when the apelido is still free, or `None` when it
/// answers 400 or 422 whatever is stored.
fn service_apelido(body: &[u8]) -> Option<String> {
    Pessoa::parse(body, None)
        .ok()
        .map(|pessoa| pessoa.apelido().as_ref().to_owned())
}

/// People the service holds after these bodies, in this order, on an empty database.
fn service_people<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let mut stored = HashSet::new();
    for body in bodies {
        if let Some(apelido) = service_apelido(body) {
            // A taken apelido is answered 422 and stores nothing.
            stored.insert(apelido);
        }
    }
    stored.len()
}

fn assert_agree(body: &[u8]) {
    assert_eq!(
        accepted_apelido(body),
        service_apelido(body),
        "the two checks disagree on {}",
        String::from_utf8_lossy(body)
    );
}

fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

/// Each field's variants as raw JSON (`None`: the field is left out), the valid ones first.
struct Variants {
    apelido: Vec<Option<String>>,
    nome: Vec<Option<String>>,
    nascimento: Vec<Option<String>>,
    stack: Vec<Option<String>>,
}

fn variants() -> Variants {
    let apelido = [
        quoted("josé"),
        quoted(&"a".repeat(32)),
        quoted(&"é".repeat(32)),
        quoted(&"😀".repeat(32)),
        // The same characters as escapes: two UTF-16 units for one character.
        quoted(&"\\ud83d\\ude00".repeat(32)),
        quoted("\\u00e9"),
        quoted(""),
        quoted("\\u0000"),
        quoted("a\\u0000b"),
        quoted(&"a".repeat(33)),
        quoted(&"é".repeat(33)),
        quoted(&"😀".repeat(33)),
        quoted("\\ud800"),
        "null".to_owned(),
        "1".to_owned(),
        "true".to_owned(),
        "[\"a\"]".to_owned(),
        "{\"a\": 1}".to_owned(),
    ];
    let nome = [
        quoted("José Roberto"),
        quoted(&"n".repeat(100)),
        quoted(&"ç".repeat(100)),
        quoted(" "),
        quoted(""),
        quoted("\\u0000"),
        quoted("Jo\\u0000sé"),
        quoted(&"n".repeat(101)),
        quoted(&"ç".repeat(101)),
        "null".to_owned(),
        "1".to_owned(),
        "[]".to_owned(),
    ];
    let nascimento = [
        "2000-10-01",
        "2024-02-29",
        "2000-02-29",
        "0001-01-01",
        "9999-12-31",
        "2023-02-29",
        "1900-02-29",
        "2024-02-30",
        "2000-04-31",
        "2000-13-01",
        "2000-00-10",
        "2000-01-00",
        "2000-01-32",
        "0000-01-01",
        "12-12-2000",
        "?!?!?",
        "2000-1-01",
        "20000-01-01",
        "+200-01-01",
        "2000/01/01",
        "2000-01-01 ",
        " 2000-01-01",
        "２０００-01-01",
        "2000-01-0\\u0000",
        "",
    ]
    .map(quoted)
    .into_iter()
    .chain(["null", "10", "20000101", "[\"2000-01-01\"]"].map(str::to_owned));
    let stack = [
        "[\"C#\", \"Node\", \"Oracle\"]".to_owned(),
        "[]".to_owned(),
        "null".to_owned(),
        format!("[{}]", quoted(&"1".repeat(32))),
        format!("[{}]", quoted(&"ã".repeat(32))),
        format!("[{}]", vec![quoted("Go"); 40].join(", ")),
        format!("[{}]", vec![quoted("Go"); 100].join(", ")),
        format!("[{}]", vec![quoted("Go"); 101].join(", ")),
        "[\"Go\", \"Go\"]".to_owned(),
        format!("[{}]", quoted(&"1".repeat(33))),
        format!("[{}]", quoted(&"ã".repeat(33))),
        format!("[\"Go\", {}]", quoted(&"1".repeat(40))),
        "[\"\"]".to_owned(),
        "[\"x\\u0000\"]".to_owned(),
        "[null]".to_owned(),
        "[1, \"PHP\"]".to_owned(),
        "\"PHP\"".to_owned(),
        "1".to_owned(),
        "{\"Go\": 1}".to_owned(),
    ];
    let present = |values: Vec<String>| values.into_iter().map(Some).collect::<Vec<_>>();
    let mut variants = Variants {
        apelido: present(apelido.to_vec()),
        nome: present(nome.to_vec()),
        nascimento: present(nascimento.collect()),
        stack: present(stack.to_vec()),
    };
    for field in [
        &mut variants.apelido,
        &mut variants.nome,
        &mut variants.nascimento,
        &mut variants.stack,
    ] {
        field.push(None);
    }
    variants
}

/// A body with the fields given, in the contest's order.
fn body(
    apelido: &Option<String>,
    nome: &Option<String>,
    nascimento: &Option<String>,
    stack: &Option<String>,
) -> Vec<u8> {
    let fields: Vec<String> = [
        ("apelido", apelido),
        ("nome", nome),
        ("nascimento", nascimento),
        ("stack", stack),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some(format!("\"{name}\": {}", value.as_ref()?)))
    .collect();
    format!("{{{}}}", fields.join(", ")).into_bytes()
}

#[test]
fn each_fields_edge_cases_agree_with_the_other_fields_valid() {
    let variants = variants();
    let (apelido, nome, nascimento, stack) = (
        &variants.apelido[0],
        &variants.nome[0],
        &variants.nascimento[0],
        &variants.stack[0],
    );
    let mut accepted = 0;
    let mut cases = 0;
    for value in &variants.apelido {
        let payload = body(value, nome, nascimento, stack);
        assert_agree(&payload);
        accepted += usize::from(service_apelido(&payload).is_some());
        cases += 1;
    }
    for value in &variants.nome {
        assert_agree(&body(apelido, value, nascimento, stack));
        cases += 1;
    }
    for value in &variants.nascimento {
        assert_agree(&body(apelido, nome, value, stack));
        cases += 1;
    }
    for value in &variants.stack {
        assert_agree(&body(apelido, nome, nascimento, value));
        cases += 1;
    }
    // josé, 32 a, 32 é, 32 😀 (twice) and é as an escape; the rest is refused.
    assert_eq!(accepted, 6);
    assert!(cases > 70, "{cases}");
}

#[test]
fn random_combinations_of_edge_cases_agree() {
    let variants = variants();
    let mut random = SplitMix64::new(2023);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..20_000 {
        // Half the time a field keeps one of its first (valid) variants, so that bodies with one or
        // two broken fields are common and every field's rule decides some of them.
        let mut pick = |field: &[Option<String>], valid: usize| {
            let index = if random.below(2) == 0 {
                random.below(valid as u64) as usize
            } else {
                random.below(field.len() as u64) as usize
            };
            field[index].clone()
        };
        let payload = body(
            &pick(&variants.apelido, 5),
            &pick(&variants.nome, 4),
            &pick(&variants.nascimento, 5),
            &pick(&variants.stack, 7),
        );
        assert_agree(&payload);
        if service_apelido(&payload).is_some() {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    assert!(
        accepted > 1_000 && rejected > 1_000,
        "{accepted} / {rejected}"
    );
}

#[test]
fn whole_body_edge_cases_agree() {
    let valid = r#""apelido": "ana", "nome": "Ana", "nascimento": "1985-09-23""#;
    let cases: Vec<Vec<u8>> = [
        String::new(),
        "{".to_owned(),
        "[]".to_owned(),
        "null".to_owned(),
        "\"text\"".to_owned(),
        "not json".to_owned(),
        format!("{{{valid}}}"),
        format!(" \n{{{valid}}}\n "),
        format!("{{{valid}}} x"),
        format!("{{{valid}}}{{}}"),
        format!("{{{valid}, \"extra\": [1, 2]}}"),
        format!("{{{valid}, \"apelido\": \"bia\"}}"),
        format!("{{{valid}, \"stack\": null, \"stack\": []}}"),
        r#"{"stack": ["Go"], "nascimento": "1985-09-23", "nome": "Ana", "apelido": "ana"}"#
            .to_owned(),
        format!("{{{valid},}}"),
        r#"{"Apelido": "ana", "nome": "Ana", "nascimento": "1985-09-23"}"#.to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([
        b"\xff".to_vec(),
        b"{\"apelido\": \"\xc3\", \"nome\": \"Ana\", \"nascimento\": \"1985-09-23\"}".to_vec(),
        b"\xef\xbb\xbf{\"apelido\": \"ana\", \"nome\": \"Ana\", \"nascimento\": \"1985-09-23\"}"
            .to_vec(),
    ])
    .collect();
    for payload in &cases {
        assert_agree(payload);
    }
}

#[test]
fn the_generated_feeder_agrees_payload_for_payload() {
    let mut generator = PayloadGenerator::new(DEFAULT_SEED);
    let payloads: Vec<String> = (0..30_000).map(|_| generator.next_payload()).collect();
    for payload in &payloads {
        assert_agree(payload.as_bytes());
    }
    let bodies = || payloads.iter().map(String::as_bytes);
    assert_eq!(expected_people(bodies()), service_people(bodies()));
}

#[test]
fn duplicated_apelidos_count_once_in_both() {
    let variants = variants();
    let mut random = SplitMix64::new(13);
    // A small pool of apelidos, among them two that differ only in case and one written literally and
    // as an escape, so that a batch repeats apelidos often, and some repeats are refused for another
    // field: a refused body must not take the apelido.
    let pool = ["dup", "Dup", "é", "\\u00e9", "x", ""].map(|apelido| Some(quoted(apelido)));
    for _ in 0..200 {
        let batch: Vec<Vec<u8>> = (0..50)
            .map(|_| {
                let apelido = random.pick(&pool);
                let nascimento = random.pick(&variants.nascimento[..8]);
                let stack = random.pick(&variants.stack[..10]);
                body(apelido, &variants.nome[0], nascimento, stack)
            })
            .collect();
        for payload in &batch {
            assert_agree(payload);
        }
        let bodies = || batch.iter().map(Vec::as_slice);
        assert_eq!(expected_people(bodies()), service_people(bodies()));
    }
}

#[test]
fn a_circular_feeder_sends_its_payloads_again_and_both_count_them_once() {
    let mut generator = PayloadGenerator::new(5);
    let feeder: Vec<String> = (0..3_000).map(|_| generator.next_payload()).collect();
    let sent = || feeder.iter().cycle().take(7_000).map(String::as_bytes);
    let expected = expected_people(sent());
    assert_eq!(expected, service_people(sent()));
    assert_eq!(
        expected,
        service_people(feeder.iter().map(String::as_bytes))
    );
}
