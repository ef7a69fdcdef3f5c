//! Durable group commit: a few writers per replica turn concurrent `POST /pessoas` into
//! multi-row INSERTs, and keep the search index's pending list short.
//!
//! The writers share one queue. An idle writer takes whatever is queued the moment it is free,
//! so a lone request is written at once; when every writer has an INSERT in flight, the next
//! batch gathers by itself: batches grow with load, with no timer anywhere. Each request is
//! answered only after its batch has committed. Several INSERTs in flight, rather than one,
//! keep a request from waiting for a whole earlier batch to commit before its own can start.
//!
//! New rows enter the trigram index's pending list, and merging that list into the index is
//! the costliest part of a write. Left to PostgreSQL, the INSERT that overflows the list merges
//! it, and the requests in that batch wait for the merge; here a merger task does it in the
//! background after every [`MERGE_EVERY_ROWS`] rows, off every request's path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::domain::Pessoa;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How many requests may wait for a writer before new ones wait to be queued.
const QUEUE_CAPACITY: usize = 8192;

/// Rows this replica writes between merges of the search index's pending list. Measured on the
/// stress test's data: merging 32 rows at a time costs about 0.37 ms of database CPU per row and
/// adds about 0.3 ms to a search, which must also read the pending list (merging 256 at a time:
/// 0.24 ms per row, but 1.1 ms more per search, and longer merges).
pub const MERGE_EVERY_ROWS: usize = 32;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed: readable from every replica, and durable.
    Created,
    /// Another person already has this apelido.
    ApelidoTaken,
}

struct Job {
    pessoa: Pessoa,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The handle requests use to reach the writers. The writers stop once every handle is gone and
/// the queue is empty, so dropping the last handle flushes what is pending.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts `writers` writers over one queue, and the search index merger. The task returned
    /// ends once the writers have drained the queue and the merger has stopped.
    pub fn spawn(
        store: Store,
        writers: usize,
        batch_max: usize,
        metrics: Arc<Metrics>,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let jobs = Arc::new(Mutex::new(jobs));
        let unmerged = Arc::new(UnmergedRows::default());
        let writers: Vec<JoinHandle<()>> = (0..writers)
            .map(|_| {
                tokio::spawn(run(
                    store.clone(),
                    jobs.clone(),
                    batch_max,
                    metrics.clone(),
                    unmerged.clone(),
                ))
            })
            .collect();
        let merger = tokio::spawn(merge_when_due(store, unmerged.clone()));
        let task = tokio::spawn(async move {
            for writer in writers {
                if let Err(error) = writer.await {
                    eprintln!("rinha: a writer stopped abnormally: {error}");
                }
            }
            unmerged.close();
            let _ = merger.await;
        });
        (Writer { queue }, task)
    }

    pub async fn create(&self, pessoa: Pessoa) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the writers have stopped".to_owned());
        self.queue
            .send(Job { pessoa, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    store: Store,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    batch_max: usize,
    metrics: Arc<Metrics>,
    unmerged: Arc<UnmergedRows>,
) {
    let mut batch = Vec::with_capacity(batch_max);
    // The lock is held only while waiting for jobs, so one idle writer waits at a time and the
    // others are writing.
    while jobs.lock().await.recv_many(&mut batch, batch_max).await > 0 {
        metrics.batch_size.observe(batch.len() as f64);
        let inserted = write(&store, &mut batch).await;
        unmerged.add(inserted);
    }
}

/// Writes `batch` and answers every job in it, leaving `batch` empty. Returns how many rows it
/// inserted.
async fn write(store: &Store, batch: &mut Vec<Job>) -> usize {
    // Batches insert in the same (apelido) order, so two of them racing for the same apelidos,
    // from one replica or two, wait on each other instead of deadlocking.
    batch.sort_unstable_by(|a, b| a.pessoa.apelido.cmp(&b.pessoa.apelido));
    let pessoas: Vec<&Pessoa> = batch.iter().map(|job| &job.pessoa).collect();
    match store.insert_batch(&pessoas).await {
        Ok(inserted) => {
            for job in batch.drain(..) {
                let outcome = if inserted.contains(&job.pessoa.id) {
                    Outcome::Created
                } else {
                    Outcome::ApelidoTaken
                };
                // The requester may have gone away; its record is stored all the same.
                let _ = job.reply.send(Ok(outcome));
            }
            inserted.len()
        }
        Err(error) => {
            eprintln!("rinha: writing a batch of {} failed: {error}", batch.len());
            for job in batch.drain(..) {
                let _ = job
                    .reply
                    .send(Err(StoreError::Unavailable(error.to_string())));
            }
            0
        }
    }
}

/// Rows written since the search index's pending list was last merged.
#[derive(Default)]
struct UnmergedRows {
    rows: AtomicUsize,
    due: Notify,
    closed: AtomicBool,
}

impl UnmergedRows {
    fn add(&self, rows: usize) {
        let before = self.rows.fetch_add(rows, Ordering::Relaxed);
        if before < MERGE_EVERY_ROWS && before + rows >= MERGE_EVERY_ROWS {
            self.due.notify_one();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.due.notify_one();
    }
}

/// Merges the pending list each time enough rows have been written, until closed.
async fn merge_when_due(store: Store, unmerged: Arc<UnmergedRows>) {
    loop {
        unmerged.due.notified().await;
        if unmerged.closed.load(Ordering::Relaxed) {
            return;
        }
        // Rows written while the merge runs count towards the next one.
        unmerged.rows.store(0, Ordering::Relaxed);
        if let Err(error) = store.merge_search_index().await {
            // PostgreSQL merges by itself once the list outgrows its limit, so nothing is lost.
            eprintln!("rinha: merging the search index's pending list failed: {error}");
        }
    }
}
