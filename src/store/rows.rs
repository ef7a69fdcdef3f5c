//! Reading the rows the queries return. A person's row is read in one place, by the rules a new
//! person keeps, whichever query returned it: a lookup by id, a page of the load, a catch-up.

use tokio_postgres::Row;
use uuid::Uuid;

use super::{PageStart, Snapshot, StoreError, decode};
use crate::domain;

/// A stored person, borrowed from its row, whose fields keep the rules a new person's keep.
pub(crate) struct PersonRow<'r> {
    /// The transaction that inserted the row.
    pub(crate) insert_xact: i64,
    pub(crate) id: Uuid,
    pub(crate) apelido: &'r str,
    pub(crate) nome: &'r str,
    /// `YYYY-MM-DD`.
    pub(crate) nascimento: &'r str,
    pub(crate) stack: Option<Vec<&'r str>>,
}

/// The person in a row of any query that reads people, all of which start with the same
/// columns (see `person_columns!`). A row written behind the API's back may break the rules: a
/// null stack item, an empty or too long text, a date outside `YYYY-MM-DD` (years past 9999 or
/// before Christ). Such a row is a [`StoreError::Decode`].
pub(crate) fn person(row: &Row) -> Result<PersonRow<'_>, StoreError> {
    let read = || -> Result<PersonRow<'_>, tokio_postgres::Error> {
        Ok(PersonRow {
            insert_xact: row.try_get(0)?,
            id: row.try_get(1)?,
            apelido: row.try_get(2)?,
            nome: row.try_get(3)?,
            nascimento: row.try_get(4)?,
            stack: row.try_get(5)?,
        })
    };
    let person = read().map_err(decode)?;
    domain::check_stored(
        person.apelido,
        person.nome,
        person.nascimento,
        person.stack.as_deref(),
    )
    .map_err(decode)?;
    Ok(person)
}

/// The transaction that inserted the row of a page and the person's id: where the next page
/// starts, readable even when the rest of the row is not.
pub(crate) fn page_key(row: &Row) -> Result<PageStart, StoreError> {
    Ok((
        row.try_get(0).map_err(decode)?,
        row.try_get(1).map_err(decode)?,
    ))
}

/// The snapshot in a row that has one, in columns `xmax` and `in_progress`.
pub(super) fn snapshot(row: &Row) -> Result<Snapshot, StoreError> {
    let read = || -> Result<Snapshot, tokio_postgres::Error> {
        Ok(Snapshot {
            xmax: row.try_get("xmax")?,
            in_progress: row.try_get("in_progress")?,
        })
    };
    read().map_err(decode)
}
