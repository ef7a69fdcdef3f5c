//! A person's fields, each a type that can only hold a valid value, and the rules they keep.

use serde::Serialize;
use validator::{ValidateLength, ValidationError, ValidationErrors};

/// A text field with a bound: from 1 to `$max` characters (not bytes), and no NUL, which
/// PostgreSQL text cannot hold.
macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, max = $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
        pub struct $name(pub(super) String);

        impl $name {
            const MAX_CHARS: u64 = $max;

            /// Whether `text` may be this field's value.
            pub(super) fn check(text: &str) -> Result<(), ValidationError> {
                check_text(text, Self::MAX_CHARS)
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
pub struct Nascimento(pub(super) String);

impl Nascimento {
    /// Whether `text` may be this field's value.
    pub(super) fn check(text: &str) -> Result<(), ValidationError> {
        if is_calendar_date(text) {
            Ok(())
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

/// A stack: its items in the order given, repeats kept, each a valid [`StackItem`].
fn check_stack(items: &[impl AsRef<str>]) -> Result<(), ValidationError> {
    items
        .iter()
        .try_for_each(|item| StackItem::check(item.as_ref()))
        .map_err(|_| ValidationError::new("stack_item_length"))
}

/// The error `validator`'s derive reports for a list longer than `max`.
pub(super) fn too_many_items(max: usize) -> ValidationError {
    let mut error = ValidationError::new("length");
    error.add_param("max".into(), &max);
    error
}

/// Every rule a person's fields break, each under its field, as `validator`'s derive reports
/// them: the one set of rules, for a new person and for one read back from the database.
pub(super) fn broken_rules(
    apelido: Option<&str>,
    nome: Option<&str>,
    nascimento: Option<&str>,
    stack: Option<&[impl AsRef<str>]>,
) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    let mut note = |field: &'static str, checked: Result<(), ValidationError>| {
        if let Err(error) = checked {
            errors.add(field, error);
        }
    };
    note("apelido", required(apelido).and_then(Apelido::check));
    note("nome", required(nome).and_then(Nome::check));
    note(
        "nascimento",
        required(nascimento).and_then(Nascimento::check),
    );
    note("stack", stack.map_or(Ok(()), check_stack));
    errors
}

/// A required field's value, or the error `validator`'s derive reports for it.
fn required(value: Option<&str>) -> Result<&str, ValidationError> {
    value.ok_or_else(|| {
        let mut error = ValidationError::new("required");
        error.add_param("value".into(), &());
        error
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(Apelido::check(&"é".repeat(32)).is_ok());
        assert!(Apelido::check(&"é".repeat(33)).is_err());
        assert!(Nome::check(&"ç".repeat(100)).is_ok());
        assert!(Nome::check(&"ç".repeat(101)).is_err());
        assert!(StackItem::check(&"ã".repeat(32)).is_ok());
        assert!(StackItem::check(&"ã".repeat(33)).is_err());
        let apelido = "é".repeat(32);
        let ok = format!(r#"{{"apelido":"{apelido}","nome":"x","nascimento":"2000-01-01"}}"#);
        let pessoa = crate::domain::Pessoa::parse(ok.as_bytes(), None).unwrap();
        assert_eq!(pessoa.apelido().as_ref(), apelido);
    }

    #[test]
    fn text_is_neither_empty_nor_holds_nul() {
        for text in ["", "a\0", "\0"] {
            assert!(Apelido::check(text).is_err(), "{text:?}");
            assert!(Nome::check(text).is_err(), "{text:?}");
            assert!(StackItem::check(text).is_err(), "{text:?}");
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
            assert!(Nascimento::check(good).is_ok(), "{good}");
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
            assert!(Nascimento::check(bad).is_err(), "{bad}");
        }
    }
}
