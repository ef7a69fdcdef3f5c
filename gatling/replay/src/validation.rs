//! The service's acceptance rules for a creation payload, used to work out how many people a correct
//! service must hold after a run: the distinct apelidos among the payloads sent that the contract accepts.
//!
//! Contract: apelido a string of at most 32 characters, unique; nome a string of at most 100; nascimento a
//! string `YYYY-MM-DD` that is a real date; stack null (or absent) or an array of strings of at most 32.

use std::collections::HashSet;

use serde_json::Value;

const APELIDO_MAX_CHARS: usize = 32;
const NOME_MAX_CHARS: usize = 100;
const STACK_ITEM_MAX_CHARS: usize = 32;

/// The apelido a payload would be stored under, or `None` when the service must reject it.
pub fn accepted_apelido(payload: &str) -> Option<String> {
    let Value::Object(fields) = serde_json::from_str::<Value>(payload).ok()? else {
        return None;
    };
    let apelido = short_string(fields.get("apelido")?, APELIDO_MAX_CHARS)?;
    short_string(fields.get("nome")?, NOME_MAX_CHARS)?;
    fields
        .get("nascimento")?
        .as_str()
        .filter(|text| is_real_date(text))?;
    match fields.get("stack") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                short_string(item, STACK_ITEM_MAX_CHARS)?;
            }
        }
        Some(_) => return None,
    }
    Some(apelido.to_owned())
}

/// How many people a correct service holds after receiving these payloads on an empty database.
pub fn expected_people<'a>(payloads: impl IntoIterator<Item = &'a str>) -> usize {
    payloads
        .into_iter()
        .filter_map(accepted_apelido)
        .collect::<HashSet<_>>()
        .len()
}

fn short_string(value: &Value, max_chars: usize) -> Option<&str> {
    value
        .as_str()
        .filter(|text| text.chars().count() <= max_chars)
}

/// `YYYY-MM-DD`, digits only, naming a day of the proleptic Gregorian calendar from year 1 on.
pub fn is_real_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if bytes.len() != 10
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !digits_at(0..4)
        || !digits_at(5..7)
        || !digits_at(8..10)
    {
        return false;
    }
    let number =
        |range: std::ops::Range<usize>| text[range].parse::<u32>().expect("checked digits");
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    year >= 1 && (1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(accepted_apelido(&text).as_deref(), Some("josé"));
        assert!(
            accepted_apelido(&payload(r#""ana""#, r#""Ana""#, r#""1985-09-23""#, "null")).is_some()
        );
        assert!(
            accepted_apelido(r#"{"apelido": "ana", "nome": "Ana", "nascimento": "1985-09-23"}"#)
                .is_some()
        );
    }

    #[test]
    fn length_limits_count_characters_not_bytes() {
        let thirty_two = format!("\"{}\"", "é".repeat(32));
        let thirty_three = format!("\"{}\"", "a".repeat(33));
        assert!(
            accepted_apelido(&payload(&thirty_two, r#""n""#, r#""2000-01-01""#, "null")).is_some()
        );
        assert!(
            accepted_apelido(&payload(&thirty_three, r#""n""#, r#""2000-01-01""#, "null"))
                .is_none()
        );
        let long_nome = format!("\"{}\"", "n".repeat(101));
        assert!(
            accepted_apelido(&payload(r#""a""#, &long_nome, r#""2000-01-01""#, "null")).is_none()
        );
        let long_item = format!("[\"{}\"]", "1".repeat(40));
        assert!(
            accepted_apelido(&payload(r#""a""#, r#""n""#, r#""2000-01-01""#, &long_item)).is_none()
        );
    }

    #[test]
    fn rejects_wrong_types() {
        assert!(accepted_apelido(&payload("1", r#""n""#, r#""2000-01-01""#, "null")).is_none());
        assert!(accepted_apelido(&payload("null", r#""n""#, r#""2000-01-01""#, "null")).is_none());
        assert!(accepted_apelido(&payload(r#""a""#, "1", r#""2000-01-01""#, "null")).is_none());
        assert!(accepted_apelido(&payload(r#""a""#, r#""n""#, "null", "null")).is_none());
        assert!(accepted_apelido(&payload(r#""a""#, r#""n""#, "10", "null")).is_none());
        assert!(
            accepted_apelido(&payload(
                r#""a""#,
                r#""n""#,
                r#""2000-01-01""#,
                r#""string""#
            ))
            .is_none()
        );
        assert!(accepted_apelido(&payload(r#""a""#, r#""n""#, r#""2000-01-01""#, "[1]")).is_none());
        assert!(accepted_apelido("not json").is_none());
        assert!(accepted_apelido("[]").is_none());
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
    }

    #[test]
    fn duplicate_apelidos_count_once() {
        let first = payload(r#""dup""#, r#""A""#, r#""2000-01-01""#, "null");
        let second = payload(r#""dup""#, r#""B""#, r#""2001-01-01""#, "null");
        let rejected = payload(r#""other""#, r#""B""#, r#""2001-02-30""#, "null");
        let other = payload(r#""Dup""#, r#""B""#, r#""2001-02-28""#, "null");
        assert_eq!(
            expected_people([
                first.as_str(),
                second.as_str(),
                rejected.as_str(),
                other.as_str()
            ]),
            2
        );
    }
}
