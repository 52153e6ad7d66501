//! Durable changes in O(1): a snapshot plus an append-only journal, written by a dedicated
//! thread with group commit.
//!
//! Rewriting the whole state file for every change costs what the table holds, not what the
//! change touches. Here a change costs one journal frame; from time to time the owner hands over
//! its full state as a new snapshot and the journal starts again empty (sqlite's write-ahead
//! log and its checkpoint, <https://sqlite.org/wal.html>). The owner (a tokio task) never waits
//! on a disk: it hands records to the [`Writer`] thread and is called back once they are
//! durable. Commits that queue while a sync is in progress share the next one (group commit, as
//! in Postgres, where one WAL flush serves every backend waiting on it), so a burst of N
//! changes costs two syncs, not N.
//!
//! # On disk
//!
//! The store's directory (mode 0700) holds two files; integers are little-endian and checksums
//! are CRC32C (Castagnoli, RFC 3720 §B.4).
//!
//! * `snapshot`: a 32-byte header, then the owner's state as opaque bytes. The header is the
//!   magic `PFWDSNAP`, the format version (u32, 1), the CRC32C of the rest of the file (u32), the
//!   sequence number of the last journal record the snapshot includes (u64) and the length of the
//!   state (u64). It is replaced atomically: a temporary file in the same directory, `fsync`,
//!   `rename(2)` over the old one, `fsync` of the directory.
//! * `journal`: frames, back to back, from offset 0, then zeros. A frame is the payload's length
//!   (u32, at most [`MAX_RECORD`]), the CRC32C of the length, sequence number and payload (u32),
//!   the sequence number (u64, one more than the previous frame's) and the payload. The zeros
//!   are written ahead (256 KiB at a time), and frames overwrite them: `fdatasync(2)` then writes
//!   the frames alone, where an append that grew the file would have it write the new size
//!   through the file system's journal as well (an ext4 journal commit: 255 µs a sync against
//!   180 µs on the development machine's disk). An all-zero header is no frame (sequence numbers
//!   start at 1), so the zeros end the journal as the file's end does.
//!
//! # Crash guarantees
//!
//! * A commit acknowledged as durable survives a crash or power cut: its frames were written and
//!   `fdatasync`ed before its callback ran.
//! * A crash in the middle of an append leaves at worst a torn or corrupt last frame. Loading
//!   reads frames while they are whole, their checksum holds and their sequence numbers follow
//!   on; the first one that does not ends the journal, and the file is truncated to the end of
//!   the last good frame (the dropped bytes, to the last one that is not zero, are reported).
//!   Such a frame was never acknowledged.
//! * A crash during compaction leaves the old snapshot with the whole journal, or the new
//!   snapshot with some or all of the old journal: records the snapshot already includes
//!   (sequence number at or below its own) are skipped, never replayed twice.
//! * A damaged snapshot is an error ([`StoreError::BadSnapshot`]), never an empty state; so is a
//!   journal that starts after the snapshot ends ([`StoreError::Gap`]), which means records are
//!   missing (say, a deleted snapshot).
//! * After a failed write or sync the journal is not trusted again until a compaction has
//!   written a full snapshot: Linux may drop the dirty pages of a failed `fsync` and report
//!   success the next time (<https://wiki.postgresql.org/wiki/Fsync_Errors>), so a later sync
//!   proves nothing about the earlier records. The writer fails every commit until then
//!   ([`StoreError::NotDurable`]); the owner undoes those changes in order and compacts.
//!
//! A record the owner was told failed may still be on disk if the daemon crashes before that
//! compaction: the writer truncates a failed batch's frames away, but that can fail too.
//!
//! Frames carry no version: a future incompatible frame format uses a new file name, so an
//! older daemon never misreads it.

mod crc32c;
mod journal;
mod writer;

use std::{io, path::PathBuf, sync::Arc};

pub use journal::{Journal, Loaded, MAX_RECORD, open};
pub use writer::{Writer, WriterStats};

/// Why the store could not load or make a change durable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot sync {path}")]
    Sync {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Starting from an empty state instead would silently lose every share: the daemon
    /// reports this and leaves the files for a person to look at.
    #[error("snapshot {path} is damaged ({problem})")]
    BadSnapshot {
        path: PathBuf,
        problem: &'static str,
    },
    /// Replaying the journal without the records before it would build a state that never
    /// was (say, after the snapshot was deleted by hand).
    #[error(
        "journal {path} starts at record {first} but the snapshot ends at record {snapshot}: \
         records are missing"
    )]
    Gap {
        path: PathBuf,
        first: u64,
        snapshot: u64,
    },
    #[error("record of {len} bytes is over the limit of {MAX_RECORD} bytes")]
    TooLarge { len: usize },
    /// The journal failed earlier; only a compaction makes it usable again.
    #[error("journal unusable after an earlier failure until a compaction succeeds")]
    Broken,
    /// The commit was not made durable because the journal failed, in this commit's batch or
    /// earlier (the cause), and no compaction has succeeded since.
    #[error("not durable")]
    NotDurable {
        #[source]
        cause: Arc<StoreError>,
    },
    #[error("cannot start the store writer thread")]
    Spawn {
        #[source]
        source: io::Error,
    },
    /// The journal's last sequence number is `u64::MAX`: only a damaged store gets there.
    #[error("journal sequence numbers are used up (the store is damaged)")]
    Exhausted,
    #[error("snapshot maker panicked")]
    MakerPanicked,
    /// The writer thread is gone (it panicked); nothing more reaches the disk.
    #[error("store writer has stopped")]
    Stopped,
}

/// A fresh, empty directory under the system's temporary one, removed on drop.
#[cfg(test)]
struct TempDir(PathBuf);

#[cfg(test)]
impl TempDir {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("portfwd-store-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        Self(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
