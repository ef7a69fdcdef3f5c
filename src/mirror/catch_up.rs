//! Catching up: reading the rows that may have been committed since the last catch-up (see the
//! mirror's own documentation for why these rows are all of them).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_postgres::Row;
use uuid::Uuid;

use super::{Frontier, Mirror, PAGE_ROWS};
use crate::store::rows::page_key;
use crate::store::{PageStart, StoreError};

/// The number and outcome of the last catch-up to finish.
pub(super) struct CatchUp {
    pub(super) number: u64,
    pub(super) outcome: Result<(), Arc<StoreError>>,
}

impl Mirror {
    /// Makes sure the mirror holds every row committed before this call, unless it is full:
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

    /// Takes a snapshot, then reads the rows that may have been committed since the last one.
    async fn catch_up_now(&self) -> Result<(), StoreError> {
        let _timer = self.counters.catch_up_seconds.start_timer();
        let seen = {
            let state = self.read();
            if state.frontier.is_some() {
                return Ok(());
            }
            state.seen.clone()
        };
        self.counters.catch_ups.inc();
        // One statement takes the snapshot and reads the first page of each kind of row; any
        // further page is read by a later statement, which sees every row it saw committed.
        let first = self.store.catch_up_start(&seen, PAGE_ROWS).await?;
        let in_progress = &seen.in_progress;
        let of_in_progress = |next| {
            self.store
                .in_progress_page_rows(in_progress, next, PAGE_ROWS)
        };
        // Should the mirror fill here, none of the newer rows was read.
        let before_newer = |_| Frontier::past(&seen);
        if !self
            .add_pages(first.of_in_progress, before_newer, of_in_progress)
            .await?
        {
            return Ok(());
        }
        let newer = |next| self.store.page_rows(next, i64::MAX, PAGE_ROWS);
        // Should the mirror fill here, the newer rows were read up to that row, but those of
        // transactions in progress at this catch-up's snapshot, and those of transactions
        // begun after it, which a later page may have missed as well.
        let snapshot = &first.snapshot;
        let within_newer = |key: PageStart| Frontier {
            from: key.min((snapshot.xmax, Uuid::nil())),
            in_progress: snapshot.in_progress.clone(),
        };
        if !self.add_pages(first.newer, within_newer, newer).await? {
            return Ok(());
        }
        self.write().seen = first.snapshot;
        Ok(())
    }

    /// Adds the people of `rows`, the first page of a kind of row, and of the pages after it,
    /// each read by `next_page` from where the one before ended; returns false once the mirror
    /// is full.
    async fn add_pages<Page>(
        &self,
        mut rows: Vec<Row>,
        frontier: impl Fn(PageStart) -> Frontier,
        next_page: impl Fn(PageStart) -> Page,
    ) -> Result<bool, StoreError>
    where
        Page: Future<Output = Result<Vec<Row>, StoreError>>,
    {
        loop {
            let Some(next) = self.add_page(&rows, &frontier)? else {
                return Ok(false);
            };
            if (rows.len() as i64) < PAGE_ROWS {
                return Ok(true);
            }
            rows = next_page(next).await?;
        }
    }

    /// Adds the people of a page of a catch-up; returns where the next page starts, or None
    /// once the mirror is full, past `frontier` of the row that did not fit.
    fn add_page(
        &self,
        rows: &[Row],
        frontier: &impl Fn(PageStart) -> Frontier,
    ) -> Result<Option<PageStart>, StoreError> {
        self.counters.catch_up_rows.inc_by(rows.len() as u64);
        let Some(last) = rows.last() else {
            return Ok(Some((i64::MAX, Uuid::max())));
        };
        let next = page_key(last)?;
        let mut state = self.write();
        let mut admitted = true;
        for row in rows {
            let Some((insert_xact, person)) = self.decoded(row) else {
                continue;
            };
            if state.people.contains(&person.id) {
                continue;
            }
            let key = (insert_xact, person.id);
            admitted = state.admit(&person, self.budget_bytes, || frontier(key));
            if !admitted {
                break;
            }
        }
        state.people.flush();
        Ok(admitted.then_some(next))
    }
}
