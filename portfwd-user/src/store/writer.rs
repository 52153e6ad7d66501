//! The writer thread: it owns the journal and the auxiliary file, writes what the owner hands
//! over in order, and calls the owner back once it is durable.
//!
//! Group commit: the thread takes every operation already queued, writes the commits among them
//! back to back and syncs once, so commits submitted while a sync is in progress share the next
//! one. There is no deliberate wait for more (`commit_delay` in Postgres): the time one sync
//! takes is what gathers the next group, so a lone commit is never delayed.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    mem,
    os::unix::fs::OpenOptionsExt as _,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
};

use super::{
    Journal, StoreError,
    journal::{MAX_RECORD, replace_file},
};

/// Commits written with one sync at most, so that a steady stream of them is still
/// acknowledged in bounded batches.
const MAX_GROUP: usize = 256;

type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Make = Box<dyn FnOnce() -> Vec<u8> + Send>;

enum Op {
    Commit(Commit),
    Compact { make: Make, done: Done },
    RewriteAux(Vec<u8>),
}

struct Commit {
    records: Vec<Vec<u8>>,
    aux: Vec<u8>,
    done: Done,
}

/// What the writer needs of a journal: the seam through which tests block or fail a sync.
pub(crate) trait Sink: Send + 'static {
    fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError>;
    fn sync(&mut self) -> Result<(), StoreError>;
    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StoreError>;
    fn len_bytes(&self) -> u64;
}

impl Sink for Journal {
    fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        Journal::append(self, payload)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Journal::sync(self)
    }

    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        Journal::compact(self, snapshot)
    }

    fn len_bytes(&self) -> u64 {
        Journal::len_bytes(self)
    }
}

/// A writer's counters, read without waiting for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Journal syncs done; with group commit, fewer than the commits.
    pub syncs: u64,
    /// Commits acknowledged as durable.
    pub commits: u64,
    /// Compactions that succeeded.
    pub compactions: u64,
    /// The journal's size after the last batch or compaction: the owner compacts when it grows
    /// large next to its state.
    pub journal_bytes: u64,
    /// The journal failed: commits fail until a compaction succeeds.
    pub failed: bool,
}

#[derive(Debug, Default)]
struct Counters {
    syncs: AtomicU64,
    commits: AtomicU64,
    compactions: AtomicU64,
    journal_bytes: AtomicU64,
    failed: AtomicBool,
}

/// The handle of the writer thread. Dropping it lets the thread finish what is queued in the
/// background; [`shutdown`](Self::shutdown) waits for that.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    counters: Arc<Counters>,
    thread: thread::JoinHandle<()>,
}

impl Writer {
    /// Starts the thread that writes `journal` and, if given, `aux`: an append-only file
    /// secondary to the journal (the event log), opened (created, mode 0600) here.
    pub fn spawn(journal: Journal, aux: Option<PathBuf>) -> Result<Self, StoreError> {
        Self::spawn_with(journal, aux)
    }

    pub(crate) fn spawn_with(sink: impl Sink, aux: Option<PathBuf>) -> Result<Self, StoreError> {
        let aux = aux.map(Aux::open).transpose()?;
        let counters = Arc::new(Counters::default());
        counters
            .journal_bytes
            .store(sink.len_bytes(), Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let mut state = State {
            sink,
            aux,
            failed: None,
            group: Vec::new(),
            counters: Arc::clone(&counters),
        };
        let thread = thread::Builder::new()
            .name("portfwd-store".into())
            .spawn(move || state.run(&rx))
            .map_err(|source| StoreError::Spawn { source })?;
        Ok(Self {
            tx,
            counters,
            thread,
        })
    }

    /// Appends `records`, one journal frame each, then `aux_bytes` to the auxiliary file, and
    /// calls `done` on the writer thread once they are durable: the journal `fdatasync`ed and the
    /// auxiliary file written (synced within [`AUX_SYNC_EVERY`]). Callbacks run strictly in submission order
    /// (compactions included) and should only hand the result back to the owner.
    ///
    /// If the journal fails, this commit and every later one get [`StoreError::NotDurable`]
    /// without touching the disk, until a [`compact`](Self::compact) succeeds: the owner undoes
    /// them in order, then compacts. The auxiliary file never fails a commit: a failed write is
    /// logged and the commit stands, because the journal is the state and the event log only
    /// its history (a lost event is better than a change refused for it).
    pub fn commit(
        &self,
        records: Vec<Vec<u8>>,
        aux_bytes: Vec<u8>,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        self.send(Op::Commit(Commit {
            records,
            aux: aux_bytes,
            done: Box::new(done),
        }));
    }

    /// In order with commits: runs `make` on the writer thread (so the owner hands over a cheap
    /// clone of its state, not serialised bytes), writes its bytes as the new snapshot and starts
    /// the journal again empty. A success ends the failed state.
    pub fn compact(
        &self,
        make: impl FnOnce() -> Vec<u8> + Send + 'static,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        self.send(Op::Compact {
            make: Box::new(make),
            done: Box::new(done),
        });
    }

    /// In order with commits: replaces the auxiliary file with `bytes` atomically (the event
    /// log's own compaction). A failure is logged.
    pub fn rewrite_aux(&self, bytes: Vec<u8>) {
        self.send(Op::RewriteAux(bytes));
    }

    /// The counters as they are now.
    #[must_use]
    pub fn stats(&self) -> WriterStats {
        let counters = &self.counters;
        WriterStats {
            syncs: counters.syncs.load(Ordering::Relaxed),
            commits: counters.commits.load(Ordering::Relaxed),
            compactions: counters.compactions.load(Ordering::Relaxed),
            journal_bytes: counters.journal_bytes.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Writes what is queued, calls its callbacks, then stops the thread.
    pub fn shutdown(self) {
        let Self { tx, thread, .. } = self;
        // The only sender: the thread drains the queue and ends.
        drop(tx);
        if thread.join().is_err() {
            tracing::error!("the store writer panicked");
        }
    }

    fn send(&self, op: Op) {
        // The thread only ends early if it panicked outside a callback: answer here instead.
        if let Err(mpsc::SendError(op)) = self.tx.send(op) {
            match op {
                Op::Commit(Commit { done, .. }) | Op::Compact { done, .. } => {
                    done(Err(StoreError::Stopped));
                }
                Op::RewriteAux(_) => tracing::error!("the store writer has stopped"),
            }
        }
    }
}

/// The writer thread's side.
struct State<S> {
    sink: S,
    aux: Option<Aux>,
    /// Why commits fail until a compaction succeeds.
    failed: Option<Arc<StoreError>>,
    /// Commits taken off the queue and not yet written.
    group: Vec<Commit>,
    counters: Arc<Counters>,
}

impl<S: Sink> State<S> {
    fn run(&mut self, rx: &mpsc::Receiver<Op>) {
        loop {
            let first = match rx.recv_timeout(AUX_SYNC_EVERY) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Idle: the event lines written meanwhile reach the disk.
                    if let Some(aux) = &mut self.aux {
                        aux.sync();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut next = Some(first);
            while let Some(op) = next {
                match op {
                    Op::Commit(commit) => {
                        self.group.push(commit);
                        if self.group.len() >= MAX_GROUP {
                            self.flush();
                        }
                    }
                    Op::Compact { make, done } => {
                        self.flush();
                        self.compact(make, done);
                    }
                    Op::RewriteAux(bytes) => {
                        self.flush();
                        if let Some(aux) = &mut self.aux {
                            aux.rewrite(&bytes);
                        }
                    }
                }
                next = rx.try_recv().ok();
            }
            self.flush();
        }
        if let Some(aux) = &mut self.aux {
            aux.sync();
        }
    }

    /// Writes the group with one sync of the journal and calls its callbacks.
    fn flush(&mut self) {
        let mut group = mem::take(&mut self.group);
        // A record over the limit fails its commit and, like any failure, every later one: the
        // owner's later changes may build on it. The commits before it are written as usual.
        let refused = group
            .iter()
            .position(|commit| {
                commit
                    .records
                    .iter()
                    .any(|record| record.len() > MAX_RECORD)
            })
            .map(|at| group.split_off(at))
            .unwrap_or_default();
        if !group.is_empty() {
            self.write(group);
        }
        if let Some(commit) = refused.first() {
            if self.failed.is_none() {
                let len = commit.records.iter().map(Vec::len).max().unwrap_or(0);
                self.fail(StoreError::TooLarge { len });
            }
            self.refuse(refused);
        }
        self.counters
            .journal_bytes
            .store(self.sink.len_bytes(), Ordering::Relaxed);
    }

    fn write(&mut self, group: Vec<Commit>) {
        if self.failed.is_some() {
            self.refuse(group);
            return;
        }
        if let Err(err) = self.append_sync(&group) {
            self.fail(err);
            self.refuse(group);
            return;
        }
        let aux: Vec<u8> = group
            .iter()
            .flat_map(|commit| &commit.aux)
            .copied()
            .collect();
        if let Some(file) = &mut self.aux
            && !aux.is_empty()
        {
            file.append(&aux);
        }
        self.counters
            .commits
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        for commit in group {
            call(commit.done, Ok(()));
        }
        if let Some(aux) = &mut self.aux {
            aux.sync_if_due();
        }
    }

    fn append_sync(&mut self, group: &[Commit]) -> Result<(), StoreError> {
        let mut appended = false;
        for record in group.iter().flat_map(|commit| &commit.records) {
            self.sink.append(record)?;
            appended = true;
        }
        if appended {
            self.sink.sync()?;
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn fail(&mut self, err: StoreError) {
        tracing::error!(
            "store journal failed, commits fail until a compaction succeeds: {}",
            crate::error_chain(&err)
        );
        self.failed = Some(Arc::new(err));
        self.counters.failed.store(true, Ordering::Relaxed);
    }

    /// Fails `commits` with the cause of the failed state, without touching the disk.
    fn refuse(&self, commits: Vec<Commit>) {
        let cause = self
            .failed
            .clone()
            .unwrap_or_else(|| Arc::new(StoreError::Broken));
        for commit in commits {
            call(
                commit.done,
                Err(StoreError::NotDurable {
                    cause: Arc::clone(&cause),
                }),
            );
        }
    }

    fn compact(&mut self, make: Make, done: Done) {
        let result = match panic::catch_unwind(AssertUnwindSafe(make)) {
            Ok(state) => self.sink.compact(&state),
            Err(_) => Err(StoreError::MakerPanicked),
        };
        match &result {
            Ok(()) => {
                if self.failed.take().is_some() {
                    tracing::info!("store journal usable again after a compaction");
                }
                self.counters.failed.store(false, Ordering::Relaxed);
                self.counters.compactions.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => tracing::error!("store compaction failed: {}", crate::error_chain(err)),
        }
        self.counters
            .journal_bytes
            .store(self.sink.len_bytes(), Ordering::Relaxed);
        call(done, result);
    }
}

/// Runs a callback; one that panics must not take the writer, and everyone's durability, with
/// it.
fn call(done: Done, result: Result<(), StoreError>) {
    if panic::catch_unwind(AssertUnwindSafe(|| done(result))).is_err() {
        tracing::error!("a store callback panicked");
    }
}

/// How long event lines may wait for their sync. They are written (so a crash of the daemon
/// loses none) before their change is acknowledged, but synced only when the writer is idle or
/// this long after the last sync: a second sync per group would double every change's wait
/// for the disk, for a log that is secondary to the journal. A power cut can lose the last
/// second of events, never a change.
const AUX_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The auxiliary append-only file. Its failures are logged, never returned (see
/// [`Writer::commit`]).
struct Aux {
    path: PathBuf,
    /// `None` after a rewrite whose reopening failed: the next append tries again.
    file: Option<File>,
    /// Written since the last sync.
    dirty: bool,
    synced: std::time::Instant,
}

impl Aux {
    fn open(path: PathBuf) -> Result<Self, StoreError> {
        match open_append(&path) {
            Ok(file) => Ok(Self {
                path,
                file: Some(file),
                dirty: false,
                synced: std::time::Instant::now(),
            }),
            Err(source) => Err(StoreError::Write { path, source }),
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let file = match &mut self.file {
            Some(file) => Ok(file),
            None => open_append(&self.path).map(|file| self.file.insert(file)),
        };
        match file.and_then(|file| file.write_all(bytes)) {
            Ok(()) => self.dirty = true,
            Err(err) => tracing::error!("cannot append to {}: {err}", self.path.display()),
        }
    }

    /// Syncs what was written since the last sync.
    fn sync(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(file) = &self.file
            && let Err(err) = file.sync_data()
        {
            tracing::error!("cannot sync {}: {err}", self.path.display());
        }
        self.dirty = false;
        self.synced = std::time::Instant::now();
    }

    /// Syncs if the last sync is [`AUX_SYNC_EVERY`] ago.
    fn sync_if_due(&mut self) {
        if self.synced.elapsed() >= AUX_SYNC_EVERY {
            self.sync();
        }
    }

    fn rewrite(&mut self, bytes: &[u8]) {
        if let Err(err) = replace_file(&self.path, &[bytes]) {
            tracing::error!("{}", crate::error_chain(&err));
        }
        // The old handle may point at the replaced file.
        self.file = None;
        match open_append(&self.path) {
            Ok(file) => self.file = Some(file),
            Err(err) => tracing::error!("cannot open {}: {err}", self.path.display()),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests;
