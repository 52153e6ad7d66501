//! The two files: loading them, appending and syncing frames, and compacting the journal into a
//! new snapshot. The format and the crash guarantees are in the [module docs](super).

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, BufReader, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::{StoreError, crc32c};

/// The largest journal record, in bytes. Loading refuses a longer length field before
/// allocating anything, so a corrupt one cannot ask for gigabytes.
pub const MAX_RECORD: usize = 1 << 20;

const SNAPSHOT: &str = "snapshot";
const JOURNAL: &str = "journal";
const SNAPSHOT_MAGIC: [u8; 8] = *b"PFWDSNAP";
const SNAPSHOT_VERSION: u32 = 1;
/// Magic, version, checksum, sequence number, length.
const SNAPSHOT_HEADER: usize = 8 + 4 + 4 + 8 + 8;
/// Length, checksum, sequence number.
const FRAME_HEADER: usize = 4 + 4 + 8;
/// Zeros written past the journal's end at a time, for the frames that follow (see
/// [`Journal::append`]).
const PREALLOCATE: u64 = 256 * 1024;

/// What [`open`] read back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The last snapshot's state, if one was ever written.
    pub snapshot: Option<Vec<u8>>,
    /// The journal's records after the snapshot, oldest first: apply them to the snapshot's
    /// state in this order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of a torn or corrupt journal tail, cut off the file: at most the records a crash
    /// interrupted before they were acknowledged, or damage worth reporting if more. Counted to
    /// the tail's last byte that is not zero: the zeros after it were written ahead for frames
    /// to come (see [`Journal::append`]).
    pub dropped_bytes: u64,
}

/// The open journal of a store directory: appends frames and replaces the snapshot.
///
/// After a failed write or sync it refuses appends ([`StoreError::Broken`]) until a
/// [`compact`](Self::compact) succeeds; the module docs say why.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// End of the last frame written.
    len: u64,
    /// End of the last frame a sync covered.
    synced: u64,
    /// End of the zeros written for the frames to come: the file's size.
    allocated: u64,
    /// `None`: the last sequence number is `u64::MAX`, so no frame can follow (counting never
    /// gets there; only a damaged store with a valid checksum does).
    next_seq: Option<u64>,
    broken: bool,
    /// Reused so that an append allocates nothing in the steady state.
    frame: Vec<u8>,
}

/// Opens the store in `dir` (created with mode 0700 if missing) and loads it: the snapshot,
/// then the journal's frames up to the first torn or corrupt one, where the file is cut.
pub fn open(dir: &Path) -> Result<(Journal, Loaded), StoreError> {
    create_dir(dir)?;
    let tmp = temporary(&dir.join(SNAPSHOT));
    if let Err(err) = fs::remove_file(&tmp)
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {err}", tmp.display());
    }
    let snapshot_path = dir.join(SNAPSHOT);
    let (snapshot_seq, snapshot) = match read_snapshot(&snapshot_path)? {
        Some((seq, state)) => (seq, Some(state)),
        None => (0, None),
    };

    let path = dir.join(JOURNAL);
    let read_error = |source| StoreError::Read {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(read_error)?;
    // The journal may have just been created: make its name durable before anything in it is.
    sync_dir(dir)?;
    let size = file.metadata().map_err(read_error)?.len();
    let scan = scan(&file, size, snapshot_seq).map_err(read_error)?;
    if let Some(first) = scan.first
        && first > snapshot_seq.saturating_add(1)
    {
        return Err(StoreError::Gap {
            path,
            first,
            snapshot: snapshot_seq,
        });
    }
    let last = scan.last.unwrap_or(0);
    // Only frames the snapshot includes: a crash cut a compaction short before it emptied the
    // journal. Finish it, or the next append would not follow on from the last frame.
    let keep = if last <= snapshot_seq { 0 } else { scan.end };
    // Zeros after the last frame were written for the frames to come: they are no damage,
    // and stay if nothing else follows the frames.
    let tail = nonzero_end(&file, scan.end, size).map_err(read_error)? - scan.end;
    let allocated = if keep == scan.end && tail == 0 {
        size
    } else {
        keep
    };
    if allocated < size {
        file.set_len(keep)
            .and_then(|()| file.sync_all())
            .map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
    }

    let journal = Journal {
        dir: dir.to_owned(),
        path,
        file,
        len: keep,
        synced: keep,
        allocated,
        next_seq: last.max(snapshot_seq).checked_add(1),
        broken: false,
        frame: Vec::new(),
    };
    let loaded = Loaded {
        snapshot,
        records: scan.records,
        dropped_bytes: tail,
    };
    Ok((journal, loaded))
}

impl Journal {
    /// Writes `payload` as the next frame and returns its sequence number. It is durable only
    /// after the next [`sync`](Self::sync).
    ///
    /// Frames overwrite zeros written beforehand, [`PREALLOCATE`] bytes at a time: a sync then
    /// has only the data to write. An append that grows the file also changes its size, and
    /// `fdatasync` writes that too, through the file system's journal (on ext4 a second
    /// commit and cache flush). A hole or an `fallocate`d range would not do: writing into
    /// either changes the file's block map, which the sync must write as well.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        if self.broken {
            return Err(StoreError::Broken);
        }
        let len = record_len(payload)?;
        // A second frame with the last number would never be read back.
        let seq = self.next_seq.ok_or(StoreError::Exhausted)?;
        self.frame.clear();
        self.frame.extend_from_slice(&len.to_le_bytes());
        self.frame
            .extend_from_slice(&frame_crc(len, seq, payload).to_le_bytes());
        self.frame.extend_from_slice(&seq.to_le_bytes());
        self.frame.extend_from_slice(payload);
        let end = self.len + self.frame.len() as u64;
        if let Err(source) = self
            .preallocate(end)
            .and_then(|()| self.file.write_all_at(&self.frame, self.len))
        {
            self.fail();
            return Err(StoreError::Write {
                path: self.path.clone(),
                source,
            });
        }
        self.len = end;
        self.next_seq = seq.checked_add(1);
        Ok(seq)
    }

    /// Writes zeros up to `end` and [`PREALLOCATE`] bytes past it, if the file ends before.
    fn preallocate(&mut self, end: u64) -> io::Result<()> {
        if end <= self.allocated {
            return Ok(());
        }
        let target = end + PREALLOCATE;
        let zeros = vec![0; usize::try_from(target - self.allocated).unwrap_or(usize::MAX)];
        self.file.write_all_at(&zeros, self.allocated)?;
        self.allocated = target;
        Ok(())
    }

    /// Makes every frame appended so far durable (`fdatasync(2)`; it writes the file's size
    /// too when an append grew it).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.broken {
            return Err(StoreError::Broken);
        }
        if let Err(source) = self.file.sync_data() {
            self.fail();
            return Err(StoreError::Sync {
                path: self.path.clone(),
                source,
            });
        }
        self.synced = self.len;
        Ok(())
    }

    /// Makes `snapshot` the state that includes every record appended so far, and starts the
    /// journal again empty. This is also what makes a broken journal usable again.
    pub fn compact(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        let seq = self.next_seq.map_or(u64::MAX, |next| next - 1);
        // On failure the old snapshot and the whole journal are still there.
        write_snapshot(&self.dir, seq, snapshot)?;
        // From here every frame in the journal is at or below the snapshot's sequence number,
        // so loading skips them whether or not the truncation reaches the disk.
        if let Err(source) = self.file.set_len(0).and_then(|()| self.file.sync_all()) {
            // The file's end is unknown: appending could leave a gap in the sequence numbers.
            self.broken = true;
            return Err(StoreError::Write {
                path: self.path.clone(),
                source,
            });
        }
        self.len = 0;
        self.synced = 0;
        self.allocated = 0;
        self.broken = false;
        Ok(())
    }

    /// The journal's size in bytes, for deciding when to compact.
    #[must_use]
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// After a failed write or sync: refuse appends until a compaction, and cut off the frames
    /// no sync covered so that the failed records do not come back after a crash (the
    /// truncation can fail too; then loading may bring them back).
    fn fail(&mut self) {
        self.broken = true;
        match self
            .file
            .set_len(self.synced)
            .and_then(|()| self.file.sync_data())
        {
            Ok(()) => {
                self.len = self.synced;
                self.allocated = self.synced;
            }
            Err(err) => tracing::warn!(
                "cannot cut unsynced frames off {}: {err}",
                self.path.display()
            ),
        }
    }
}

/// The end of the last byte of `file` between `from` and `to` that is not zero; `from` if
/// there is none.
fn nonzero_end(file: &File, from: u64, to: u64) -> io::Result<u64> {
    let mut buf = vec![0; 64 * 1024];
    let mut at = from;
    let mut end = from;
    while at < to {
        let want = usize::try_from(to - at).map_or(buf.len(), |left| left.min(buf.len()));
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            break;
        }
        if let Some(last) = buf[..n].iter().rposition(|&b| b != 0) {
            end = at + last as u64 + 1;
        }
        at += n as u64;
    }
    Ok(end)
}

/// The little-endian u32 at the start of `bytes` (callers pass enough).
fn le_u32(bytes: &[u8]) -> u32 {
    let mut int = [0; 4];
    int.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(int)
}

/// The little-endian u64 at the start of `bytes` (callers pass enough).
fn le_u64(bytes: &[u8]) -> u64 {
    let mut int = [0; 8];
    int.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(int)
}

fn record_len(payload: &[u8]) -> Result<u32, StoreError> {
    match u32::try_from(payload.len()) {
        Ok(len) if payload.len() <= MAX_RECORD => Ok(len),
        _ => Err(StoreError::TooLarge { len: payload.len() }),
    }
}

fn frame_crc(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let crc = crc32c::update(0, &len.to_le_bytes());
    let crc = crc32c::update(crc, &seq.to_le_bytes());
    crc32c::update(crc, payload)
}

/// The journal's good frames.
struct Scan {
    /// Payloads of the frames after `skip_through`.
    records: Vec<Vec<u8>>,
    /// End of the last good frame.
    end: u64,
    first: Option<u64>,
    last: Option<u64>,
}

/// Reads frames while they are whole, their checksum holds and their sequence numbers follow on.
fn scan(file: &File, size: u64, skip_through: u64) -> io::Result<Scan> {
    let mut reader = BufReader::new(file);
    let mut scan = Scan {
        records: Vec::new(),
        end: 0,
        first: None,
        last: None,
    };
    let mut header = [0; FRAME_HEADER];
    loop {
        let left = size - scan.end;
        if left < FRAME_HEADER as u64 {
            break;
        }
        reader.read_exact(&mut header)?;
        let len = le_u32(&header);
        let crc = le_u32(&header[4..]);
        let seq = le_u64(&header[8..]);
        // Checked before the payload is allocated.
        let whole = u64::from(len) <= left - FRAME_HEADER as u64;
        let follows = scan
            .last
            .map_or(seq >= 1, |last| Some(seq) == last.checked_add(1));
        if !whole || len as usize > MAX_RECORD || !follows {
            break;
        }
        let mut payload = vec![0; len as usize];
        reader.read_exact(&mut payload)?;
        if frame_crc(len, seq, &payload) != crc {
            break;
        }
        scan.first.get_or_insert(seq);
        scan.last = Some(seq);
        scan.end += (FRAME_HEADER + payload.len()) as u64;
        if seq > skip_through {
            scan.records.push(payload);
        }
    }
    Ok(scan)
}

/// The snapshot's sequence number and state, `None` if there is no snapshot.
fn read_snapshot(path: &Path) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let mut bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let bad = |problem| StoreError::BadSnapshot {
        path: path.to_owned(),
        problem,
    };
    let Some((header, rest)) = bytes.split_first_chunk::<SNAPSHOT_HEADER>() else {
        return Err(bad("shorter than its header"));
    };
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(bad("not a portfwd snapshot"));
    }
    if le_u32(&header[8..]) != SNAPSHOT_VERSION {
        return Err(bad("unknown format version"));
    }
    let crc = le_u32(&header[12..]);
    let seq = le_u64(&header[16..]);
    if le_u64(&header[24..]) != rest.len() as u64 {
        return Err(bad("length does not match the file"));
    }
    if crc32c::update(crc32c::update(0, &header[16..]), rest) != crc {
        return Err(bad("checksum mismatch"));
    }
    bytes.drain(..SNAPSHOT_HEADER);
    Ok(Some((seq, bytes)))
}

/// Replaces the snapshot with `state` that includes the records up to `seq`.
pub(super) fn write_snapshot(dir: &Path, seq: u64, state: &[u8]) -> Result<(), StoreError> {
    let mut header = [0; SNAPSHOT_HEADER];
    header[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..].copy_from_slice(&(state.len() as u64).to_le_bytes());
    let crc = crc32c::update(crc32c::update(0, &header[16..]), state);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    replace_file(&dir.join(SNAPSHOT), &[&header, state])
}

/// Replaces `path` with `parts` atomically: a temporary file in the same directory, `fsync`,
/// `rename(2)` over the old one (atomic within a file system), `fsync` of the directory so that
/// the rename itself survives a power cut. An error after the rename is only ever the
/// directory's sync: the caller cannot know whether the new file will survive a crash.
pub(super) fn replace_file(path: &Path, parts: &[&[u8]]) -> Result<(), StoreError> {
    let tmp = temporary(path);
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    if let Err(source) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Write {
            path: path.to_owned(),
            source,
        });
    }
    sync_dir(parent(path))
}

fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    parent(path).join(format!(".{name}.tmp"))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    sync_dir(parent(dir))
}

/// `fsync(2)` of a directory makes the names created or renamed in it durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| StoreError::Sync {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
