//! Catching up: reading the rows that may have been committed since the last catch-up (see the
//! mirror's own documentation for why these rows are all of them).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_postgres::Row;
use uuid::Uuid;

use super::{Mirror, PAGE_ROWS};
use crate::store::rows::page_key;
use crate::store::{PageStart, StoreError};

/// The number and outcome of the last catch-up to finish.
pub(super) struct CatchUp {
    pub(super) number: u64,
    pub(super) outcome: Result<(), Arc<StoreError>>,
}

impl Mirror {
    /// Makes sure every row committed before this call was read, and is in the mirror unless it
    /// is full:
    /// waits for the catch-up under way, if any, then shares the next one with every caller
    /// that waited meanwhile.
    pub(super) async fn catch_up(&self) -> Result<(), StoreError> {
        let wanted = self.catch_ups_begun.load(Ordering::SeqCst) + 1;
        let mut last = self.last_catch_up.lock().await;
        if last.number < wanted {
            let number = self.catch_ups_begun.fetch_add(1, Ordering::SeqCst) + 1;
            let outcome = self.catch_up_now().await.map_err(Arc::new);
            *last = CatchUp { number, outcome };
        }
        last.outcome.clone().map_err(StoreError::Shared)
    }

    /// Takes a snapshot, then reads the rows committed since the last one, each row once: those
    /// of the transactions the last snapshot saw in progress, and of the later ones, but for
    /// those this snapshot sees in progress, read by the next catch-up once they have finished.
    async fn catch_up_now(&self) -> Result<(), StoreError> {
        let _timer = self.counters.catch_up_seconds.start_timer();
        let seen = self.read().seen.clone();
        self.counters.catch_ups.inc();
        // One statement takes the snapshot and reads the first page of each kind of row; any
        // further page is read by a later statement, kept to the rows that snapshot saw
        // committed.
        let first = self.store.catch_up_start(&seen, PAGE_ROWS).await?;
        let snapshot = first.snapshot;
        let finished: Vec<i64> = seen
            .in_progress
            .iter()
            .copied()
            .filter(|xact| !snapshot.in_progress.contains(xact))
            .collect();
        // Counted apart, and added only once the catch-up is whole: one that fails is done
        // again from the same snapshot, and reads the same rows again.
        let mut left_out = 0;
        let of_finished = |next| self.store.in_progress_page_rows(&finished, next, PAGE_ROWS);
        // Every transaction in `finished` had finished by the snapshot.
        self.add_pages(first.of_in_progress, &[], &mut left_out, of_finished)
            .await?;
        let newer = |next| self.store.page_rows(next, snapshot.xmax, PAGE_ROWS);
        self.add_pages(first.newer, &snapshot.in_progress, &mut left_out, newer)
            .await?;
        let mut state = self.write();
        state.left_out += left_out;
        state.seen = snapshot;
        Ok(())
    }

    /// Adds the people of `rows`, the first page of a kind of row, and of the pages after it,
    /// each read by `next_page` from where the one before ended, but those of the transactions
    /// `in_progress` at the snapshot; counts in `left_out` those left out.
    async fn add_pages<Page>(
        &self,
        mut rows: Vec<Row>,
        in_progress: &[i64],
        left_out: &mut u64,
        next_page: impl Fn(PageStart) -> Page,
    ) -> Result<(), StoreError>
    where
        Page: Future<Output = Result<Vec<Row>, StoreError>>,
    {
        loop {
            let next = self.add_page(&rows, in_progress, left_out)?;
            if (rows.len() as i64) < PAGE_ROWS {
                return Ok(());
            }
            rows = next_page(next).await?;
        }
    }

    /// Adds the people of a page of a catch-up that the budget allows, but those of the
    /// transactions `in_progress`, counting the others in `left_out`; returns where the next
    /// page starts.
    fn add_page(
        &self,
        rows: &[Row],
        in_progress: &[i64],
        left_out: &mut u64,
    ) -> Result<PageStart, StoreError> {
        self.counters.catch_up_rows.inc_by(rows.len() as u64);
        let Some(last) = rows.last() else {
            return Ok((i64::MAX, Uuid::max()));
        };
        let next = page_key(last)?;
        let mut state = self.write();
        for row in rows {
            if in_progress.contains(&page_key(row)?.0) {
                // Read by the next catch-up, its transaction then finished.
                continue;
            }
            let Some((insert_xact, person)) = self.decoded(row) else {
                *left_out += 1;
                continue;
            };
            // Added by this replica when it stored it.
            if state.people.contains(&person.id) {
                continue;
            }
            if !state.admit(&person, self.budget_bytes) {
                state.filter_out(insert_xact, &person, self.budget_bytes);
                *left_out += 1;
            }
        }
        state.people.flush();
        Ok(next)
    }
}
