//! The person record and its fields, each a type that can only hold a valid value: the rules
//! are checked once, where a value is parsed, and a [`Pessoa`] cannot be built otherwise.
//!
//! Two kinds of bad input are told apart, because the API answers them differently:
//! a body that is not the expected JSON shape (malformed, not an object, wrong types) is a
//! [`RejectedPayload::Malformed`] (400); a well-typed body that breaks a rule (a required field
//! null or missing, a length exceeded, an impossible date) is [`RejectedPayload::Invalid`] (422),
//! with every broken rule reported at once, field by field, by `validator`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use validator::{ValidateLength, ValidationError, ValidationErrors};

/// A text field with a bound: from 1 to `$max` characters (not bytes), and no NUL, which
/// PostgreSQL text cannot hold.
macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, max = $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: u64 = $max;

            pub fn parse(text: String) -> Result<$name, ValidationError> {
                check_text(&text, Self::MAX_CHARS)?;
                Ok($name(text))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

bounded_text!(
    /// A person's nickname; the database keeps it unique.
    Apelido,
    max = 32
);
bounded_text!(
    /// A person's name.
    Nome,
    max = 100
);
bounded_text!(
    /// One technology of a person's stack.
    StackItem,
    max = 32
);

/// The errors `validator`'s derive reports for a length, and a code of ours for NUL.
fn check_text(text: &str, max_chars: u64) -> Result<(), ValidationError> {
    if !text.validate_length(Some(1), Some(max_chars), None) {
        let mut error = ValidationError::new("length");
        error.add_param("min".into(), &1);
        error.add_param("max".into(), &max_chars);
        error.add_param("value".into(), &text);
        return Err(error);
    }
    if text.contains('\0') {
        return Err(ValidationError::new("nul_character"));
    }
    Ok(())
}

/// A date of birth: exactly `YYYY-MM-DD`, naming a day that exists (leap years included), in
/// years 0001 to 9999.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nascimento(String);

impl Nascimento {
    pub fn parse(text: String) -> Result<Nascimento, ValidationError> {
        if is_calendar_date(&text) {
            Ok(Nascimento(text))
        } else {
            Err(ValidationError::new("calendar_date"))
        }
    }
}

impl AsRef<str> for Nascimento {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn is_calendar_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &bytes[range];
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1 && (1..=days_in_month).contains(&day)
}

/// A stack: its items in the order given, repeats kept.
fn parse_stack(items: Vec<String>) -> Result<Vec<StackItem>, ValidationError> {
    items
        .into_iter()
        .map(StackItem::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| ValidationError::new("stack_item_length"))
}

/// A person whose every field passed its rules. Serialised, it is the API's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pessoa {
    id: Uuid,
    apelido: Apelido,
    nome: Nome,
    nascimento: Nascimento,
    stack: Option<Vec<StackItem>>,
}

/// A person's fields as they arrive, unchecked: the body of `POST /pessoas`, or a stored row.
/// Every field is optional so that a null or missing field is a rule violation (422) rather
/// than a shape error (400).
#[derive(Debug, Deserialize)]
pub struct PessoaPayload {
    pub apelido: Option<String>,
    pub nome: Option<String>,
    pub nascimento: Option<String>,
    pub stack: Option<Vec<String>>,
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

    pub fn nome(&self) -> &Nome {
        &self.nome
    }

    pub fn nascimento(&self) -> &Nascimento {
        &self.nascimento
    }

    pub fn stack(&self) -> Option<&[StackItem]> {
        self.stack.as_deref()
    }
}

/// A person with this id and these fields, or every rule they break; the store reads stored
/// rows through it too, so a row that breaks a rule is never served as a person.
impl TryFrom<(Uuid, PessoaPayload)> for Pessoa {
    type Error = ValidationErrors;

    fn try_from((id, payload): (Uuid, PessoaPayload)) -> Result<Pessoa, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let apelido = noted(
            &mut errors,
            "apelido",
            required(payload.apelido).and_then(Apelido::parse),
        );
        let nome = noted(
            &mut errors,
            "nome",
            required(payload.nome).and_then(Nome::parse),
        );
        let nascimento = noted(
            &mut errors,
            "nascimento",
            required(payload.nascimento).and_then(Nascimento::parse),
        );
        let stack = noted(
            &mut errors,
            "stack",
            payload.stack.map(parse_stack).transpose(),
        );
        match (apelido, nome, nascimento, stack) {
            (Some(apelido), Some(nome), Some(nascimento), Some(stack)) => Ok(Pessoa {
                id,
                apelido,
                nome,
                nascimento,
                stack,
            }),
            _ => Err(errors),
        }
    }
}

/// A required field's value, or the error `validator`'s derive reports for it.
fn required(value: Option<String>) -> Result<String, ValidationError> {
    value.ok_or_else(|| {
        let mut error = ValidationError::new("required");
        error.add_param("value".into(), &());
        error
    })
}

/// The value parsed, or `None` with the reason added to `errors` under `field`.
fn noted<T>(
    errors: &mut ValidationErrors,
    field: &'static str,
    parsed: Result<T, ValidationError>,
) -> Option<T> {
    parsed.map_err(|error| errors.add(field, error)).ok()
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
    fn lengths_count_characters_not_bytes() {
        assert!(Apelido::parse("é".repeat(32)).is_ok());
        assert!(Apelido::parse("é".repeat(33)).is_err());
        assert!(Nome::parse("ç".repeat(100)).is_ok());
        assert!(Nome::parse("ç".repeat(101)).is_err());
        assert!(StackItem::parse("ã".repeat(32)).is_ok());
        assert!(StackItem::parse("ã".repeat(33)).is_err());
        let apelido = "é".repeat(32);
        let ok = format!(r#"{{"apelido":"{apelido}","nome":"x","nascimento":"2000-01-01"}}"#);
        assert_eq!(parse(&ok).unwrap().apelido().as_ref(), apelido);
    }

    #[test]
    fn text_is_neither_empty_nor_holds_nul() {
        for text in ["", "a\0", "\0"] {
            assert!(Apelido::parse(text.to_owned()).is_err(), "{text:?}");
            assert!(Nome::parse(text.to_owned()).is_err(), "{text:?}");
            assert!(StackItem::parse(text.to_owned()).is_err(), "{text:?}");
        }
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

    #[test]
    fn calendar_dates() {
        for good in [
            "2000-02-29",
            "2024-02-29",
            "1999-12-31",
            "0001-01-01",
            "2020-04-30",
        ] {
            assert!(Nascimento::parse(good.to_owned()).is_ok(), "{good}");
        }
        for bad in [
            "1900-02-29",
            "2023-02-29",
            "2000-02-30",
            "2000-04-31",
            "2000-13-01",
            "2000-00-10",
            "2000-01-00",
            "0000-01-01",
            "2000-1-01",
            "2000/01/01",
            "20000-01-01",
            "+200-01-01",
            "2000-01-0a",
            "２０００-01-01",
        ] {
            assert!(Nascimento::parse(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
