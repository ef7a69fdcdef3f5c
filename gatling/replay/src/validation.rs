//! The service's acceptance rules for a creation payload, used to work out how many people a correct
//! service must hold after a run: the distinct apelidos among the payloads sent that the contract accepts.
//!
//! The rules are the service's (`src/domain/fields.rs`, README's contract): apelido a string of 1–32
//! characters, unique; nome a string of 1–100; nascimento a string `YYYY-MM-DD` naming a real day of
//! the years 0001–9999; stack null, absent or an array of at most 100 strings of 1–32 characters; no text holding
//! NUL. The body is read into the same serde shape as the service's, so whatever it refuses as
//! malformed (a wrong type, a field given twice, trailing text) is refused here too. The root package's
//! `tests/api/validation_agreement.rs` checks that both agree.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::Deserialize;

const APELIDO_MAX_CHARS: usize = 32;
const NOME_MAX_CHARS: usize = 100;
const STACK_ITEM_MAX_CHARS: usize = 32;
const STACK_MAX_ITEMS: usize = 100;

/// Every field optional, as in the service, so that a null or missing field is a broken rule and not a
/// malformed body; unknown fields are ignored, as there.
#[derive(Deserialize)]
struct Payload {
    apelido: Option<String>,
    nome: Option<String>,
    nascimento: Option<String>,
    stack: Option<Vec<String>>,
}

/// The apelido a payload would be stored under, or `None` when the service must reject it.
pub fn accepted_apelido(payload: &[u8]) -> Option<String> {
    let Payload {
        apelido,
        nome,
        nascimento,
        stack,
    } = serde_json::from_slice(payload).ok()?;
    nome.filter(|nome| is_text(nome, NOME_MAX_CHARS))?;
    nascimento.filter(|nascimento| is_real_date(nascimento))?;
    let stack = stack.unwrap_or_default();
    let stack_fits = stack.len() <= STACK_MAX_ITEMS
        && stack.iter().all(|item| is_text(item, STACK_ITEM_MAX_CHARS));
    apelido.filter(|apelido| stack_fits && is_text(apelido, APELIDO_MAX_CHARS))
}

/// How many people a correct service holds after receiving these payloads on an empty database.
pub fn expected_people<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> usize {
    payloads
        .into_iter()
        .filter_map(accepted_apelido)
        .collect::<HashSet<_>>()
        .len()
}

/// 1 to `max_chars` characters (not bytes), none of them NUL, which PostgreSQL text cannot hold.
fn is_text(text: &str, max_chars: usize) -> bool {
    (1..=max_chars).contains(&text.chars().count()) && !text.contains('\0')
}

/// `YYYY-MM-DD` in ASCII digits, naming a day of the proleptic Gregorian calendar from year 1 on.
pub fn is_real_date(text: &str) -> bool {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 => byte == b'-',
            _ => byte.is_ascii_digit(),
        });
    if !shaped {
        return false;
    }
    let number =
        |range: std::ops::Range<usize>| text[range].parse::<u32>().expect("checked digits");
    let year = number(0..4);
    year >= 1 && NaiveDate::from_ymd_opt(year as i32, number(5..7), number(8..10)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(payload: &str) -> Option<String> {
        accepted_apelido(payload.as_bytes())
    }

    fn payload(apelido: &str, nome: &str, nascimento: &str, stack: &str) -> String {
        format!(
            r#"{{"apelido": {apelido}, "nome": {nome}, "nascimento": {nascimento}, "stack": {stack}}}"#
        )
    }

    #[test]
    fn accepts_a_well_formed_person() {
        let text = payload(
            r#""josé""#,
            r#""José Roberto""#,
            r#""2000-10-01""#,
            r#"["C#", "Node"]"#,
        );
        assert_eq!(accepted(&text).as_deref(), Some("josé"));
        assert!(accepted(&payload(r#""ana""#, r#""Ana""#, r#""1985-09-23""#, "null")).is_some());
        assert!(
            accepted(r#"{"apelido": "ana", "nome": "Ana", "nascimento": "1985-09-23"}"#).is_some()
        );
    }

    #[test]
    fn length_limits_count_characters_not_bytes() {
        let thirty_two = format!("\"{}\"", "é".repeat(32));
        let thirty_three = format!("\"{}\"", "a".repeat(33));
        assert!(accepted(&payload(&thirty_two, r#""n""#, r#""2000-01-01""#, "null")).is_some());
        assert!(accepted(&payload(&thirty_three, r#""n""#, r#""2000-01-01""#, "null")).is_none());
        let long_nome = format!("\"{}\"", "n".repeat(101));
        assert!(accepted(&payload(r#""a""#, &long_nome, r#""2000-01-01""#, "null")).is_none());
        let long_item = format!("[\"{}\"]", "1".repeat(40));
        assert!(accepted(&payload(r#""a""#, r#""n""#, r#""2000-01-01""#, &long_item)).is_none());
    }

    #[test]
    fn empty_text_and_nul_are_rejected() {
        let date = r#""2000-01-01""#;
        assert!(accepted(&payload(r#""""#, r#""n""#, date, "null")).is_none());
        assert!(accepted(&payload(r#""a""#, r#""""#, date, "null")).is_none());
        assert!(accepted(&payload(r#""a""#, r#""n""#, date, r#"[""]"#)).is_none());
        assert!(accepted(&payload(r#""a\u0000""#, r#""n""#, date, "null")).is_none());
        assert!(accepted(&payload(r#""a""#, r#""\u0000""#, date, "null")).is_none());
        assert!(accepted(&payload(r#""a""#, r#""n""#, date, r#"["x\u0000"]"#)).is_none());
        assert!(accepted(&payload(r#""a""#, r#""n""#, date, "[]")).is_some());
    }

    #[test]
    fn a_field_given_twice_is_malformed() {
        assert!(
            accepted(
                r#"{"apelido": "a", "apelido": "b", "nome": "n", "nascimento": "2000-01-01"}"#
            )
            .is_none()
        );
    }

    #[test]
    fn rejects_wrong_types() {
        assert!(accepted(&payload("1", r#""n""#, r#""2000-01-01""#, "null")).is_none());
        assert!(accepted(&payload("null", r#""n""#, r#""2000-01-01""#, "null")).is_none());
        assert!(accepted(&payload(r#""a""#, "1", r#""2000-01-01""#, "null")).is_none());
        assert!(accepted(&payload(r#""a""#, r#""n""#, "null", "null")).is_none());
        assert!(accepted(&payload(r#""a""#, r#""n""#, "10", "null")).is_none());
        assert!(
            accepted(&payload(
                r#""a""#,
                r#""n""#,
                r#""2000-01-01""#,
                r#""string""#
            ))
            .is_none()
        );
        assert!(accepted(&payload(r#""a""#, r#""n""#, r#""2000-01-01""#, "[1]")).is_none());
        assert!(accepted("not json").is_none());
        assert!(accepted("[]").is_none());
    }

    #[test]
    fn dates_must_be_real_calendar_days() {
        assert!(is_real_date("2000-02-29"));
        assert!(is_real_date("1940-12-31"));
        assert!(!is_real_date("1900-02-29"));
        assert!(!is_real_date("1999-02-29"));
        assert!(!is_real_date("2001-13-01"));
        assert!(!is_real_date("2001-04-31"));
        assert!(!is_real_date("2001-00-10"));
        assert!(!is_real_date("12-12-2000"));
        assert!(!is_real_date("?!?!?"));
        assert!(!is_real_date("2001-1-01"));
        assert!(!is_real_date("+001-01-01"));
        assert!(!is_real_date("0000-01-01"));
        assert!(!is_real_date("2000-01-00"));
        assert!(!is_real_date("２０００-01-01"));
    }

    #[test]
    fn duplicate_apelidos_count_once() {
        let first = payload(r#""dup""#, r#""A""#, r#""2000-01-01""#, "null");
        let second = payload(r#""dup""#, r#""B""#, r#""2001-01-01""#, "null");
        let rejected = payload(r#""other""#, r#""B""#, r#""2001-02-30""#, "null");
        let other = payload(r#""Dup""#, r#""B""#, r#""2001-02-28""#, "null");
        assert_eq!(
            expected_people([
                first.as_bytes(),
                second.as_bytes(),
                rejected.as_bytes(),
                other.as_bytes()
            ]),
            2
        );
    }
}
