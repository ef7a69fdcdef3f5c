//! The API contract, line by line, against a real PostgreSQL.

use serde_json::{Value, json};

use crate::support::{TestApp, db_client, explain, pessoa};

#[tokio::test]
async fn a_valid_person_is_created_and_readable_at_its_location() {
    let app = TestApp::spawn().await;
    let body = json!({
        "apelido": "josé",
        "nome": "José Roberto",
        "nascimento": "2000-10-01",
        "stack": ["C#", "Node", "Oracle"],
    });
    let response = app.post(&body).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = location
        .strip_prefix("/pessoas/")
        .expect("Location: /pessoas/<id>");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{location}");

    let response = app.get(&location).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "GET /pessoas/<id> is JSON"
    );
    let record: Value = response.json().await.unwrap();
    assert_eq!(
        record,
        json!({
            "id": id,
            "apelido": "josé",
            "nome": "José Roberto",
            "nascimento": "2000-10-01",
            "stack": ["C#", "Node", "Oracle"],
        })
    );
}

#[tokio::test]
async fn stack_null_and_order_are_kept() {
    let app = TestApp::spawn().await;
    let null_stack = app
        .create(
            &json!({"apelido": "ana", "nome": "Ana", "nascimento": "1985-09-23", "stack": null}),
        )
        .await;
    let record: Value = app.get(&null_stack).await.json().await.unwrap();
    assert_eq!(record["stack"], Value::Null);

    let missing_stack = app
        .create(&json!({"apelido": "bia", "nome": "Bia", "nascimento": "1985-09-23"}))
        .await;
    let record: Value = app.get(&missing_stack).await.json().await.unwrap();
    assert_eq!(record["stack"], Value::Null);

    let ordered = app
        .create(
            &json!({"apelido": "cris", "nome": "Cris", "nascimento": "1985-09-23",
                        "stack": ["Zig", "Ada", "Go", "Ada"]}),
        )
        .await;
    let record: Value = app.get(&ordered).await.json().await.unwrap();
    assert_eq!(record["stack"], json!(["Zig", "Ada", "Go", "Ada"]));
}

#[tokio::test]
async fn lengths_are_counted_in_characters() {
    let app = TestApp::spawn().await;
    let apelido = "é".repeat(32);
    let location = app
        .create(&json!({
            "apelido": apelido,
            "nome": "ç".repeat(100),
            "nascimento": "2000-02-29",
            "stack": ["ã".repeat(32)],
        }))
        .await;
    let record: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(record["apelido"], apelido);
    let too_long = json!({"apelido": "é".repeat(33), "nome": "n", "nascimento": "2000-01-01"});
    assert_eq!(app.post(&too_long).await.status(), 422);
}

#[tokio::test]
async fn a_taken_apelido_gets_422() {
    let app = TestApp::spawn().await;
    app.create(&pessoa("unico")).await;
    let mut again = pessoa("unico");
    again["nome"] = json!("Outra Pessoa");
    assert_eq!(app.post(&again).await.status(), 422);
    assert_eq!(app.count().await, 1);
}

#[tokio::test]
async fn search_matches_inside_any_one_field_case_insensitively() {
    let app = TestApp::spawn().await;
    app.create(
        &json!({"apelido": "zeca", "nome": "José Pagodinho", "nascimento": "1959-02-04",
                       "stack": ["Samba", "Node"]}),
    )
    .await;
    app.create(
        &json!({"apelido": "Nodinho", "nome": "Fulano", "nascimento": "1980-01-01",
                       "stack": null}),
    )
    .await;
    app.create(
        &json!({"apelido": "outro", "nome": "Ciclano", "nascimento": "1980-01-01",
                       "stack": ["Python"]}),
    )
    .await;

    let apelidos = |records: Vec<Value>| {
        let mut names: Vec<String> = records
            .iter()
            .map(|r| r["apelido"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let search = |term: &str| {
        let app = &app;
        let path = format!("/pessoas?t={}", urlencode(term));
        async move {
            let response = app.get(&path).await;
            assert_eq!(response.status(), 200, "{path}");
            apelidos(response.json::<Vec<Value>>().await.unwrap())
        }
    };
    assert_eq!(search("nod").await, ["Nodinho", "zeca"]);
    assert_eq!(search("PAGOD").await, ["zeca"], "nome, any case");
    assert_eq!(search("pYtHoN").await, ["outro"], "stack item");
    assert_eq!(search("josé").await, ["zeca"], "non-ASCII");
    assert_eq!(search("JOSÉ").await, ["zeca"], "non-ASCII case folding");
    assert!(search("kotlin").await.is_empty());
    // "Samba" and "Node" are neighbours in the stack, "zeca" and "José" in the record.
    assert!(search("sambanode").await.is_empty());
    assert!(search("samba\nnode").await.is_empty());
    assert!(search("zecajosé").await.is_empty());

    let record = &app
        .get("/pessoas?t=samba")
        .await
        .json::<Vec<Value>>()
        .await
        .unwrap()[0];
    assert_eq!(
        record.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["apelido", "id", "nascimento", "nome", "stack"]
    );
}

#[tokio::test]
async fn search_terms_are_literal() {
    let app = TestApp::spawn().await;
    for (apelido, nome) in [
        ("cem", "100% certo"),
        ("sublinhado", "snake_case"),
        ("barra", "c:\\temp"),
        ("comum", "100 certo snakeXcase c:temp"),
    ] {
        app.create(&json!({"apelido": apelido, "nome": nome, "nascimento": "2000-01-01"}))
            .await;
    }
    for (term, expected) in [
        ("0%", "cem"),
        ("%", "cem"),
        ("e_c", "sublinhado"),
        ("_", "sublinhado"),
        (":\\t", "barra"),
        ("\\", "barra"),
    ] {
        let records: Vec<Value> = app
            .get(&format!("/pessoas?t={}", urlencode(term)))
            .await
            .json()
            .await
            .unwrap();
        let found: Vec<&str> = records
            .iter()
            .map(|r| r["apelido"].as_str().unwrap())
            .collect();
        assert_eq!(found, [expected], "term {term:?}");
    }
}

#[tokio::test]
async fn search_returns_at_most_50() {
    let app = TestApp::spawn().await;
    let requests = (0..60).map(|i| {
        let app = &app;
        async move { app.create(&pessoa(&format!("muitos{i}"))).await }
    });
    futures_util::future::join_all(requests).await;
    let records: Vec<Value> = app.get("/pessoas?t=muitos").await.json().await.unwrap();
    assert_eq!(records.len(), 50);
}

#[tokio::test]
async fn catching_up_reads_only_new_rows_through_their_index() {
    let app = TestApp::spawn().await;
    let db = db_client(&app.database_url).await;
    db.batch_execute(
        "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
         SELECT gen_random_uuid(), 'ap' || i, 'Nome ' || md5(i::text), '1990-01-01', \
                ARRAY['Rust', 'Go'] \
         FROM generate_series(1, 50000) AS i; \
         ANALYZE pessoas;",
    )
    .await
    .unwrap();
    // A catch-up reads the rows of the transactions a snapshot saw in progress, and the newer
    // ones: two index ranges.
    let (oldest, newest): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT min(insert_xact), max(insert_xact) FROM pessoas",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let in_progress = vec![oldest, newest];
    let plan = explain(
        &db,
        rinha::store::IN_PROGRESS_PAGE_SQL,
        &[&in_progress, &0i64, &uuid::Uuid::nil(), &10_000i64],
    )
    .await;
    assert!(plan.contains("pessoas_insert_xact_id"), "{plan}");
    assert!(!plan.contains("Seq Scan on pessoas"), "{plan}");
    assert!(!plan.contains("Sort"), "read in index order: {plan}");
    // PostgreSQL caches a generic plan, made without the parameters, once it costs no more
    // than the plans made for each value: those must walk the index too.
    let plan = explain(
        &db,
        rinha::store::CATCH_UP_SQL,
        &[&in_progress, &newest, &10_000i64],
    )
    .await;
    assert_eq!(plan.matches("pessoas_insert_xact_id").count(), 2, "{plan}");
    assert!(!plan.contains("Seq Scan on pessoas"), "{plan}");
    for (sql, types, values) in [
        (
            rinha::store::CATCH_UP_SQL,
            "bigint[], bigint, bigint",
            format!("ARRAY[{oldest}, {newest}]::bigint[], {newest}, 10000"),
        ),
        (
            rinha::store::IN_PROGRESS_PAGE_SQL,
            "bigint[], bigint, uuid, bigint",
            format!(
                "ARRAY[{oldest}, {newest}]::bigint[], 0, '{}', 10000",
                uuid::Uuid::nil()
            ),
        ),
        (
            rinha::store::PAGE_SQL,
            "bigint, uuid, bigint, bigint",
            format!(
                "{newest}, '{}', 9223372036854775807, 10000",
                uuid::Uuid::max()
            ),
        ),
    ] {
        let generic: String = db
            .simple_query(&format!(
                "DEALLOCATE ALL; PREPARE catch_up ({types}) AS {sql}; \
                 SET plan_cache_mode = force_generic_plan; \
                 EXPLAIN EXECUTE catch_up ({values})"
            ))
            .await
            .unwrap()
            .iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(generic.contains("pessoas_insert_xact_id"), "{generic}");
        assert!(!generic.contains("Seq Scan on pessoas"), "{generic}");
        assert!(!generic.contains("Sort"), "read in index order: {generic}");
    }
    let horizon = newest + 1;
    let plan = explain(
        &db,
        rinha::store::PAGE_SQL,
        &[&0i64, &uuid::Uuid::nil(), &horizon, &10_000i64],
    )
    .await;
    assert!(
        plan.contains("pessoas_insert_xact_id"),
        "a page is an index range: {plan}"
    );
    let found: Vec<Value> = app.get("/pessoas?t=ap49999").await.json().await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "rows inserted behind the replica's back are searchable"
    );
    assert_eq!(app.count().await, 50_000);

    // A replica starting now loads them in pages of 10,000.
    let restarted = TestApp::spawn_on(&app.database_url).await;
    let metrics = restarted.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("mirror_people 50000"), "{metrics}");
    for term in ["ap1", "ap10000", "ap10001", "ap49999"] {
        let found: Vec<Value> = restarted
            .get(&format!("/pessoas?t={term}"))
            .await
            .json()
            .await
            .unwrap();
        assert!(!found.is_empty(), "{term} after a paged load");
    }
}

#[tokio::test]
async fn a_stored_row_that_breaks_the_rules_is_a_500_and_no_outage() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::now_v7();
    // Only a writer other than the API can store an empty apelido.
    db_client(&app.database_url)
        .await
        .execute(
            "INSERT INTO pessoas (id, apelido, nome, nascimento) VALUES ($1, '', 'Nome', '2000-01-01')",
            &[&id],
        )
        .await
        .unwrap();
    let response = app.get(&format!("/pessoas/{id}")).await;
    assert_eq!(
        response.status(),
        500,
        "read from the database, refused as a person"
    );
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(app.count().await, 1, "the database is still answering");
    // The count's catch-up read the row by the lookup's rules: searches leave it out, and a
    // lookup still refuses it.
    let found: Vec<Value> = app.get("/pessoas?t=Nome").await.json().await.unwrap();
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(app.get(&format!("/pessoas/{id}")).await.status(), 500);
}

#[tokio::test]
async fn the_count_takes_in_rows_stored_behind_the_replicas_back_even_undecodable_ones() {
    let app = TestApp::spawn().await;
    app.create(&pessoa("pela-api")).await;
    let db = db_client(&app.database_url).await;
    db.batch_execute(
        "INSERT INTO pessoas (id, apelido, nome, nascimento) \
         SELECT gen_random_uuid(), 'por-fora' || i, 'Nome', '2000-01-01' FROM generate_series(1, 2) i; \
         INSERT INTO pessoas (id, apelido, nome, nascimento) \
         VALUES (gen_random_uuid(), 'do-futuro', 'Nome', '10000-01-01');",
    )
    .await
    .unwrap();
    assert_eq!(
        app.count().await,
        4,
        "every stored row, the undecodable one too"
    );
    app.create(&pessoa("depois")).await;
    assert_eq!(app.count().await, 5);
}

#[tokio::test]
async fn count_is_exact_plain_text_and_never_cached() {
    let app = TestApp::spawn().await;
    assert_eq!(app.count().await, 0);
    for i in 0..3 {
        app.create(&pessoa(&format!("conta{i}"))).await;
    }
    let response = app.get("/contagem-pessoas").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.text().await.unwrap(), "3");
}

#[tokio::test]
async fn metrics_expose_requests_latency_batches_pool_mirror_and_process() {
    let app = TestApp::spawn().await;
    app.create(&pessoa("medido")).await;
    app.get("/pessoas?t=med").await;
    app.get("/nada").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        r#"http_requests_total{route="POST /pessoas",status="201"} 1"#,
        r#"http_requests_total{route="GET /pessoas",status="200"} 1"#,
        r#"http_requests_total{route="other",status="404"} 1"#,
        r#"http_request_duration_seconds_bucket{route="POST /pessoas""#,
        "group_commit_batch_size_count 1",
        r#"db_pool_connections{state="in_use"}"#,
        r#"db_pool_connections{state="idle"}"#,
        "mirror_people 1",
        "mirror_bytes ",
        "mirror_budget_bytes ",
        "mirror_full 0",
        "mirror_catch_ups_total ",
        "mirror_catch_up_rows_total ",
        "mirror_undecodable_rows_total 0",
        "search_items_visited_total 0",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

fn urlencode(term: &str) -> String {
    term.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn only_the_hyphenated_form_of_an_id_names_a_person() {
    let app = TestApp::spawn().await;
    let location = app.create(&pessoa("forma")).await;
    let id: uuid::Uuid = location["/pessoas/".len()..].parse().unwrap();
    assert_eq!(app.get(&location).await.status(), 200);
    let hyphenated = id.hyphenated().to_string();
    assert_eq!(
        app.get(&format!("/pessoas/{}", hyphenated.to_uppercase()))
            .await
            .status(),
        200,
        "hex digits in either case"
    );
    for other in [
        format!("{{{hyphenated}}}"),
        format!("%7B{hyphenated}%7D"),
        format!("urn:uuid:{hyphenated}"),
        id.simple().to_string(),
    ] {
        let path = format!("/pessoas/{other}");
        assert_eq!(app.get(&path).await.status(), 404, "GET {path}");
    }
}

#[tokio::test]
async fn head_answers_wherever_get_does_without_a_body() {
    let app = TestApp::spawn().await;
    let location = app.create(&pessoa("cabeça")).await;
    let unknown = format!("/pessoas/{}", uuid::Uuid::now_v7());
    for path in [
        location.as_str(),
        unknown.as_str(),
        "/pessoas?t=cab",
        "/pessoas",
        "/contagem-pessoas",
    ] {
        let get = app.get(path).await;
        let head = app
            .http
            .head(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        let get_length = get.bytes().await.unwrap().len();
        assert!(get_length > 0, "GET {path} has a body");
        assert_eq!(
            head.headers()["content-length"],
            get_length.to_string().as_str(),
            "HEAD {path} announces GET's length"
        );
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
}

#[tokio::test]
async fn a_stack_holds_at_most_100_items_when_stored_and_more_stored_before_are_still_served() {
    let app = TestApp::spawn().await;
    let with_items = |apelido: &str, count: usize| {
        let items: Vec<String> = (0..count).map(|i| format!("item{i}")).collect();
        json!({"apelido": apelido, "nome": "Nome", "nascimento": "2000-01-01", "stack": items})
    };
    let response = app.post(&with_items("cem", 100)).await;
    assert_eq!(response.status(), 201);
    let response = app.post(&with_items("cento-e-um", 101)).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("stack"), "{body}");
    assert_eq!(app.count().await, 1);
    // A longer stack written before the limit, or behind the API's back, is a valid person.
    let id = uuid::Uuid::now_v7();
    let items: Vec<String> = (0..150).map(|i| format!("antigo{i}")).collect();
    db_client(&app.database_url)
        .await
        .execute(
            "INSERT INTO pessoas (id, apelido, nome, nascimento, stack) \
             VALUES ($1, 'antigo', 'Nome', '2000-01-01', $2)",
            &[&id, &items],
        )
        .await
        .unwrap();
    let found: Vec<Value> = app.get("/pessoas?t=antigo149").await.json().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let person: Value = app
        .get(&format!("/pessoas/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(person["stack"].as_array().unwrap().len(), 150);
}
