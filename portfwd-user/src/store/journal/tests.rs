use std::fs;

use super::{FRAME_HEADER, Journal, Loaded, MAX_RECORD, PREALLOCATE, open, write_snapshot};
use crate::store::{StoreError, TempDir, crc32c};

/// A frame as the module docs describe it, written independently of the code under test.
fn frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("test payloads are small");
    let mut covered = Vec::new();
    covered.extend_from_slice(&len.to_le_bytes());
    covered.extend_from_slice(&seq.to_le_bytes());
    covered.extend_from_slice(payload);
    let mut frame = Vec::new();
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&crc32c::update(0, &covered).to_le_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn open_ok(dir: &TempDir) -> (Journal, Loaded) {
    open(dir.path()).unwrap_or_else(|err| panic!("open: {}", crate::error_chain(&err)))
}

fn journal_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("journal")
}

fn records(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|r| r.as_bytes().to_vec()).collect()
}

/// A deterministic stream of bytes (xorshift64*), so that a failure can be replayed.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

#[test]
fn appends_survive_reopening_in_order() {
    let dir = TempDir::new("roundtrip");
    let (mut journal, loaded) = open_ok(&dir);
    assert_eq!(loaded, Loaded::default());
    for (want, record) in (1..).zip(["one", "two", "three"]) {
        assert_eq!(journal.append(record.as_bytes()).expect("append"), want);
    }
    journal.sync().expect("sync");
    assert!(journal.len_bytes() <= fs::metadata(journal_path(&dir)).expect("metadata").len());
    drop(journal);

    let (mut journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.snapshot, None);
    assert_eq!(loaded.records, records(&["one", "two", "three"]));
    assert_eq!(loaded.dropped_bytes, 0);
    assert_eq!(
        journal.append(b"four").expect("append"),
        4,
        "numbering goes on"
    );
    // The format on disk is the documented one.
    let mut want = Vec::new();
    for (seq, record) in (1..).zip(["one", "two", "three", "four"]) {
        want.extend(frame(seq, record.as_bytes()));
    }
    // The format on disk is the documented one: the frames, then zeros written ahead.
    let bytes = fs::read(journal_path(&dir)).expect("read");
    assert_eq!(bytes[..want.len()], want);
    assert!(bytes[want.len()..].iter().all(|&b| b == 0));
}

#[test]
fn a_journal_cut_anywhere_in_its_last_record_keeps_the_ones_before() {
    let dir = TempDir::new("cut");
    let before = ["first", "second record", "third"];
    let mut whole = Vec::new();
    for (seq, record) in (1..).zip(before) {
        whole.extend(frame(seq, record.as_bytes()));
    }
    let good = whole.len();
    whole.extend(frame(4, b"the last record, torn"));

    for cut in good..whole.len() {
        fs::write(journal_path(&dir), &whole[..cut]).expect("write");
        let (mut journal, loaded) = open_ok(&dir);
        assert_eq!(loaded.records, records(&before), "cut at {cut}");
        // Counted to the last byte that is not zero (zeros are written ahead of frames).
        let torn = whole[good..cut]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        assert_eq!(loaded.dropped_bytes, torn as u64, "cut at {cut}");
        assert_eq!(journal.len_bytes(), good as u64);
        assert_eq!(
            fs::metadata(journal_path(&dir)).expect("metadata").len(),
            good as u64,
            "the torn tail is cut off the file"
        );
        assert_eq!(journal.append(b"after").expect("append"), 4);
        journal.sync().expect("sync");
        drop(journal);
        let (_, loaded) = open_ok(&dir);
        assert_eq!(
            loaded.records,
            records(&["first", "second record", "third", "after"]),
            "cut at {cut}"
        );
        assert_eq!(loaded.dropped_bytes, 0);
    }
}

#[test]
fn a_flipped_byte_in_the_last_frame_drops_just_that_record() {
    let dir = TempDir::new("flip");
    let mut whole = frame(1, b"kept");
    let last = whole.len();
    whole.extend(frame(2, b"damaged payload"));
    for at in last..whole.len() {
        let mut damaged = whole.clone();
        damaged[at] ^= 0x20;
        fs::write(journal_path(&dir), &damaged).expect("write");
        let (journal, loaded) = open_ok(&dir);
        assert_eq!(loaded.records, records(&["kept"]), "byte {at} flipped");
        assert_eq!(loaded.dropped_bytes, (whole.len() - last) as u64);
        assert_eq!(journal.len_bytes(), last as u64);
    }
}

#[test]
fn compaction_leaves_the_snapshot_and_later_records() {
    let dir = TempDir::new("compact");
    let (mut journal, _) = open_ok(&dir);
    journal.append(b"a").expect("append");
    journal.append(b"b").expect("append");
    journal.sync().expect("sync");
    journal.compact(b"state with a and b").expect("compact");
    assert_eq!(journal.len_bytes(), 0);
    assert_eq!(fs::metadata(journal_path(&dir)).expect("metadata").len(), 0);
    assert_eq!(journal.append(b"c").expect("append"), 3);
    journal.sync().expect("sync");
    drop(journal);

    let (mut journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"state with a and b"[..]));
    assert_eq!(loaded.records, records(&["c"]));
    assert_eq!(journal.append(b"d").expect("append"), 4);
    assert!(
        fs::read_dir(dir.path())
            .expect("read dir")
            .all(|entry| !entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")),
        "no temporary file is left behind"
    );
}

#[test]
fn records_a_snapshot_includes_are_not_replayed_after_a_crash_in_compaction() {
    let dir = TempDir::new("crash");
    let (mut journal, _) = open_ok(&dir);
    for record in ["r1", "r2", "r3"] {
        journal.append(record.as_bytes()).expect("append");
    }
    journal.sync().expect("sync");
    // The snapshot of a compaction that got as far as the rename, not the truncation.
    write_snapshot(dir.path(), 2, b"state up to r2").expect("snapshot");
    journal.append(b"r4").expect("append");
    journal.sync().expect("sync");
    drop(journal);

    let (journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"state up to r2"[..]));
    assert_eq!(loaded.records, records(&["r3", "r4"]));
    assert_eq!(loaded.dropped_bytes, 0);
    drop(journal);

    // A snapshot that includes every frame: loading finishes the compaction.
    write_snapshot(dir.path(), 4, b"state up to r4").expect("snapshot");
    let (mut journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, Vec::<Vec<u8>>::new());
    assert_eq!(journal.len_bytes(), 0);
    assert_eq!(journal.append(b"r5").expect("append"), 5);
    journal.sync().expect("sync");
    drop(journal);
    let (_, loaded) = open_ok(&dir);
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"state up to r4"[..]));
    assert_eq!(loaded.records, records(&["r5"]));
}

#[test]
fn a_damaged_snapshot_is_an_error_not_an_empty_state() {
    let dir = TempDir::new("badsnap");
    let (mut journal, _) = open_ok(&dir);
    journal.append(b"a").expect("append");
    journal.compact(b"the whole state").expect("compact");
    drop(journal);
    let path = dir.path().join("snapshot");
    let good = fs::read(&path).expect("read");

    let mut flipped = good.clone();
    *flipped.last_mut().expect("last byte") ^= 1;
    let cases = [
        (flipped, "checksum mismatch"),
        (
            good[..good.len() - 1].to_vec(),
            "length does not match the file",
        ),
        (good[..10].to_vec(), "shorter than its header"),
        (b"{\"shares\": []}".repeat(3), "not a portfwd snapshot"),
    ];
    for (bytes, want) in cases {
        fs::write(&path, bytes).expect("write");
        match open(dir.path()) {
            Err(StoreError::BadSnapshot { problem, .. }) => assert_eq!(problem, want),
            other => panic!("{want}: {other:?}"),
        }
    }
}

#[test]
fn a_journal_that_starts_after_the_snapshot_is_an_error() {
    let dir = TempDir::new("gap");
    let (mut journal, _) = open_ok(&dir);
    journal.append(b"a").expect("append");
    journal.compact(b"state").expect("compact");
    journal.append(b"b").expect("append");
    journal.sync().expect("sync");
    drop(journal);
    fs::remove_file(dir.path().join("snapshot")).expect("remove");
    match open(dir.path()) {
        Err(StoreError::Gap {
            first: 2,
            snapshot: 0,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn random_bytes_load_up_to_the_first_bad_frame() {
    let dir = TempDir::new("noise");
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let good = [frame(1, b"one"), frame(2, b"two")].concat();
    for round in 0..40 {
        let len = usize::try_from(noise.next() % 600).expect("fits");
        // Half the rounds behind good frames, half alone.
        let prefix: &[u8] = if round % 2 == 0 { &good } else { &[] };
        let mut bytes = prefix.to_vec();
        bytes.extend(noise.bytes(len));
        fs::write(journal_path(&dir), &bytes).expect("write");

        let (journal, loaded) = open_ok(&dir);
        let want = if prefix.is_empty() {
            Vec::new()
        } else {
            records(&["one", "two"])
        };
        assert_eq!(loaded.records, want, "round {round}");
        assert_eq!(loaded.dropped_bytes, len as u64, "round {round}");
        assert_eq!(journal.len_bytes(), prefix.len() as u64);
        assert_eq!(fs::read(journal_path(&dir)).expect("read"), prefix);
    }
}

#[test]
fn an_oversized_length_is_refused() {
    let dir = TempDir::new("oversized");
    // A whole frame over the limit with a good checksum: only the bound refuses it.
    let over = vec![b'x'; MAX_RECORD + 1];
    let bytes = [frame(1, b"small"), frame(2, &over)].concat();
    fs::write(journal_path(&dir), &bytes).expect("write");
    let (mut journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, records(&["small"]));
    assert_eq!(loaded.dropped_bytes, (FRAME_HEADER + over.len()) as u64);

    // Nor can the journal write one; the refusal does not break it.
    match journal.append(&over) {
        Err(StoreError::TooLarge { len }) => assert_eq!(len, MAX_RECORD + 1),
        other => panic!("{other:?}"),
    }
    let at_limit = vec![b'y'; MAX_RECORD];
    assert_eq!(journal.append(&at_limit).expect("append"), 2);
    journal.sync().expect("sync");
    drop(journal);
    let (_, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, vec![b"small".to_vec(), at_limit]);

    // A length field of 4 GiB in a 20-byte file.
    let mut huge = frame(1, b"abcd");
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(journal_path(&dir), &huge).expect("write");
    let (_, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, Vec::<Vec<u8>>::new());
    assert_eq!(loaded.dropped_bytes, huge.len() as u64);
}

#[test]
fn the_directory_is_created_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("mode");
    let nested = dir.path().join("store");
    open(&nested).expect("open");
    let mode = fs::metadata(&nested)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_failed_write_breaks_the_journal_until_a_compaction() {
    let dir = TempDir::new("broken");
    let (mut journal, _) = open_ok(&dir);
    journal.append(b"a").expect("append");
    journal.sync().expect("sync");
    // Writes to a read-only descriptor fail with EBADF.
    let writable = std::mem::replace(
        &mut journal.file,
        fs::File::open(journal_path(&dir)).expect("open read-only"),
    );
    match journal.append(b"b") {
        Err(StoreError::Write { .. }) => {}
        other => panic!("{other:?}"),
    }
    journal.file = writable;
    // The disk works again; the journal still refuses until a full snapshot.
    assert!(matches!(journal.append(b"c"), Err(StoreError::Broken)));
    assert!(matches!(journal.sync(), Err(StoreError::Broken)));
    journal.compact(b"state with a").expect("compact");
    assert_eq!(
        journal.append(b"d").expect("append"),
        2,
        "a failed append takes no number"
    );
    journal.sync().expect("sync");
    drop(journal);
    let (_, loaded) = open_ok(&dir);
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"state with a"[..]));
    assert_eq!(loaded.records, records(&["d"]));
}

#[test]
fn a_failure_cuts_off_the_frames_no_sync_covered() {
    let dir = TempDir::new("rollback");
    let (mut journal, _) = open_ok(&dir);
    journal.append(b"synced").expect("append");
    journal.sync().expect("sync");
    journal.append(b"not acknowledged").expect("append");
    journal.fail();
    assert_eq!(journal.len_bytes(), frame(1, b"synced").len() as u64);
    drop(journal);
    let (_, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, records(&["synced"]));
    assert_eq!(loaded.dropped_bytes, 0);
}

#[test]
fn the_last_sequence_number_is_followed_by_none() {
    // Found by the store fuzz target: after a frame (checksum and all) numbered u64::MAX, the
    // next append wrote a second frame with that number, which is never read back, and the
    // counter overflowed.
    let dir = TempDir::new("seq-limit");
    write_snapshot(dir.path(), u64::MAX - 2, b"{}").expect("snapshot");
    let mut bytes = frame(u64::MAX - 1, b"one");
    bytes.extend(frame(u64::MAX, b"two"));
    fs::write(journal_path(&dir), &bytes).expect("journal");
    let (mut journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, records(&["one", "two"]));
    assert!(matches!(
        journal.append(b"three"),
        Err(StoreError::Exhausted)
    ));
    drop(journal);
    assert_eq!(open_ok(&dir).1.records, records(&["one", "two"]));

    // One short of it, the last number is still given out, then none.
    let dir = TempDir::new("seq-last");
    write_snapshot(dir.path(), u64::MAX - 2, b"{}").expect("snapshot");
    fs::write(journal_path(&dir), frame(u64::MAX - 1, b"one")).expect("journal");
    let (mut journal, _) = open_ok(&dir);
    assert_eq!(journal.append(b"two").expect("append"), u64::MAX);
    assert!(matches!(
        journal.append(b"three"),
        Err(StoreError::Exhausted)
    ));
    journal.sync().expect("sync");
    drop(journal);
    assert_eq!(open_ok(&dir).1.records, records(&["one", "two"]));

    // A snapshot at the last number: nothing can follow it either, and compaction keeps it.
    let dir = TempDir::new("seq-snapshot");
    write_snapshot(dir.path(), u64::MAX, b"{}").expect("snapshot");
    let (mut journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"{}"[..]));
    assert!(matches!(journal.append(b"x"), Err(StoreError::Exhausted)));
    journal.compact(b"{}").expect("compact");
}

#[test]
fn frames_go_into_zeros_written_ahead_which_reopening_keeps() {
    let dir = TempDir::new("prealloc");
    let size = || fs::metadata(journal_path(&dir)).expect("metadata").len();
    let (mut journal, _) = open_ok(&dir);
    journal.append(b"one").expect("append");
    journal.sync().expect("sync");
    let allocated = size();
    assert!(
        allocated >= PREALLOCATE,
        "{allocated} bytes: no zeros written ahead"
    );
    journal.append(b"two").expect("append");
    journal.sync().expect("sync");
    assert_eq!(
        size(),
        allocated,
        "an append into the zeros keeps the file's size"
    );
    drop(journal);

    let (mut journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, records(&["one", "two"]));
    assert_eq!(loaded.dropped_bytes, 0, "the zeros are no damage");
    let end = frame(1, b"one").len() + frame(2, b"two").len();
    assert_eq!(journal.len_bytes(), end as u64);
    assert_eq!(size(), allocated, "reopening keeps the zeros");
    assert_eq!(journal.append(b"three").expect("append"), 3);
    journal.sync().expect("sync");
    drop(journal);
    let (_, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, records(&["one", "two", "three"]));

    // A frame torn inside the zeros: the bytes it got are dropped, the frames before kept.
    let torn = frame(4, b"torn");
    let at = (end + frame(3, b"three").len()) as u64;
    let file = fs::OpenOptions::new()
        .write(true)
        .open(journal_path(&dir))
        .expect("open");
    std::os::unix::fs::FileExt::write_all_at(&file, &torn[..10], at).expect("write");
    drop(file);
    let (journal, loaded) = open_ok(&dir);
    assert_eq!(loaded.records, records(&["one", "two", "three"]));
    let written = torn[..10].iter().rposition(|&b| b != 0).expect("bytes") + 1;
    assert_eq!(loaded.dropped_bytes, written as u64);
    assert_eq!(
        size(),
        at,
        "the torn tail and the zeros after it are cut off"
    );
    assert_eq!(journal.len_bytes(), at);
}
