//! The table's owner task and its handle.
//!
//! Every operation is a method of [`Table`]; the handle sends it to the owner as a closure
//! ([`TableHandle::change`], [`TableHandle::ask`]) instead of a command enum, so a new
//! operation is one method here and there, not four places. Changes are answered once they
//! are on disk; readers take the latest published [`Snapshot`] and never queue behind a
//! change. The task sleeps until the earliest lease deadline or the next job, whichever
//! comes first, and expiry goes first: a stream of jobs cannot postpone a due deadline.

use std::{sync::Arc, time::Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Table, TableError,
    persist::{Ack, Durability},
    view::Snapshot,
};
use crate::{dataplane::MapReader, store::Writer};

type Job = Box<dyn FnOnce(&mut Table) + Send>;

/// The time now, by the runtime's clock (which tests can pause and advance).
#[must_use]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A handle on the table task. Cloneable; the task ends when every handle is dropped.
#[derive(Clone)]
pub struct TableHandle {
    jobs: mpsc::Sender<Job>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    reader: Arc<dyn MapReader>,
}

impl TableHandle {
    /// Runs `change` in the owner; answers once the change is on disk (a refusal at once).
    pub async fn change<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Table) -> Result<T, TableError> + Send + 'static,
    ) -> Result<T, TableError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |table| match change(table) {
            Ok(value) => table.after_durable(move |saved| {
                let _ = reply.send(saved.map(|()| value).map_err(TableError::from));
            }),
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        });
        self.jobs.send(job).await.map_err(|_| TableError::Stopped)?;
        answer.await.map_err(|_| TableError::Stopped)?
    }

    /// Runs `ask` in the owner and answers at once: for what needs the owner's own state
    /// (the event log's followers), not for listings (see [`Self::snapshot`]).
    pub async fn ask<T: Send + 'static>(
        &self,
        ask: impl FnOnce(&mut Table) -> T + Send + 'static,
    ) -> Result<T, TableError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |table| {
            let _ = reply.send(ask(table));
        });
        self.jobs.send(job).await.map_err(|_| TableError::Stopped)?;
        answer.await.map_err(|_| TableError::Stopped)
    }

    /// The table as of the latest change.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshots.borrow())
    }

    /// The snapshots as they are published.
    #[must_use]
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// Every share with its lease, as of the latest snapshot (no counters).
    #[must_use]
    pub fn entries(&self) -> Vec<super::ShareEntry> {
        self.snapshot().entries(now()).collect()
    }

    /// Every pinhole with its counters and lease, as of the latest snapshot.
    pub fn pinholes(&self) -> Result<Vec<super::PinholeView>, TableError> {
        self.snapshot().pinhole_views(self.reader(), now())
    }

    /// A reader of the kernel's counters.
    #[must_use]
    pub fn reader(&self) -> &dyn MapReader {
        self.reader.as_ref()
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

/// Runs `table` on its own task, its changes written by `writer` if there is one; returns the
/// handle and the task (which hands the table back, with its maps, when the last handle is
/// dropped, after the writer has drained).
#[must_use = "the table stops when the handle is dropped"]
pub fn spawn(
    mut table: Table,
    writer: Option<Writer>,
) -> (TableHandle, tokio::task::JoinHandle<Table>) {
    let (jobs, mut rx) = mpsc::channel::<Job>(256);
    let (acks, mut ack_rx) = mpsc::unbounded_channel::<Ack>();
    table.set_now(now());
    if let Some(writer) = writer {
        table.set_durability(Durability {
            writer,
            notify: Arc::new(move |ack| {
                let _ = acks.send(ack);
            }),
        });
    }
    let (publish, snapshots) = watch::channel(Arc::new(table.snapshot()));
    let reader = table.reader();
    let task = tokio::spawn(async move {
        let mut published = table.version();
        loop {
            let deadline = table.next_deadline();
            tokio::select! {
                biased;
                () = sleep_until_some(deadline) => {
                    table.set_now(now());
                    if let Err(err) = table.expire() {
                        tracing::error!("expiring shares: {}", crate::error_chain(&err));
                    }
                }
                Some(ack) = ack_rx.recv() => table.acked(ack),
                job = rx.recv() => {
                    let Some(job) = job else { break };
                    table.set_now(now());
                    job(&mut table);
                }
            }
            if table.version() != published {
                published = table.version();
                publish.send_replace(Arc::new(table.snapshot()));
            }
        }
        table.close();
        table
    });
    (
        TableHandle {
            jobs,
            snapshots,
            reader,
        },
        task,
    )
}
