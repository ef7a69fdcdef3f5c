//! Full Unicode case folding, under which every field and term is matched.

use std::borrow::Cow;

use super::record::PersonRef;

/// Whether `term` (already folded) lies inside the apelido, nome or one stack item of `person`.
pub(crate) fn matches(person: &PersonRef, term: &str) -> bool {
    let inside = |field: &str| fold(field).contains(term);
    inside(person.apelido)
        || inside(person.nome)
        || person.stack.iter().flatten().any(|item| inside(item))
}

/// Full Unicode case folding. ASCII text, the common case, folds to its lowercase.
pub(crate) fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        }
    } else {
        Cow::Owned(
            icu_casemap::CaseMapper::new()
                .fold_string(text)
                .into_owned(),
        )
    }
}
