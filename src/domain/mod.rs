//! The person record and its fields, each a type that can only hold a valid value: the rules
//! (in `fields`) are checked where a value is parsed, and a [`Pessoa`] cannot be built
//! otherwise. A person read back from the database is held to the same rules.
//!
//! Two kinds of bad input are told apart, because the API answers them differently:
//! a body that is not the expected JSON shape (malformed, not an object, wrong types) is a
//! [`RejectedPayload::Malformed`] (400); a well-typed body that breaks a rule (a required field
//! null or missing, a length exceeded, an impossible date) is [`RejectedPayload::Invalid`] (422),
//! with every broken rule reported at once, field by field, by `validator`.

mod fields;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use validator::ValidationErrors;

pub use fields::Apelido;
use fields::broken_rules;
pub(crate) use fields::{Nascimento, Nome, StackItem};

/// The most items a new person's stack may hold (the contest's payloads hold at most 26). A
/// limit on what one request may store, like the body limit, rather than a rule of a valid
/// person: a row stored with more is still served. It bounds a search's work: the items it
/// visits all belong to people it returns, at most 50 of them.
pub const MAX_STACK_ITEMS: usize = 100;

/// A person whose every field passed its rules. Serialised, it is the API's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pessoa {
    id: Uuid,
    apelido: Apelido,
    nome: Nome,
    nascimento: Nascimento,
    stack: Option<Vec<StackItem>>,
}

/// A person's fields as they arrive, unchecked: the body of `POST /pessoas`.
/// Every field is optional so that a null or missing field is a rule violation (422) rather
/// than a shape error (400).
#[derive(Debug, Deserialize)]
pub(crate) struct PessoaPayload {
    pub(crate) apelido: Option<String>,
    pub(crate) nome: Option<String>,
    pub(crate) nascimento: Option<String>,
    pub(crate) stack: Option<Vec<String>>,
}

#[derive(Debug)]
pub enum RejectedPayload {
    Malformed(serde_json::Error),
    Invalid(ValidationErrors),
}

impl Pessoa {
    /// Parses a raw `POST /pessoas` body into a new person with a fresh, time-ordered id
    /// (UUIDv7 keeps the primary-key index append-mostly). With a `slot`, the id's last byte,
    /// one of its random ones, is set to it: nginx sends a lookup of the id to the replica
    /// that made it, which holds the person in memory.
    pub fn parse(body: &[u8], slot: Option<u8>) -> Result<Pessoa, RejectedPayload> {
        let payload: PessoaPayload =
            serde_json::from_slice(body).map_err(RejectedPayload::Malformed)?;
        let mut id = Uuid::now_v7().into_bytes();
        if let Some(slot) = slot {
            id[15] = slot;
        }
        Pessoa::try_from((Uuid::from_bytes(id), payload)).map_err(RejectedPayload::Invalid)
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn apelido(&self) -> &Apelido {
        &self.apelido
    }

    pub(crate) fn nome(&self) -> &Nome {
        &self.nome
    }

    pub(crate) fn nascimento(&self) -> &Nascimento {
        &self.nascimento
    }

    pub(crate) fn stack(&self) -> Option<&[StackItem]> {
        self.stack.as_deref()
    }
}

/// A person with this id and these fields, or every rule they break.
impl TryFrom<(Uuid, PessoaPayload)> for Pessoa {
    type Error = ValidationErrors;

    fn try_from((id, payload): (Uuid, PessoaPayload)) -> Result<Pessoa, ValidationErrors> {
        let PessoaPayload {
            apelido,
            nome,
            nascimento,
            stack,
        } = payload;
        let mut errors = broken_rules(
            apelido.as_deref(),
            nome.as_deref(),
            nascimento.as_deref(),
            stack.as_deref(),
        );
        if stack
            .as_ref()
            .is_some_and(|items| items.len() > MAX_STACK_ITEMS)
        {
            errors.add("stack", fields::too_many_items(MAX_STACK_ITEMS));
        }
        match (apelido, nome, nascimento) {
            (Some(apelido), Some(nome), Some(nascimento)) if errors.is_empty() => Ok(Pessoa {
                id,
                apelido: Apelido(apelido),
                nome: Nome(nome),
                nascimento: Nascimento(nascimento),
                stack: stack.map(|items| items.into_iter().map(StackItem).collect()),
            }),
            _ => Err(errors),
        }
    }
}

/// Every rule a stored person's fields break, checked on the text borrowed from its row: the
/// rules a new person keeps, so that a row that breaks one is never served as a person.
pub(crate) fn check_stored(
    apelido: &str,
    nome: &str,
    nascimento: &str,
    stack: Option<&[&str]>,
) -> Result<(), ValidationErrors> {
    let errors = broken_rules(Some(apelido), Some(nome), Some(nascimento), stack);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Pessoa, RejectedPayload> {
        Pessoa::parse(json.as_bytes(), None)
    }

    fn assert_malformed(json: &str) {
        assert!(
            matches!(parse(json), Err(RejectedPayload::Malformed(_))),
            "expected 400 for {json}"
        );
    }

    fn assert_invalid(json: &str) {
        assert!(
            matches!(parse(json), Err(RejectedPayload::Invalid(_))),
            "expected 422 for {json}"
        );
    }

    #[test]
    fn ids_are_version_7_with_the_slot_asked_for() {
        let body = br#"{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":null}"#;
        for slot in [0, 1, 7, 255] {
            for _ in 0..64 {
                let id = Pessoa::parse(body, Some(slot)).unwrap().id();
                assert_eq!(id.get_version_num(), 7);
                assert!(id.to_string().ends_with(&format!("{slot:02x}")), "{id}");
            }
        }
        let slots: std::collections::HashSet<u8> = (0..64)
            .map(|_| Pessoa::parse(body, None).unwrap().id().as_bytes()[15])
            .collect();
        assert!(slots.len() > 1, "without a slot the byte stays random");
    }

    #[test]
    fn a_complete_payload_parses() {
        let pessoa = parse(
            r#"{"apelido":"josé","nome":"José Roberto","nascimento":"2000-10-01","stack":["C#","Node"]}"#,
        )
        .unwrap();
        assert_eq!(pessoa.apelido().as_ref(), "josé");
        assert_eq!(pessoa.nome().as_ref(), "José Roberto");
        assert_eq!(pessoa.nascimento().as_ref(), "2000-10-01");
        let stack: Vec<&str> = pessoa.stack().unwrap().iter().map(AsRef::as_ref).collect();
        assert_eq!(stack, ["C#", "Node"]);
        assert_eq!(
            serde_json::to_value(&pessoa).unwrap(),
            serde_json::json!({
                "id": pessoa.id(),
                "apelido": "josé",
                "nome": "José Roberto",
                "nascimento": "2000-10-01",
                "stack": ["C#", "Node"],
            }),
            "the record the API serves"
        );
    }

    #[test]
    fn stack_may_be_null_or_missing() {
        let base = r#""apelido":"ana","nome":"Ana","nascimento":"1985-09-23""#;
        let stack = |json: String| parse(&json).unwrap().stack().map(<[StackItem]>::len);
        assert_eq!(stack(format!("{{{base},\"stack\":null}}")), None);
        assert_eq!(stack(format!("{{{base}}}")), None);
        assert_eq!(stack(format!("{{{base},\"stack\":[]}}")), Some(0));
    }

    #[test]
    fn every_broken_rule_is_reported_by_field() {
        let Err(RejectedPayload::Invalid(errors)) =
            parse(r#"{"apelido":"","nascimento":"2000-02-30","stack":["ok",""]}"#)
        else {
            panic!("expected 422");
        };
        let mut fields: Vec<_> = errors.field_errors().into_keys().collect();
        fields.sort();
        assert_eq!(fields, ["apelido", "nascimento", "nome", "stack"]);
        let text = errors.to_string();
        for code in ["length", "required", "calendar_date", "stack_item_length"] {
            assert!(text.contains(code), "{code} in {text}");
        }
    }

    #[test]
    fn rule_violations_are_invalid() {
        for json in [
            r#"{"apelido":null,"nome":"a","nascimento":"2000-01-01"}"#,
            r#"{"nome":"a","nascimento":"2000-01-01"}"#,
            r#"{"apelido":"a","nome":null,"nascimento":"2000-01-01"}"#,
            r#"{"apelido":"a","nascimento":"2000-01-01"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":null}"#,
            r#"{"apelido":"a","nome":"b"}"#,
            r#"{"apelido":"","nome":"b","nascimento":"2000-01-01"}"#,
            r#"{"apelido":"a","nome":"","nascimento":"2000-01-01"}"#,
            r#"{"apelido":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","nome":"b","nascimento":"2000-01-01"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2023-02-29"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2000-13-01"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2000-02-30"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"12-12-2000"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"?!?!?"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":[""]}"#,
            r#"{"apelido":"a\u0000","nome":"b","nascimento":"2000-01-01"}"#,
            r#"{"apelido":"a","nome":"\u0000","nascimento":"2000-01-01"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":["x\u0000"]}"#,
        ] {
            assert_invalid(json);
        }
        assert_invalid(&format!(
            r#"{{"apelido":"a","nome":"{}","nascimento":"2000-01-01"}}"#,
            "n".repeat(101)
        ));
    }

    #[test]
    fn a_new_stack_holds_at_most_the_limit_of_items() {
        let with_items = |count: usize| {
            let items: Vec<String> = (0..count).map(|i| format!("\"i{i}\"")).collect();
            format!(
                r#"{{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":[{}]}}"#,
                items.join(",")
            )
        };
        assert_eq!(
            parse(&with_items(MAX_STACK_ITEMS))
                .unwrap()
                .stack()
                .unwrap()
                .len(),
            100
        );
        match parse(&with_items(MAX_STACK_ITEMS + 1)) {
            Err(RejectedPayload::Invalid(errors)) => {
                let stack = &errors.field_errors()["stack"];
                assert_eq!(stack[0].code, "length");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shape_errors_are_malformed() {
        for json in [
            "",
            "{",
            "not json",
            "[]",
            "\"text\"",
            "null",
            r#"{"apelido":"a","nome":1,"nascimento":"2000-01-01"}"#,
            r#"{"apelido":1,"nome":"b","nascimento":"2000-01-01"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":10}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":"PHP"}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":[1,"PHP"]}"#,
            r#"{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":1}"#,
        ] {
            assert_malformed(json);
        }
    }
}
