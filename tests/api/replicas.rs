//! Two replicas over one database, and writes racing for the same apelido.

use serde_json::Value;

use crate::support::{TestApp, db_client, explain, fresh_database, metric_value, pessoa, settings};

#[tokio::test]
async fn a_record_created_on_one_replica_is_readable_at_once_on_the_other() {
    let database = fresh_database().await;
    let first = TestApp::spawn_on(&database).await;
    let second = TestApp::spawn_on(&database).await;

    for i in 0..20 {
        let location = first.create(&pessoa(&format!("visto{i}"))).await;
        let response = second.get(&location).await;
        assert_eq!(response.status(), 200, "{location} on the second replica");
        let found: Vec<Value> = second
            .get(&format!("/pessoas?t=visto{i}"))
            .await
            .json()
            .await
            .unwrap();
        assert!(
            !found.is_empty(),
            "visto{i} searchable on the second replica"
        );
    }
    assert_eq!(second.count().await, 20);
}

#[tokio::test]
async fn dates_read_from_the_database_are_iso_whatever_its_date_style() {
    let database = fresh_database().await;
    let name = database.rsplit('/').next().unwrap();
    db_client(&database)
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" SET DateStyle = 'German, DMY'"
        ))
        .await
        .unwrap();
    // The second replica reads the person by id and by its catch-up, the third as it loads.
    let first = TestApp::spawn_on(&database).await;
    let second = TestApp::spawn_on(&database).await;
    let mut body = pessoa("datado");
    body["nascimento"] = "0987-06-05".into();
    let location = first.create(&body).await;
    let third = TestApp::spawn_on(&database).await;
    for (replica, path) in [
        (&second, location.clone()),
        (&second, "/pessoas?t=datado".to_owned()),
        (&third, location.clone()),
    ] {
        let text = replica.get(&path).await.text().await.unwrap();
        assert!(
            text.contains(r#""nascimento":"0987-06-05""#),
            "{path}: {text}"
        );
    }
}

#[tokio::test]
async fn racing_posts_of_one_apelido_create_exactly_one() {
    let database = fresh_database().await;
    let replicas = [
        TestApp::spawn_on(&database).await,
        TestApp::spawn_on(&database).await,
    ];
    let attempts = (0..64).map(|i| {
        let replica = &replicas[i % 2];
        async move { replica.post(&pessoa("disputado")).await.status().as_u16() }
    });
    let mut statuses = futures_util::future::join_all(attempts).await;
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 422).count(),
        63,
        "{statuses:?}"
    );
    assert_eq!(replicas[0].count().await, 1);
}

#[tokio::test]
async fn concurrent_writes_are_batched_and_each_gets_its_own_answer() {
    let app = TestApp::spawn().await;
    // 300 people, every third apelido repeated, all sent at once.
    let attempts = (0..300).map(|i| {
        let app = &app;
        async move {
            app.post(&pessoa(&format!(
                "lote{}",
                i / 3 * 3 + (i % 3 != 0) as usize
            )))
            .await
        }
    });
    let responses = futures_util::future::join_all(attempts).await;
    let created = responses.iter().filter(|r| r.status() == 201).count();
    let taken = responses.iter().filter(|r| r.status() == 422).count();
    assert_eq!(created, 200);
    assert_eq!(taken, 100);
    assert_eq!(app.count().await, 200);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let batches = metric_value(&metrics, "group_commit_batch_size_count");
    let written = metric_value(&metrics, "group_commit_batch_size_sum");
    assert_eq!(written, 300.0, "every request went through the writer once");
    assert!(batches <= 300.0);
}

#[tokio::test]
async fn a_batch_stores_each_person_whole_and_skips_apelidos_taken() {
    use rinha::domain::Pessoa;
    use rinha::store::Store;

    // The store's two statements, for one person and for several, read back the same.
    let database = fresh_database().await;
    let store = Store::new(&settings(&database)).unwrap();
    store.migrate().await.unwrap();
    let parse = |body: Value| Pessoa::parse(body.to_string().as_bytes(), None).unwrap();
    let alone = parse(serde_json::json!({
        "apelido": "só", "nome": "Única", "nascimento": "1999-12-31", "stack": ["Zig", "C"]
    }));
    assert_eq!(
        store
            .insert_batch(&[&alone], &[], 50)
            .await
            .unwrap()
            .ids
            .len(),
        1
    );
    let batch = [
        parse(serde_json::json!({
            "apelido": "lote", "nome": "Ana", "nascimento": "2000-02-29", "stack": ["Rust", "Go", "C"]
        })),
        parse(serde_json::json!({
            "apelido": "lote", "nome": "Bia", "nascimento": "2001-01-01", "stack": null
        })),
        parse(serde_json::json!({
            "apelido": "só", "nome": "Outra", "nascimento": "2001-01-01", "stack": null
        })),
        parse(serde_json::json!({
            "apelido": "vazia", "nome": "Cris", "nascimento": "1980-05-06", "stack": []
        })),
    ];
    let references: Vec<&Pessoa> = batch.iter().collect();
    let inserted = store.insert_batch(&references, &[], 50).await.unwrap().ids;
    assert_eq!(inserted.len(), 2, "one 'lote' and 'vazia'; 'só' was taken");
    assert!(inserted.contains(&batch[3].id()));

    let rows = db_client(&database)
        .await
        .query(
            "SELECT apelido, nome, nascimento::text, stack FROM pessoas ORDER BY apelido",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(String, String, String, Option<Vec<String>>)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let lote = if inserted.contains(&batch[0].id()) {
        ("Ana", "2000-02-29", Some(vec!["Rust", "Go", "C"]))
    } else {
        ("Bia", "2001-01-01", None)
    };
    let owned = |items: Option<Vec<&str>>| {
        items.map(|items| items.into_iter().map(str::to_owned).collect::<Vec<_>>())
    };
    assert_eq!(
        stored,
        vec![
            ("lote".into(), lote.0.into(), lote.1.into(), owned(lote.2)),
            (
                "só".into(),
                "Única".into(),
                "1999-12-31".into(),
                owned(Some(vec!["Zig", "C"]))
            ),
            (
                "vazia".into(),
                "Cris".into(),
                "1980-05-06".into(),
                Some(vec![])
            ),
        ]
    );
}

#[tokio::test]
async fn a_search_sees_a_row_committed_after_newer_ones() {
    let app = TestApp::spawn().await;
    let search = |term: &'static str| {
        let app = &app;
        async move {
            let found: Vec<Value> = app
                .get(&format!("/pessoas?t={term}"))
                .await
                .json()
                .await
                .unwrap();
            found.len()
        }
    };
    // An older transaction inserts and stays open...
    let mut early = db_client(&app.database_url).await;
    let early = early.transaction().await.unwrap();
    early
        .batch_execute(
            "INSERT INTO pessoas (id, apelido, nome, nascimento) \
             VALUES (gen_random_uuid(), 'antigo', 'Primeiro', '2000-01-01')",
        )
        .await
        .unwrap();
    // ...while a newer one commits, and a search catches up past it.
    app.create(&pessoa("recente")).await;
    assert_eq!(search("recente").await, 1);
    assert_eq!(search("antigo").await, 0, "not committed yet");
    early.commit().await.unwrap();
    assert_eq!(search("antigo").await, 1, "committed last, found at once");
}

#[tokio::test]
async fn a_replica_past_its_memory_budget_still_answers_every_route() {
    let (db, normal, small) = past_a_small_budget("cheio", 5000, false).await;
    let metrics = small.get("/metrics").await.text().await.unwrap();
    let held: usize = metrics
        .lines()
        .find_map(|line| line.strip_prefix("mirror_people "))
        .expect("mirror_people")
        .parse()
        .unwrap();
    assert!(held > 0 && held < 2500, "{held} people held in 768 KiB");

    for (term, expected) in [
        ("agulha", vec!["agulha"]),
        ("STRASSE", vec!["agulha"]),
        ("cheio4999", vec!["cheio4999"]),
        ("zzzz", vec![]),
    ] {
        assert_eq!(search(&small, term).await, expected, "{term}");
    }
    let mut many = search(&small, "cheio").await;
    assert_eq!(many.len(), 50);
    many.sort();
    many.dedup();
    assert_eq!(many.len(), 50, "each person once");
    assert_eq!(
        search(&small, "cheio123").await.len(),
        11,
        "cheio123, cheio1230 to 1239"
    );

    // A record past the budget is read from the database.
    let id: uuid::Uuid = db
        .query_one("SELECT id FROM pessoas WHERE apelido = 'cheio5000'", &[])
        .await
        .unwrap()
        .get(0);
    let record: Value = small
        .get(&format!("/pessoas/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["apelido"], "cheio5000");
    assert_eq!(record["stack"], serde_json::json!(["Rust", "Go"]));

    // Writes on either replica are seen at once by the other.
    let on_normal = normal.create(&pessoa("novo-normal")).await;
    assert_eq!(search(&small, "novo-normal").await, ["novo-normal"]);
    assert_eq!(small.get(&on_normal).await.status(), 200);
    let on_small = small.create(&pessoa("novo-pequeno")).await;
    assert_eq!(search(&normal, "novo-pequeno").await, ["novo-pequeno"]);
    assert_eq!(search(&small, "novo-pequeno").await, ["novo-pequeno"]);
    assert_eq!(small.get(&on_small).await.status(), 200);
    assert_eq!(small.post(&pessoa("cheio4999")).await.status(), 422);
    assert_eq!(small.count().await, 5003);
    assert_eq!(normal.count().await, 5003);
}

#[tokio::test]
async fn past_its_budget_a_search_the_database_cannot_finish_soon_answers_with_what_it_found() {
    let (db, _normal, small) = past_a_small_budget("lento", 30_000, false).await;
    // The searchable text now takes the database a millisecond a row: reading the rows the
    // replica left out takes it half a minute.
    slow_down_the_searchable_text(&db).await;
    assert_eq!(search(&small, "agulha").await, Vec::<String>::new());
    assert_eq!(small.metric("mirror_searches_cut_short_total").await, 1.0);
}

#[tokio::test]
async fn past_its_budget_a_term_with_a_space_is_found_through_its_spaced_gram() {
    let (db, normal, _) = past_a_small_budget("espaco", 30_000, false).await;
    // `ab c` is held by three people. Its one trigram, `ab `, by 400 more, and the lists of its
    // two-character pieces (`ab`, `b `, ` c`) are full.
    let limited = indexed_after(
        &db,
        &normal,
        "INSERT INTO pessoas (id, apelido, nome, nascimento) \
         SELECT gen_random_uuid(), 'zab' || i, 'Zab Q', '1990-01-01' \
         FROM generate_series(1, 400) AS i; \
         INSERT INTO pessoas (id, apelido, nome, nascimento) \
         SELECT gen_random_uuid(), 'qc' || i, 'Q Ca', '1990-01-01' \
         FROM generate_series(1, 60) AS i; \
         INSERT INTO pessoas (id, apelido, nome, nascimento) \
         SELECT gen_random_uuid(), apelido, 'Zab ' || apelido, '1990-01-01' \
         FROM unnest(ARRAY['Cx', 'Cy', 'Cz']) AS apelido",
    )
    .await;
    // Every row the trigram index gives takes the database a millisecond: the 403 that hold
    // `ab ` take it past its budget.
    slow_down_the_searchable_text(&db).await;
    let small = TestApp::spawn_with(limited).await;
    let mut found = search(&small, "AB%20C").await;
    found.sort();
    assert_eq!(found, ["Cx", "Cy", "Cz"]);
    assert_eq!(
        search(&small, "ab%20q").await.len(),
        50,
        "any 50 of a full list"
    );
    assert_eq!(small.metric("mirror_searches_cut_short_total").await, 0.0);
}

#[tokio::test]
async fn past_its_budget_a_term_is_narrowed_in_the_names_apart_from_the_stacks() {
    let (db, normal, _) = past_a_small_budget("campos", 30_000, false).await;
    // `re ksa` is held by three people's names. Its trigrams, `re `, ` ks` and `ksa`, by 400
    // more people's, in two fields: ` ks` and `ksa` in the name, `re ` in every `Clojure` of a
    // stack.
    let limited = indexed_after(
        &db,
        &normal,
        "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
         SELECT gen_random_uuid(), 'ks' || i, 'Ksa Q', '1990-01-01', ARRAY['Clojure'] \
         FROM generate_series(1, 400) AS i; \
         INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
         SELECT gen_random_uuid(), apelido, 'Are Ksa', '1990-01-01', ARRAY['Clojure'] \
         FROM unnest(ARRAY['Rx', 'Ry', 'Rz']) AS apelido",
    )
    .await;
    // A term only stacks hold is found through them.
    let small = TestApp::spawn_with(limited.clone()).await;
    assert_eq!(search(&small, "clojure").await.len(), 50);
    // Every row the trigram index gives takes the database a millisecond: the 403 whose whole
    // text holds the three trigrams would take it past its budget. A replica started from now
    // on plans with the slower functions (one started before has the index's expressions
    // cached as they were, and no longer matches them to its queries).
    slow_down_the_searchable_text(&db).await;
    let small = TestApp::spawn_with(limited).await;
    let mut found = search(&small, "RE%20KSA").await;
    found.sort();
    assert_eq!(found, ["Rx", "Ry", "Rz"]);
    assert_eq!(small.metric("mirror_searches_cut_short_total").await, 0.0);
}

#[tokio::test]
async fn past_its_budget_a_replica_searches_the_database_through_the_search_index() {
    let (db, normal, small) = past_a_small_budget("indice", 30_000, true).await;
    db.batch_execute("ANALYZE pessoas").await.unwrap();

    // A rare term is a few entries of the index, not a read of every row.
    // Over the rows before the snapshot the filter was saved with.
    let before: i64 = db
        .query_one("SELECT snapshot_xmax FROM pessoas_pedacos_visto", &[])
        .await
        .unwrap()
        .get(0);
    let plan = explain(
        &db,
        rinha::store::SEARCH_SQL,
        &[
            &"agu", &"gul", &"lha", &"agu", &"gul", &"lha", &"agulha", &50i64, &before,
        ],
    )
    .await;
    assert!(plan.contains(&format!("pessoas_busca_{before}")), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");

    for (term, expected) in [
        ("agulha", vec!["agulha"]),
        ("STRASSE", vec!["agulha"]),
        ("100%25", vec!["agulha"]),
        ("indice29999", vec!["indice29999"]),
        ("zzzz", vec![]),
        // Across two fields only in the database's text, which puts a line between them.
        ("agulha%0ARua", vec![]),
        // Through the short grams `rinha index-search` listed: terms of one or two
        // characters, and one with no three ASCII letters or digits in a row.
        ("0%25", vec!["agulha"]),
        ("%25", vec!["agulha"]),
        ("ΟΔ", vec!["agulha"]),
        ("οδος", vec!["agulha"]),
        ("ΟΔΟΣ", vec!["agulha"]),
        ("zq", vec![]),
        ("ωω", vec![]),
    ] {
        assert_eq!(search(&small, term).await, expected, "{term}");
    }
    // A term of seven bytes or more that nobody's pieces hold is ruled out by the saved
    // filter, with no database; one that somebody left out holds is found.
    let before = small.metric("mirror_searches_ruled_out_total").await;
    assert_eq!(search(&small, "agulhazzzz").await, Vec::<String>::new());
    assert_eq!(search(&small, "xyzzyplugh").await, Vec::<String>::new());
    assert_eq!(
        small.metric("mirror_searches_ruled_out_total").await,
        before + 2.0
    );
    assert_eq!(search(&small, "a Straße").await, ["agulha"]);
    // The database checks the whole term, so a search takes one page of rows, even when the
    // term's literal runs (`dice` of `dicess`, whose `ss` may be a `ß`) are everyone's.
    let before = small.metric("mirror_search_database_rows_total").await;
    assert_eq!(search(&small, "dicess").await, Vec::<String>::new());
    assert_eq!(search(&small, "me%200ß").await, Vec::<String>::new());
    assert!(small.metric("mirror_search_database_rows_total").await - before <= 100.0);
    assert_eq!(search(&small, "indice2999").await.len(), 11);
    let mut many = search(&small, "indice").await;
    many.sort();
    many.dedup();
    assert_eq!(many.len(), 50, "each person once");
    // People stored after the mirror filled are found through the index, and through the
    // lists the writers keep.
    normal.create(&pessoa("recém-chegado")).await;
    assert_eq!(search(&small, "RECÉM").await, ["recém-chegado"]);
    assert_eq!(search(&small, "ÉM").await, ["recém-chegado"]);
    for i in 0..60 {
        normal.create(&pessoa(&format!("ж{i}"))).await;
    }
    let mut many = search(&small, "Ж").await;
    many.sort();
    many.dedup();
    assert_eq!(many.len(), 50, "any 50 of a full list");
    assert_eq!(search(&small, "ж5").await.len(), 11, "ж5 and ж50 to ж59");
    assert_eq!(small.count().await, 30_062);
    assert_eq!(normal.count().await, 30_062);

    // A later run builds the index over the rows stored since, then drops the old one.
    let again = rinha::config::Settings {
        memory_limit_bytes: Some(1 << 20),
        ..settings(&small.database_url)
    };
    rinha::startup::index_search(&again).await.unwrap();
    let indexes: Vec<String> = db
        .query(
            "SELECT indexrelid::regclass::text FROM pg_index \
             WHERE indexrelid::regclass::text LIKE 'pessoas_busca_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert_ne!(indexes[0], format!("pessoas_busca_{before}"));
}

#[tokio::test]
async fn past_its_budget_a_replica_counts_each_person_once_whenever_they_commit() {
    // A transaction in progress when the replica loads commits after it filled: its row is
    // counted once, whether the load or a catch-up meets it.
    let database = fresh_database().await;
    let db = db_client(&database).await;
    let normal = TestApp::spawn_on(&database).await;
    db.batch_execute(
        "INSERT INTO pessoas (id, apelido, nome, nascimento) \
         SELECT gen_random_uuid(), 'conta' || i, 'Nome ' || md5(i::text), '1990-01-01' \
         FROM generate_series(1, 6000) AS i",
    )
    .await
    .unwrap();
    let mut late = db_client(&database).await;
    let late = late.transaction().await.unwrap();
    late.batch_execute(
        "INSERT INTO pessoas (id, apelido, nome, nascimento) \
         VALUES (gen_random_uuid(), 'tardio', 'Tardio', '2000-01-01')",
    )
    .await
    .unwrap();
    let small = TestApp::spawn_with(rinha::config::Settings {
        memory_limit_bytes: Some(1 << 20),
        ..settings(&database)
    })
    .await;
    let metrics = small.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("mirror_full 1"), "{metrics}");
    assert_eq!(small.count().await, 6000);
    normal.create(&pessoa("depois")).await;
    assert_eq!(small.count().await, 6001);
    late.commit().await.unwrap();
    for _ in 0..3 {
        assert_eq!(small.count().await, 6002);
    }
    small.create(&pessoa("no-pequeno")).await;
    assert_eq!(small.count().await, 6003);
    assert_eq!(normal.count().await, 6003);
    assert_eq!(search(&small, "tardio").await, ["tardio"]);
}

#[tokio::test]
async fn a_mirror_that_fills_while_running_filters_the_people_it_leaves_out() {
    let database = fresh_database().await;
    let db = db_client(&database).await;
    let small = TestApp::spawn_with(rinha::config::Settings {
        memory_limit_bytes: Some(1 << 20),
        ..settings(&database)
    })
    .await;
    db.batch_execute(
        "INSERT INTO pessoas (id, apelido, nome, nascimento) \
         SELECT gen_random_uuid(), 'tarde' || i, 'Nome ' || md5(i::text), '1990-01-01' \
         FROM generate_series(1, 6000) AS i; \
         INSERT INTO pessoas (id, apelido, nome, nascimento) \
         VALUES (gen_random_uuid(), 'agulha-tardia', 'Por Último', '1990-01-01')",
    )
    .await
    .unwrap();
    assert_eq!(search(&small, "AGULHA-TARDIA").await, ["agulha-tardia"]);
    let metrics = small.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("mirror_full 1"), "{metrics}");
    assert_eq!(search(&small, "tarde5999").await, ["tarde5999"]);
    assert_eq!(search(&small, "último").await, ["agulha-tardia"]);
    // Read after those searches, which the filter may rule out too.
    let metrics = small.get("/metrics").await.text().await.unwrap();
    let ruled_out = metric_value(&metrics, "mirror_searches_ruled_out_total");
    assert_eq!(search(&small, "ninguém-aqui").await, Vec::<String>::new());
    let metrics = small.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(&metrics, "mirror_searches_ruled_out_total"),
        ruled_out + 1.0
    );
    assert_eq!(small.count().await, 6001);
}

/// A replica with the schema applied and a replica whose mirror holds a fraction of the people
/// stored behind their backs: `count` named `prefix` and a number, then `agulha`, whose text
/// needs full case folding and holds LIKE's wildcard. With `index`, the search index is built
/// before the second starts. Also returns a client of the database.
async fn past_a_small_budget(
    prefix: &str,
    count: u32,
    index: bool,
) -> (tokio_postgres::Client, TestApp, TestApp) {
    let database = fresh_database().await;
    let db = db_client(&database).await;
    // Applies the schema.
    let normal = TestApp::spawn_on(&database).await;
    db.batch_execute(&format!(
        "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
         SELECT gen_random_uuid(), '{prefix}' || i, 'Nome ' || md5(i::text), '1990-01-01', \
                ARRAY['Rust', 'Go'] \
         FROM generate_series(1, {count}) AS i; \
         INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
         VALUES (gen_random_uuid(), 'agulha', 'Rua Straße', '1990-01-01', ARRAY['ΟΔΟΣ', '100%']);"
    ))
    .await
    .unwrap();
    // A mirror budget of 768 KiB: room for a fraction of these people.
    let limited = rinha::config::Settings {
        memory_limit_bytes: Some(1 << 20),
        ..settings(&database)
    };
    if index {
        rinha::startup::index_search(&limited).await.unwrap();
    }
    let small = TestApp::spawn_with(limited).await;
    let metrics = small.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("mirror_full 1"), "{metrics}");
    (db, normal, small)
}

/// The settings of a replica with a mirror of 768 KiB, once `sql` has stored people and `rinha
/// index-search` has indexed them.
async fn indexed_after(
    db: &tokio_postgres::Client,
    normal: &TestApp,
    sql: &str,
) -> rinha::config::Settings {
    db.batch_execute(sql).await.unwrap();
    let limited = rinha::config::Settings {
        memory_limit_bytes: Some(1 << 20),
        ..settings(&normal.database_url)
    };
    rinha::startup::index_search(&limited).await.unwrap();
    limited
}

/// Makes each part of the searchable text take the database a millisecond a row.
async fn slow_down_the_searchable_text(db: &tokio_postgres::Client) {
    db.batch_execute(
        "CREATE OR REPLACE FUNCTION pessoas_busca_nomes(apelido varchar, nome varchar) \
         RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN \
             PERFORM pg_sleep(0.001); \
             RETURN lower(apelido || E'\\n' || nome); \
         END $$; \
         CREATE OR REPLACE FUNCTION pessoas_busca_stack(stack varchar[]) \
         RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN \
             PERFORM pg_sleep(0.001); \
             RETURN lower(coalesce(array_to_string(stack, E'\\n'), '')); \
         END $$",
    )
    .await
    .unwrap();
}

/// The apelidos a search on `app` returns, after checking it answers 200.
async fn search(app: &TestApp, term: &str) -> Vec<String> {
    let path = format!("/pessoas?t={term}");
    let response = app.get(&path).await;
    assert_eq!(response.status(), 200, "{path}");
    let found: Vec<Value> = response.json().await.unwrap();
    found
        .iter()
        .map(|record| record["apelido"].as_str().unwrap().to_owned())
        .collect()
}
