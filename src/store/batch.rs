//! Group commit for engines without a writer thread (PostgreSQL).
//!
//! Every commit costs the database a WAL flush and every statement a round trip and a backend
//! wake-up; on a small machine those, not the rows, are what limit throughput. Callers submit
//! jobs one by one; a few lanes each take whatever is queued (up to a limit) and run it as one
//! statement or transaction. A lane runs its batch in a task of its own, so a panicking batch
//! drops only its own jobs (whose callers then see the store as closed) and the lane goes on.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex};

use super::{StoreError, StoreResult};

/// Queued jobs beyond this make callers wait to submit (backpressure rather than memory).
const QUEUE: usize = 8192;

pub(crate) struct Batcher<J> {
    tx: mpsc::Sender<J>,
}

impl<J: Send + 'static> Batcher<J> {
    /// Starts `lanes` lanes, each running batches of up to `max` jobs through `run`. Lanes end
    /// once the batcher is dropped and the queue is empty.
    pub(crate) fn spawn<F, Fut>(lanes: usize, max: usize, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        for _ in 0..lanes {
            let rx = rx.clone();
            let run = run.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { break };
                        let mut batch = vec![first];
                        while batch.len() < max {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    if let Err(e) = tokio::spawn(run(batch)).await {
                        tracing::error!(error = %e, "a batch of store operations panicked");
                    }
                }
            });
        }
        Self { tx }
    }

    pub(crate) async fn submit(&self, job: J) -> StoreResult<()> {
        self.tx.send(job).await.map_err(|_| StoreError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn jobs_queued_while_a_lane_is_busy_run_together_in_its_next_batch() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (gate_tx, gate_rx) = oneshot::channel::<()>();
        let gate = Arc::new(Mutex::new(Some(gate_rx)));
        let seen = sizes.clone();
        let batcher = Batcher::spawn(1, 100, move |jobs: Vec<oneshot::Sender<()>>| {
            let seen = seen.clone();
            let gate = gate.clone();
            async move {
                seen.lock().unwrap().push(jobs.len());
                // The first batch holds the lane until every other job is queued.
                if let Some(wait) = gate.lock().await.take() {
                    let _ = wait.await;
                }
                for job in jobs {
                    let _ = job.send(());
                }
            }
        });
        let mut answers = Vec::new();
        for i in 0..11 {
            let (tx, rx) = oneshot::channel();
            batcher.submit(tx).await.unwrap();
            answers.push(rx);
            if i == 0 {
                tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    while sizes.lock().unwrap().is_empty() {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .unwrap();
            }
        }
        gate_tx.send(()).unwrap();
        for answer in answers {
            tokio::time::timeout(std::time::Duration::from_secs(5), answer)
                .await
                .unwrap()
                .unwrap();
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes, vec![1, 10]);
    }

    #[tokio::test]
    async fn a_panicking_batch_loses_only_its_own_jobs() {
        let batcher = Batcher::spawn(1, 1, |jobs: Vec<(bool, oneshot::Sender<()>)>| async move {
            for (panic, reply) in jobs {
                assert!(!panic, "this batch fails");
                let _ = reply.send(());
            }
        });
        let (tx, first) = oneshot::channel();
        batcher.submit((true, tx)).await.unwrap();
        assert!(first.await.is_err());
        let (tx, second) = oneshot::channel();
        batcher.submit((false, tx)).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
    }
}
