//! The state directory as a restarted daemon finds it: `store::open` on any `snapshot` and
//! `journal` bytes, then `table::load` (the snapshot's and the records' JSON) and
//! `Table::restore` of what it read. Round trips: opening again reads the same (with nothing
//! more cut off); records appended and synced read back after them; a compaction reads back as
//! its snapshot alone; every journal record that decodes encodes to the same record.
//!
//! Input: a byte of flags, the snapshot's length (u16, little-endian; 0xFFFF: no snapshot file),
//! the snapshot, then the journal. A fuzzer cannot forge CRC32Cs, so with flag bit 0 the
//! target writes the right checksum into every frame header it walks through, and with bit 1
//! into the snapshot's header, before the files are written: the checks pass and the rest of
//! the format (lengths, sequence numbers, the JSON) is what gets fuzzed.
#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use portfwd::{
    state::StateDir,
    store,
    table::{self, Record},
};

/// This process's state directory.
fn state_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| portfwd_fuzz::scratch_dir("store"))
}

fuzz_target!(|data: &[u8]| {
    let [flags, a, b, rest @ ..] = data else {
        return;
    };
    let len = u16::from_le_bytes([*a, *b]);
    let (mut snapshot, mut journal) = if len == u16::MAX {
        (None, rest.to_vec())
    } else {
        let len = usize::from(len).min(rest.len());
        (Some(rest[..len].to_vec()), rest[len..].to_vec())
    };
    if flags & 1 != 0 {
        fix_frames(&mut journal);
    }
    if flags & 2 != 0
        && let Some(snapshot) = &mut snapshot
    {
        fix_snapshot(snapshot);
    }
    let journal = journal.as_slice();
    let dir = state_dir().join(table::STORE);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("store directory");
    if let Some(snapshot) = &snapshot {
        std::fs::write(dir.join("snapshot"), snapshot).expect("snapshot");
    }
    std::fs::write(dir.join("journal"), journal).expect("journal");

    let Ok((mut writer, loaded)) = store::open(&dir) else {
        return;
    };
    assert!(loaded.dropped_bytes <= journal.len() as u64);
    assert!(
        loaded.records.iter().all(|r| r.len() <= store::MAX_RECORD),
        "a record over the limit was read"
    );
    // Appended and synced records come back after those already there.
    let appended: Vec<Vec<u8>> = loaded
        .records
        .iter()
        .take(2)
        .cloned()
        .chain([br#"{"op":"static","id":"tcp:80","enabled":true}"#.to_vec()])
        .collect();
    let mut written = Vec::new();
    for record in appended {
        match writer.append(&record) {
            Ok(_) => written.push(record),
            // The last sequence number was taken (a damaged store): nothing can follow.
            Err(store::StoreError::Exhausted) => break,
            Err(err) => panic!("append: {err}"),
        }
    }
    writer.sync().expect("sync");
    drop(writer);
    let (writer, again) = store::open(&dir).expect("open again");
    assert_eq!(again.snapshot, loaded.snapshot);
    assert_eq!(again.dropped_bytes, 0, "the first open left a torn tail");
    let mut expected = loaded.records.clone();
    expected.extend(written);
    assert_eq!(again.records, expected);
    drop(writer);

    // The records as the table reads them, and the state put back into a table.
    for bytes in &again.records {
        if let Ok(record) = serde_json::from_slice::<Record>(bytes) {
            let encoded = serde_json::to_vec(&record).expect("encode");
            let back: Record = serde_json::from_slice(&encoded).expect("decode");
            assert_eq!(back, record);
        }
    }
    let state = StateDir::open(state_dir()).expect("state directory");
    if let Ok((mut writer, found)) = table::load(&state, false) {
        let mut t = portfwd_fuzz::table(portfwd::policy::Settings::default());
        t.restore(found.saved);
        // A compaction is read back as its snapshot, with an empty journal.
        let state_bytes = again.snapshot.clone().unwrap_or_default();
        writer.compact(&state_bytes).expect("compact");
        drop(writer);
        let (_, compacted) = store::open(&dir).expect("open after compaction");
        assert_eq!(compacted.snapshot.as_deref(), Some(state_bytes.as_slice()));
        assert!(compacted.records.is_empty());
    }
});

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: the store's checksum.
fn crc32c(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Writes the right checksum into each whole frame (length u32, CRC u32, sequence number u64,
/// payload; the CRC covers length, sequence number and payload).
fn fix_frames(journal: &mut [u8]) {
    let mut at = 0;
    while journal.len() - at >= 16 {
        let len = u32::from_le_bytes(journal[at..at + 4].try_into().expect("4 bytes")) as usize;
        if journal.len() - at - 16 < len {
            break;
        }
        let crc = crc32c(
            crc32c(crc32c(0, &journal[at..at + 4]), &journal[at + 8..at + 16]),
            &journal[at + 16..at + 16 + len],
        );
        journal[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at += 16 + len;
    }
}

/// Writes the right checksum into the snapshot's header (magic, version u32, CRC u32, sequence
/// number u64, length u64; the CRC covers everything after itself).
fn fix_snapshot(snapshot: &mut [u8]) {
    if snapshot.len() >= 32 {
        let crc = crc32c(0, &snapshot[16..]);
        snapshot[12..16].copy_from_slice(&crc.to_le_bytes());
    }
}
