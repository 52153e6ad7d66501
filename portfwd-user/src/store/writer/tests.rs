use std::{
    fs, io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use super::{Sink, Writer, WriterStats};
use crate::store::{Journal, MAX_RECORD, StoreError, TempDir, open};

const WAIT: Duration = Duration::from_secs(5);

fn open_ok(dir: &TempDir) -> Journal {
    open(dir.path()).expect("open").0
}

fn reload(dir: &TempDir) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    let (_, loaded) = open(dir.path()).expect("reopen");
    assert_eq!(loaded.dropped_bytes, 0);
    (loaded.snapshot, loaded.records)
}

/// A journal whose syncs wait for the test: each reports how many records it covers once they
/// are on disk, then returns only when released. Records a returned sync covered are added to
/// `synced`.
struct Gated {
    journal: Journal,
    unsynced: Vec<Vec<u8>>,
    synced: Arc<Mutex<Vec<Vec<u8>>>>,
    entered: mpsc::Sender<usize>,
    release: mpsc::Receiver<()>,
}

impl Sink for Gated {
    fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        let seq = self.journal.append(payload)?;
        self.unsynced.push(payload.to_vec());
        Ok(seq)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.journal.sync()?;
        let _ = self.entered.send(self.unsynced.len());
        let _ = self.release.recv();
        self.synced.lock().expect("lock").append(&mut self.unsynced);
        Ok(())
    }

    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        self.journal.compact(snapshot)
    }

    fn len_bytes(&self) -> u64 {
        self.journal.len_bytes()
    }
}

/// An acknowledgement as a `done` callback saw it. Callbacks only report: a panic in one is
/// caught by the writer, so the test asserts on its own thread.
#[derive(Debug)]
struct Ack {
    id: String,
    ok: bool,
    /// Every record of the commit was covered by a sync that had returned.
    covered: bool,
}

#[test]
fn concurrent_commits_share_syncs_and_are_acknowledged_only_once_synced() {
    let dir = TempDir::new("group");
    let synced = Arc::new(Mutex::new(Vec::new()));
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let sink = Gated {
        journal: open_ok(&dir),
        unsynced: Vec::new(),
        synced: Arc::clone(&synced),
        entered: entered_tx,
        release: release_rx,
    };
    let writer = Writer::spawn_with(sink, None).expect("spawn");
    let (acks_tx, acks) = mpsc::channel();
    let submit = |id: String| {
        let records = vec![
            format!("{id}/a").into_bytes(),
            format!("{id}/b").into_bytes(),
        ];
        let (synced, acks) = (Arc::clone(&synced), acks_tx.clone());
        let mine = records.clone();
        writer.commit(records, Vec::new(), move |result| {
            let synced = synced.lock().expect("lock");
            let covered = mine.iter().all(|record| synced.contains(record));
            let _ = acks.send(Ack {
                id,
                ok: result.is_ok(),
                covered,
            });
        });
    };

    submit("first".into());
    assert_eq!(entered.recv_timeout(WAIT), Ok(2), "the first commit alone");
    // 32 commits from 4 threads while that sync is in progress.
    thread::scope(|scope| {
        for t in 0..4 {
            let submit = &submit;
            scope.spawn(move || (0..8).for_each(|i| submit(format!("{t}-{i}"))));
        }
    });
    assert!(acks.try_recv().is_err(), "acknowledged before its sync");
    release.send(()).expect("release");
    let first = acks.recv_timeout(WAIT).expect("ack");
    assert!(
        first.id == "first" && first.ok && first.covered,
        "{first:?}"
    );

    assert_eq!(entered.recv_timeout(WAIT), Ok(64), "one sync for the 32");
    assert!(acks.try_recv().is_err(), "acknowledged before its sync");
    release.send(()).expect("release");
    let rest: Vec<Ack> = (0..32)
        .map(|_| acks.recv_timeout(WAIT).expect("ack"))
        .collect();
    assert!(rest.iter().all(|ack| ack.ok && ack.covered), "{rest:?}");
    assert_eq!(
        writer.stats(),
        WriterStats {
            syncs: 2,
            commits: 33,
            compactions: 0,
            journal_bytes: writer.stats().journal_bytes,
            failed: false,
        }
    );
    writer.shutdown();

    // Acknowledged in the order the commits reached the journal, each thread's in its own order.
    let (_, records) = reload(&dir);
    let journal_order: Vec<String> = records
        .chunks(2)
        .map(|pair| {
            let id = String::from_utf8(pair[0].clone()).expect("utf-8");
            assert_eq!(pair[1], id.replace("/a", "/b").into_bytes());
            id.trim_end_matches("/a").to_owned()
        })
        .collect();
    let ack_order: Vec<&str> = [&first].into_iter().chain(&rest).map(|a| &*a.id).collect();
    assert_eq!(ack_order, journal_order);
    for t in 0..4 {
        let mine: Vec<&str> = ack_order
            .iter()
            .copied()
            .filter(|id| id.starts_with(&format!("{t}-")))
            .collect();
        let want: Vec<String> = (0..8).map(|i| format!("{t}-{i}")).collect();
        assert_eq!(mine, want);
    }
}

/// A journal whose syncs fail while `fail` is set, counting the appends that reach it.
struct Faulty {
    journal: Journal,
    fail: Arc<AtomicBool>,
    appends: Arc<AtomicUsize>,
}

impl Sink for Faulty {
    fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.journal.append(payload)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Sync {
                path: "journal".into(),
                source: io::Error::other("injected"),
            });
        }
        self.journal.sync()
    }

    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        self.journal.compact(snapshot)
    }

    fn len_bytes(&self) -> u64 {
        self.journal.len_bytes()
    }
}

/// A callback's name and result: `Ok`, or the error with its cause, debug-formatted.
type Entry = (&'static str, Result<(), String>);
/// Entries in the order the callbacks ran.
type Log = mpsc::Receiver<Entry>;

fn logger() -> (mpsc::Sender<Entry>, Log) {
    mpsc::channel()
}

fn done(
    log: &mpsc::Sender<Entry>,
    name: &'static str,
) -> impl FnOnce(Result<(), StoreError>) + Send + 'static {
    let log = log.clone();
    move |result| {
        let result = result.map_err(|err| match &err {
            StoreError::NotDurable { cause } => format!("not durable: {cause:?}"),
            other => format!("{other:?}"),
        });
        let _ = log.send((name, result));
    }
}

fn next(log: &Log) -> Entry {
    log.recv_timeout(WAIT).expect("a callback")
}

#[test]
fn after_a_failed_sync_every_commit_fails_until_a_compaction() {
    let dir = TempDir::new("fail");
    let fail = Arc::new(AtomicBool::new(false));
    let appends = Arc::new(AtomicUsize::new(0));
    let sink = Faulty {
        journal: open_ok(&dir),
        fail: Arc::clone(&fail),
        appends: Arc::clone(&appends),
    };
    let writer = Writer::spawn_with(sink, None).expect("spawn");
    let (log_tx, log) = logger();
    let commit =
        |name: &'static str| writer.commit(vec![name.into()], Vec::new(), done(&log_tx, name));

    commit("a");
    assert_eq!(next(&log), ("a", Ok(())));
    fail.store(true, Ordering::SeqCst);
    commit("b");
    let (name, result) = next(&log);
    assert_eq!(name, "b");
    assert!(
        result.as_ref().is_err_and(|e| e.contains("injected")),
        "{result:?}"
    );
    assert!(writer.stats().failed);

    // The disk is fine again, but the journal is not trusted until a compaction.
    fail.store(false, Ordering::SeqCst);
    let appended = appends.load(Ordering::SeqCst);
    commit("c");
    writer.compact(
        || panic!("no state to give"),
        done(&log_tx, "panicked compaction"),
    );
    commit("d");
    for want in ["c", "panicked compaction", "d"] {
        let (name, result) = next(&log);
        assert_eq!(name, want);
        assert!(result.is_err(), "{name}: {result:?}");
    }
    assert_eq!(
        appends.load(Ordering::SeqCst),
        appended,
        "refused without touching the disk"
    );

    // The owner undoes b, c and d and hands over its state.
    writer.compact(|| b"state with a".to_vec(), done(&log_tx, "compaction"));
    commit("e");
    assert_eq!(next(&log), ("compaction", Ok(())));
    assert_eq!(next(&log), ("e", Ok(())));
    let stats = writer.stats();
    assert!(
        !stats.failed && stats.compactions == 1 && stats.commits == 2,
        "{stats:?}"
    );
    writer.shutdown();

    assert_eq!(
        reload(&dir),
        (Some(b"state with a".to_vec()), vec![b"e".to_vec()])
    );
}

#[test]
fn an_oversized_record_fails_its_commit_and_the_later_ones() {
    let dir = TempDir::new("toolarge");
    let writer = Writer::spawn(open_ok(&dir), None).expect("spawn");
    let (log_tx, log) = logger();
    writer.commit(vec![b"a".to_vec()], Vec::new(), done(&log_tx, "a"));
    writer.commit(
        vec![b"b".to_vec(), vec![0; MAX_RECORD + 1]],
        Vec::new(),
        done(&log_tx, "too large"),
    );
    writer.commit(vec![b"c".to_vec()], Vec::new(), done(&log_tx, "c"));
    writer.compact(|| b"a".to_vec(), done(&log_tx, "compaction"));
    writer.commit(vec![b"d".to_vec()], Vec::new(), done(&log_tx, "d"));
    assert_eq!(next(&log), ("a", Ok(())));
    for want in ["too large", "c"] {
        let (name, result) = next(&log);
        assert_eq!(name, want);
        assert!(
            result.as_ref().is_err_and(|e| e.contains("TooLarge")),
            "{result:?}"
        );
    }
    assert_eq!(next(&log), ("compaction", Ok(())));
    assert_eq!(next(&log), ("d", Ok(())));
    writer.shutdown();
    assert_eq!(reload(&dir), (Some(b"a".to_vec()), vec![b"d".to_vec()]));
}

#[test]
fn the_aux_file_follows_commits_and_rewrites_in_order() {
    let dir = TempDir::new("aux");
    let aux = dir.path().join("events.jsonl");
    let writer = Writer::spawn(open_ok(&dir), Some(aux.clone())).expect("spawn");
    let (log_tx, log) = logger();
    writer.commit(vec![b"1".to_vec()], b"one\n".to_vec(), done(&log_tx, "1"));
    writer.commit(vec![b"2".to_vec()], b"two\n".to_vec(), done(&log_tx, "2"));
    writer.rewrite_aux(b"two\n".to_vec());
    writer.commit(Vec::new(), b"three\n".to_vec(), done(&log_tx, "3"));
    for want in ["1", "2", "3"] {
        assert_eq!(next(&log), (want, Ok(())));
    }
    assert_eq!(fs::read(&aux).expect("read"), b"two\nthree\n");
    writer.shutdown();
    assert_eq!(reload(&dir).1, vec![b"1".to_vec(), b"2".to_vec()]);
}

#[test]
fn a_failed_aux_write_does_not_fail_the_commit() {
    let dir = TempDir::new("auxfull");
    // Every write to /dev/full fails with ENOSPC.
    let writer = Writer::spawn(open_ok(&dir), Some("/dev/full".into())).expect("spawn");
    let (log_tx, log) = logger();
    writer.commit(
        vec![b"kept".to_vec()],
        b"lost event\n".to_vec(),
        done(&log_tx, "kept"),
    );
    assert_eq!(next(&log), ("kept", Ok(())));
    assert!(!writer.stats().failed);
    writer.shutdown();
    assert_eq!(reload(&dir).1, vec![b"kept".to_vec()]);
}

#[test]
fn shutdown_drains_the_queue_and_callbacks_cannot_stop_the_writer() {
    let dir = TempDir::new("shutdown");
    let writer = Writer::spawn(open_ok(&dir), None).expect("spawn");
    let (log_tx, log) = logger();
    writer.commit(vec![b"1".to_vec()], Vec::new(), |_| {
        panic!("a careless callback")
    });
    for name in ["2", "3"] {
        writer.commit(vec![name.into()], Vec::new(), done(&log_tx, name));
    }
    writer.shutdown();
    let ran: Vec<_> = log.try_iter().collect();
    assert_eq!(ran, [("2", Ok(())), ("3", Ok(()))]);
    assert_eq!(reload(&dir).1.len(), 3);
}

#[test]
fn the_handle_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Writer>();
}
