//! Durable group commit: one writer per replica turns concurrent `POST /pessoas` into one
//! multi-row INSERT per database round trip.
//!
//! The writer takes whatever is queued the moment it is free, so a lone request is written at
//! once, and while one INSERT is in flight the next batch gathers by itself: batches grow with
//! load, with no timer anywhere. Each request is answered only after its batch has committed.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::domain::Pessoa;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How many requests may wait for the writer before new ones wait to be queued.
const QUEUE_CAPACITY: usize = 8192;

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

/// The handle requests use to reach the writer. The writer stops once every handle is gone and
/// the queue is empty, so dropping the last handle flushes what is pending.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    pub fn spawn(
        store: Store,
        batch_max: usize,
        metrics: Arc<Metrics>,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(store, jobs, batch_max, metrics));
        (Writer { queue }, task)
    }

    pub async fn create(&self, pessoa: Pessoa) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the writer has stopped".to_owned());
        self.queue
            .send(Job { pessoa, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, mut jobs: mpsc::Receiver<Job>, batch_max: usize, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(batch_max);
    while jobs.recv_many(&mut batch, batch_max).await > 0 {
        metrics.batch_size.observe(batch.len() as f64);
        write(&store, &mut batch).await;
    }
}

/// Writes `batch` and answers every job in it, leaving `batch` empty.
async fn write(store: &Store, batch: &mut Vec<Job>) {
    // Replicas insert in the same (apelido) order, so two batches racing for the same apelidos
    // wait on each other instead of deadlocking.
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
        }
        Err(error) => {
            eprintln!("rinha: writing a batch of {} failed: {error}", batch.len());
            for job in batch.drain(..) {
                let _ = job
                    .reply
                    .send(Err(StoreError::Unavailable(error.to_string())));
            }
        }
    }
}
