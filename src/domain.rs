//! The person record: parsing a request body into a value that is valid by construction.
//!
//! Two kinds of bad input are told apart, because the API answers them differently:
//! a body that is not the expected JSON shape (malformed, not an object, wrong types) is a
//! [`RejectedPayload::Malformed`] (400); a well-typed body that breaks a rule (a required field
//! null or missing, a length exceeded, an impossible date) is [`RejectedPayload::Invalid`] (422).

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use validator::{Validate, ValidationError};

pub const APELIDO_MAX_CHARS: u64 = 32;
pub const NOME_MAX_CHARS: u64 = 100;
pub const STACK_ITEM_MAX_CHARS: u64 = 32;

/// The body of `POST /pessoas` as it arrives: every field optional so that a null or missing
/// field is a rule violation (422) rather than a shape error (400).
#[derive(Debug, Deserialize, Validate)]
pub struct PessoaPayload {
    #[validate(required, length(min = 1, max = APELIDO_MAX_CHARS), custom(function = "validate_text"))]
    apelido: Option<String>,
    #[validate(required, length(min = 1, max = NOME_MAX_CHARS), custom(function = "validate_text"))]
    nome: Option<String>,
    #[validate(required, custom(function = "validate_nascimento"))]
    nascimento: Option<String>,
    #[validate(custom(function = "validate_stack"))]
    stack: Option<Vec<String>>,
}

/// A person that passed every rule, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pessoa {
    pub id: Uuid,
    pub apelido: String,
    pub nome: String,
    /// Always a real calendar date in `YYYY-MM-DD` form.
    pub nascimento: String,
    pub stack: Option<Vec<String>>,
}

#[derive(Debug)]
pub enum RejectedPayload {
    Malformed(serde_json::Error),
    Invalid(validator::ValidationErrors),
}

impl Pessoa {
    /// Parses a raw `POST /pessoas` body into a new person with a fresh, time-ordered id
    /// (UUIDv7 keeps the primary-key index append-mostly).
    pub fn parse(body: &[u8]) -> Result<Pessoa, RejectedPayload> {
        let payload: PessoaPayload =
            serde_json::from_slice(body).map_err(RejectedPayload::Malformed)?;
        payload.validate().map_err(RejectedPayload::Invalid)?;
        // `validate` has checked that the required fields are present.
        let (Some(apelido), Some(nome), Some(nascimento)) =
            (payload.apelido, payload.nome, payload.nascimento)
        else {
            unreachable!("required fields are checked by validate()")
        };
        Ok(Pessoa {
            id: Uuid::now_v7(),
            apelido,
            nome,
            nascimento,
            stack: payload.stack,
        })
    }
}

/// PostgreSQL text cannot hold NUL, so a value with one could never be stored.
fn validate_text(text: &str) -> Result<(), ValidationError> {
    if text.contains('\0') {
        Err(ValidationError::new("nul_character"))
    } else {
        Ok(())
    }
}

fn validate_stack(stack: &[String]) -> Result<(), ValidationError> {
    let within_limit = |item: &String| {
        let chars = item.chars().count() as u64;
        (1..=STACK_ITEM_MAX_CHARS).contains(&chars) && !item.contains('\0')
    };
    if stack.iter().all(within_limit) {
        Ok(())
    } else {
        Err(ValidationError::new("stack_item_length"))
    }
}

fn validate_nascimento(nascimento: &str) -> Result<(), ValidationError> {
    if is_calendar_date(nascimento) {
        Ok(())
    } else {
        Err(ValidationError::new("calendar_date"))
    }
}

/// True when `text` is exactly `YYYY-MM-DD` and names a day that exists (leap years included),
/// in years 0001 to 9999.
pub fn is_calendar_date(text: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Pessoa, RejectedPayload> {
        Pessoa::parse(json.as_bytes())
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
    fn a_complete_payload_parses() {
        let pessoa = parse(
            r#"{"apelido":"josé","nome":"José Roberto","nascimento":"2000-10-01","stack":["C#","Node"]}"#,
        )
        .unwrap();
        assert_eq!(pessoa.apelido, "josé");
        assert_eq!(pessoa.nome, "José Roberto");
        assert_eq!(pessoa.nascimento, "2000-10-01");
        assert_eq!(pessoa.stack, Some(vec!["C#".into(), "Node".into()]));
    }

    #[test]
    fn stack_may_be_null_or_missing() {
        let base = r#""apelido":"ana","nome":"Ana","nascimento":"1985-09-23""#;
        assert_eq!(
            parse(&format!("{{{base},\"stack\":null}}")).unwrap().stack,
            None
        );
        assert_eq!(parse(&format!("{{{base}}}")).unwrap().stack, None);
        assert_eq!(
            parse(&format!("{{{base},\"stack\":[]}}")).unwrap().stack,
            Some(vec![])
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let apelido = "é".repeat(32);
        let ok = format!(r#"{{"apelido":"{apelido}","nome":"x","nascimento":"2000-01-01"}}"#);
        assert_eq!(parse(&ok).unwrap().apelido.chars().count(), 32);
        let apelido = "é".repeat(33);
        assert_invalid(&format!(
            r#"{{"apelido":"{apelido}","nome":"x","nascimento":"2000-01-01"}}"#
        ));
        let nome = "ç".repeat(100);
        assert!(
            parse(&format!(
                r#"{{"apelido":"a","nome":"{nome}","nascimento":"2000-01-01"}}"#
            ))
            .is_ok()
        );
        let item = "ã".repeat(32);
        assert!(
            parse(&format!(
                r#"{{"apelido":"a","nome":"b","nascimento":"2000-01-01","stack":["{item}"]}}"#
            ))
            .is_ok()
        );
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
            assert!(is_calendar_date(good), "{good}");
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
            assert!(!is_calendar_date(bad), "{bad}");
        }
    }
}
