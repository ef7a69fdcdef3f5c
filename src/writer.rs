//! Durable group commit: a few writers per replica turn concurrent `POST /pessoas` into
//! multi-row INSERTs.
//!
//! The writers share one queue. An idle writer takes whatever is queued the moment it is free,
//! so a lone request is written at once; when every writer has an INSERT in flight, the next
//! batch gathers by itself: batches grow with load, with no timer anywhere. Each request is
//! answered only after its batch has committed. Several INSERTs in flight, rather than one,
//! keep a request from waiting for a whole earlier batch to commit before its own can start.
//!
//! Time in the queue counts against the database timeout: a job still queued at its deadline
//! is answered `503` and never written, so a `503` still means "not stored". A batch whose
//! answer was lost with its connection is settled before anyone is answered, by looking its
//! people up (see [`Store::insert_batch`]): a person stored gets its `201`.
//!
//! The same statement lists each person under its short grams (see `pessoas_gramas` in
//! `sql/schema.sql`) whose lists are not known to be full. The writers learn which are full from
//! the inserts themselves, so that once the common grams are full a write lists nothing.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::domain::Pessoa;
use crate::index::for_each_gram;
use crate::metrics::Metrics;
use crate::mirror::SEARCH_LIMIT;
use crate::store::{Store, StoreError};

/// How many requests may wait for a writer before new ones wait to be queued.
const QUEUE_CAPACITY: usize = 8192;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Committed: readable from every replica, and durable.
    Created,
    /// Another person already has this apelido.
    ApelidoTaken,
}

/// Why a person was not written. Each is a `503`, but for a batch failed by a bug in the code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("the writers' queue stayed full past the database timeout")]
    QueueFull,
    #[error("waited for a writer past the database timeout")]
    WaitedTooLong,
    #[error("the writers have stopped")]
    Stopped,
    /// The INSERT of the person's batch failed; every request in it gets the same error.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

struct Job {
    pessoa: Pessoa,
    reply: oneshot::Sender<Result<Outcome, WriteError>>,
    /// When its batch must have started: the database timeout after it was queued.
    deadline: Instant,
}

/// The handle requests use to reach the writers. The writers stop once every handle is gone and
/// the queue is empty, so dropping the last handle flushes what is pending.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
    timeout: Duration,
}

impl Writer {
    /// Starts `writers` writers over one queue, where a job may wait at most `timeout` (the
    /// database timeout), knowing the grams `full_grams` full. The task returned ends once they have drained the queue.
    pub(crate) fn spawn(
        store: Store,
        full_grams: HashSet<String>,
        writers: usize,
        batch_max: usize,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let jobs = Arc::new(Mutex::new(jobs));
        let full_grams = Arc::new(std::sync::Mutex::new(full_grams));
        let writers: Vec<JoinHandle<()>> = (0..writers)
            .map(|_| {
                let writer = BatchWriter {
                    store: store.clone(),
                    full_grams: Arc::clone(&full_grams),
                    metrics: metrics.clone(),
                };
                tokio::spawn(writer.run(jobs.clone(), batch_max))
            })
            .collect();
        let task = tokio::spawn(async move {
            for writer in writers {
                if let Err(error) = writer.await {
                    tracing::error!(%error, "a writer stopped abnormally");
                }
            }
        });
        (Writer { queue, timeout }, task)
    }

    pub(crate) async fn create(&self, pessoa: Pessoa) -> Result<Outcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.timeout;
        let job = Job {
            pessoa,
            reply,
            deadline,
        };
        tokio::time::timeout_at(deadline, self.queue.send(job))
            .await
            .map_err(|_| WriteError::QueueFull)?
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

/// One writer, and what the writers share.
struct BatchWriter {
    store: Store,
    /// The grams whose lists are known to hold [`SEARCH_LIMIT`] people already.
    full_grams: Arc<std::sync::Mutex<HashSet<String>>>,
    metrics: Arc<Metrics>,
}

impl BatchWriter {
    async fn run(self, jobs: Arc<Mutex<mpsc::Receiver<Job>>>, batch_max: usize) {
        let mut batch = Vec::with_capacity(batch_max);
        // The lock is held only while waiting for jobs, so one idle writer waits at a time and
        // the others are writing.
        while jobs.lock().await.recv_many(&mut batch, batch_max).await > 0 {
            let now = Instant::now();
            for late in batch.extract_if(.., |job| job.deadline <= now) {
                let _ = late.reply.send(Err(WriteError::WaitedTooLong));
            }
            if batch.is_empty() {
                continue;
            }
            self.metrics.batch_size.observe(batch.len() as f64);
            self.write(&mut batch).await;
        }
    }

    /// Writes `batch` and answers every job in it, leaving `batch` empty.
    async fn write(&self, batch: &mut Vec<Job>) {
        // Batches insert in the same (apelido) order, so two of them racing for the same
        // apelidos, from one replica or two, wait on each other instead of deadlocking.
        batch.sort_unstable_by(|a, b| a.pessoa.apelido().cmp(b.pessoa.apelido()));
        let pessoas: Vec<&Pessoa> = batch.iter().map(|job| &job.pessoa).collect();
        let listing = self.listing(&pessoas);
        match self
            .store
            .insert_batch(&pessoas, &listing, SEARCH_LIMIT)
            .await
        {
            Ok(inserted) => {
                self.full_grams
                    .lock()
                    .expect("never poisoned: no panics under it")
                    .extend(inserted.full);
                for job in batch.drain(..) {
                    let outcome = if inserted.ids.contains(&job.pessoa.id()) {
                        Outcome::Created
                    } else {
                        Outcome::ApelidoTaken
                    };
                    // The requester may have gone away; its record is stored all the same.
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(WriteError::Store(error.clone())));
                }
            }
        }
    }

    /// Each person's grams whose lists are not known to be full.
    fn listing(&self, pessoas: &[&Pessoa]) -> Vec<(String, uuid::Uuid)> {
        let full = self
            .full_grams
            .lock()
            .expect("never poisoned: no panics under it");
        let mut listing = Vec::new();
        for &pessoa in pessoas {
            for_each_gram(&pessoa.into(), |gram| {
                if !full.contains(gram) {
                    listing.push((gram.to_owned(), pessoa.id()));
                }
            });
        }
        // A person's gram may come more than once.
        listing.sort_unstable();
        listing.dedup();
        listing
    }
}
