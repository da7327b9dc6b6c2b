//! RocksDB's MANIFEST after a power cut: a record torn at its tail is set aside and cut off
//! before a writer opens, instead of making the ledger unopenable.
//!
//! RocksDB appends an edit (a flush, a compaction, an ingested snapshot table) to the
//! MANIFEST and syncs it before the edit takes effect; a power cut during that sync can
//! leave the file's new size on disk without all of its data (ext4 commits the size with
//! another file's fsync; the blocks not written read as zeros). RocksDB then refuses to open
//! ("checksum mismatch ... MANIFEST may be corrupted"): it treats any unreadable manifest
//! record as damage, the last one too. Seen once in the power-loss tests (2026-12-03,
//! state `583:110110` of the snapshot test); the same file-system behaviour reproduced with
//! `outagefs` on a plain file: unsynced appends came back as the new size with zeros.
//!
//! The MANIFEST has the write-ahead log's record format, so `wal::check_reader` finds where
//! it stops being readable, and whether whole records follow (damage). A tear by a power
//! cut has one more mark: the file ends in zeros from a sector boundary inside the torn
//! record (sectors whose size reached the disk and whose data did not). Such an edit's sync
//! never finished, so nothing relied on it: the operation it recorded is redone from what is
//! durable (a flush's events are still in the write-ahead log; a snapshot whose table was
//! not taken in has no header). The writer copies the file aside whole
//! (`torn-MANIFEST-NNNNNN-at-OFFSET`), then cuts the tail off and syncs. Anything else
//! unreadable, a flipped byte in the last edit included (it was synced, and RocksDB may
//! have deleted the logs it replaced), is damage, left for RocksDB to refuse as before.
//!
//! A reader writes nothing, so it cannot cut; `torn_tail` finds the tear without changing
//! anything, and a reader refused by RocksDB uses it to say what happened and what to run
//! (`Store::open_with_recovery`): an operational step, not damage.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::wal::{self, LogEnd};

/// Where a torn MANIFEST was copied before its tail was cut off, and at which byte.
#[derive(Debug, PartialEq, Eq)]
pub struct TornManifest {
    /// The copy of the whole file, kept beside the ledger.
    pub copy: PathBuf,
    /// The length the MANIFEST was cut to: where its first unreadable record began.
    pub offset: u64,
}

/// A MANIFEST whose last record was torn by a power cut (see the module docs), found by
/// `torn_tail` and not yet cut.
#[derive(Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The MANIFEST that `CURRENT` names.
    pub path: PathBuf,
    /// Where its first unreadable record begins.
    pub offset: u64,
    /// Why that record does not read.
    pub reason: String,
}

/// Checks the MANIFEST that `CURRENT` names in `dir`, changing nothing: its tail torn by a
/// power cut, or `None` when it reads whole, is damaged, or there is none yet.
pub fn torn_tail(dir: &Path) -> std::io::Result<Option<TornTail>> {
    let current = match fs::read_to_string(dir.join("CURRENT")) {
        Ok(current) => current,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let name = current.trim_end();
    if !name.starts_with("MANIFEST-") || name.contains('/') {
        // RocksDB reports a CURRENT it cannot follow; nothing here to judge.
        return Ok(None);
    }
    let path = dir.join(name);
    let mut file = fs::File::open(&path)?;
    let LogEnd::Torn { offset, reason } = wal::check_reader(&mut file)? else {
        return Ok(None);
    };
    if !unwritten_after(&mut file, offset)? {
        // Unreadable without the mark of a power cut: damage (a flipped byte in the last
        // edit, which was synced and may have been acted on), refused by RocksDB as before.
        return Ok(None);
    }
    Ok(Some(TornTail {
        path,
        offset,
        reason,
    }))
}

/// Checks the MANIFEST that `CURRENT` names in `dir`; a torn tail is copied aside and cut
/// off (see the module docs). `None` when it reads whole, is damaged, or there is none yet.
/// Only for a writer, holding the ledger's lock.
pub fn cut_torn_tail(dir: &Path) -> std::io::Result<Option<TornManifest>> {
    let Some(TornTail {
        path,
        offset,
        reason,
    }) = torn_tail(dir)?
    else {
        return Ok(None);
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let copy = dir.join(format!("torn-{name}-at-{offset}"));
    fs::copy(&path, &copy)?;
    fs::File::open(&copy)?.sync_all()?;
    let manifest = fs::OpenOptions::new().write(true).open(&path)?;
    manifest.set_len(offset)?;
    manifest.sync_all()?;
    fs::File::open(dir)?.sync_all()?;
    tracing::warn!(
        "the MANIFEST {} ended in a record torn by a power cut at byte {offset} ({reason}); its tail was cut off and the whole file kept as {}",
        path.display(),
        copy.display()
    );
    Ok(Some(TornManifest { copy, offset }))
}

/// Bytes of the torn tail read at most; a longer one is not judged (left for RocksDB to
/// refuse).
const TAIL_BYTES_MAX: u64 = 1 << 20;

/// The granularity of what a power cut leaves unwritten: whole sectors (file-system blocks
/// and pages are multiples of it).
const SECTOR_BYTES: u64 = 512;

/// Whether the file ends, from a sector boundary after `offset` (where the first unreadable
/// record starts), in zeros: blocks whose size reached the disk and whose data did not.
/// A byte flipped in a record leaves no such run.
fn unwritten_after(file: &mut fs::File, offset: u64) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len <= offset || len - offset > TAIL_BYTES_MAX {
        return Ok(false);
    }
    let mut tail = vec![0u8; (len - offset) as usize];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut tail)?;
    let zeros_from = offset
        + tail
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i as u64 + 1);
    let boundary = zeros_from.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    Ok(boundary < len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MANIFEST of whole records, one per edit.
    fn edits(payloads: &[&[u8]]) -> Vec<u8> {
        wal::log_of(&payloads.iter().map(|p| p.to_vec()).collect::<Vec<_>>())
    }

    /// `manifest` and a record of 1,000 bytes whose sectors from the first boundary inside
    /// it never reached the disk: zeros from there on (what the power-loss test met).
    fn torn_after(manifest: &[u8]) -> Vec<u8> {
        let mut bytes = manifest.to_vec();
        bytes.extend(edits(&[&[9u8; 1000]]));
        let boundary = ((manifest.len() as u64 + 8).div_ceil(SECTOR_BYTES) * SECTOR_BYTES) as usize;
        bytes[boundary..].fill(0);
        bytes
    }

    fn ledger_dir(manifest: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("CURRENT"), "MANIFEST-000005\n").expect("CURRENT");
        fs::write(dir.path().join("MANIFEST-000005"), manifest).expect("MANIFEST");
        dir
    }

    /// `cut_torn_tail` finds nothing to cut in `manifest` and leaves it as it is.
    fn assert_left_alone(manifest: &[u8], why: &str) {
        let dir = ledger_dir(manifest);
        assert_eq!(cut_torn_tail(dir.path()).expect("readable"), None, "{why}");
        assert_eq!(
            fs::read(dir.path().join("MANIFEST-000005")).expect("manifest"),
            manifest,
            "{why}"
        );
    }

    #[test]
    fn a_torn_last_record_is_copied_aside_and_cut_off() {
        let whole_edits = edits(&[b"first edit", b"second edit"]);
        let whole = whole_edits.len() as u64;
        let manifest = torn_after(&whole_edits);
        let dir = ledger_dir(&manifest);
        let torn = cut_torn_tail(dir.path())
            .expect("readable")
            .expect("a torn tail");
        assert_eq!(torn.offset, whole);
        assert_eq!(
            fs::read(dir.path().join("MANIFEST-000005")).expect("manifest"),
            manifest[..whole as usize]
        );
        assert_eq!(fs::read(&torn.copy).expect("the copy"), manifest);
        assert_eq!(
            cut_torn_tail(dir.path()).expect("readable"),
            None,
            "a second open finds it whole"
        );
    }

    #[test]
    fn finding_a_torn_tail_changes_nothing() {
        let whole_edits = edits(&[b"first edit"]);
        let manifest = torn_after(&whole_edits);
        let dir = ledger_dir(&manifest);
        let torn = torn_tail(dir.path())
            .expect("readable")
            .expect("a torn tail");
        assert_eq!(torn.offset, whole_edits.len() as u64);
        assert_eq!(torn.path, dir.path().join("MANIFEST-000005"));
        assert_eq!(fs::read(&torn.path).expect("MANIFEST"), manifest);
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 2, "no copy");
    }

    #[test]
    fn damage_with_whole_records_after_it_is_left_alone() {
        let mut manifest = torn_after(&edits(&[b"first edit"]));
        manifest.extend(edits(&[b"a later edit"]));
        assert_left_alone(&manifest, "a damaged MANIFEST is never cut short");
    }

    #[test]
    fn a_flipped_byte_in_the_last_edit_is_left_alone() {
        let mut manifest = edits(&[b"first edit", &[7u8; 1000]]);
        let last = manifest.len() - 1;
        manifest[last] ^= 0xff;
        assert_left_alone(&manifest, "a synced edit may have been acted on: never cut");
    }

    #[test]
    fn a_whole_manifest_and_a_new_directory_are_left_alone() {
        let dir = ledger_dir(&edits(&[b"only edit"]));
        assert_eq!(cut_torn_tail(dir.path()).expect("readable"), None);
        let empty = tempfile::tempdir().expect("temp dir");
        assert_eq!(cut_torn_tail(empty.path()).expect("readable"), None);
    }
}
