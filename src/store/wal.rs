//! A check of RocksDB's write-ahead logs (`NNNNNN.log`) that RocksDB's own recovery does not
//! make: where a log stops being readable, is that a tail torn by a crash, or damage with
//! acknowledged events behind it?
//!
//! RocksDB's recovery (`PointInTime`, its default and ordo's) replays each log up to its
//! first unreadable record and drops the rest, then deletes the log: right for a tail torn by
//! a crash, silent loss for a flipped byte in the middle (30 acknowledged events of 61 went
//! that way). Every open therefore runs this check first and refuses a damaged log. A crash
//! can only tear what was being written last, so a torn tail has nothing whole behind it:
//! an unreadable record (checksum mismatch, a length past its block or past the end of the
//! file, an unknown type) is a torn tail when no whole record (known type, checksum right)
//! follows it in its log and no later log holds records; otherwise it is damage. A tail torn
//! in the middle of a write can show a checksum mismatch (the page holding the record's end
//! was written back before the rest was copied in), which is why RocksDB's stricter modes
//! would refuse some crashes (the power-loss tests' negative control met exactly that). What
//! this cannot tell from a tear is damage to the very last record of the newest log: it
//! costs that one record, which a tear would have cost too.
//!
//! The record format (RocksDB's `db/log_format.h`, documented in docs/format.md): the file is
//! 32 KiB blocks; each physical record is `masked CRC32C (4, LE) | length (2, LE) | type (1) |
//! payload`, the CRC covering the type byte and the payload; a block's last 1 to 6 bytes are
//! zero padding when no header fits. ordo never recycles logs, so the recyclable record types
//! (11-byte headers) are unreadable here.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// RocksDB's log block size.
const BLOCK_BYTES: usize = 32 * 1024;
/// checksum (4) + length (2) + type (1).
const HEADER_BYTES: usize = 7;
/// RocksDB's `kMaskDelta`.
const MASK_DELTA: u32 = 0xa282_ead8;
/// Record types with a 7-byte header: full, first, middle, last, set-compression,
/// user-defined-timestamp-size, predecessor-WAL-info.
const KNOWN_TYPES: [u8; 7] = [1, 2, 3, 4, 9, 10, 130];
/// Types with this bit set may be skipped by readers that do not know them.
const SAFE_IGNORE_MASK: u8 = 1 << 7;

/// Where a write-ahead log is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalDamage {
    /// The log file.
    pub file: PathBuf,
    /// Byte offset of the first record that cannot be read.
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
}

impl std::fmt::Display for WalDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "write-ahead log {} is damaged at byte {} ({})",
            self.file.display(),
            self.offset,
            self.reason
        )
    }
}

/// The write-ahead logs in `dir`, oldest first.
pub fn log_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut logs: Vec<(u64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        logs.push((number, entry.path()));
    }
    logs.sort();
    Ok(logs.into_iter().map(|(_, path)| path).collect())
}

/// What `check_dir` found in a ledger's write-ahead logs.
#[derive(Debug, PartialEq, Eq)]
pub enum WalState {
    /// Every record of every log reads.
    Whole,
    /// The last log with records ends in a tail torn by a crash; the rest reads.
    TornTail,
    /// The first damage found.
    Damaged(WalDamage),
}

impl WalState {
    /// The damage, if any.
    pub fn damage(self) -> Option<WalDamage> {
        match self {
            WalState::Damaged(damage) => Some(damage),
            WalState::Whole | WalState::TornTail => None,
        }
    }
}

/// Checks every write-ahead log in `dir`. A log that disappears while being read (a live
/// writer retired it) is skipped. Logs are read a block at a time: memory stays at a few
/// blocks whatever their size.
pub fn check_dir(dir: &Path) -> std::io::Result<WalState> {
    // A torn log, waiting to see whether a later log holds records.
    let mut torn: Option<(PathBuf, u64, String)> = None;
    for file in log_files(dir)? {
        let mut log = match fs::File::open(&file) {
            Ok(log) => log,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some((earlier, offset, reason)) = &torn {
            let mut first = vec![0u8; BLOCK_BYTES];
            let n = read_block(&mut log, &mut first)?;
            if is_whole_record(&first[..n], 0) {
                return Ok(WalState::Damaged(WalDamage {
                    file: earlier.clone(),
                    offset: *offset,
                    reason: format!("{reason}, and a later log holds records"),
                }));
            }
            continue;
        }
        match check_reader(&mut log)? {
            LogEnd::Whole => {}
            LogEnd::Torn { offset, reason } => torn = Some((file, offset, reason)),
            LogEnd::Damaged { offset, reason } => {
                return Ok(WalState::Damaged(WalDamage {
                    file,
                    offset,
                    reason,
                }));
            }
        }
    }
    Ok(if torn.is_some() {
        WalState::TornTail
    } else {
        WalState::Whole
    })
}

/// How a log ends.
#[derive(Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// Every record reads.
    Whole,
    /// Reading stops at `offset` with nothing whole behind it: what a crash leaves.
    Torn {
        /// Where the first unreadable record starts.
        offset: u64,
        /// Why it cannot be read.
        reason: String,
    },
    /// Reading stops at `offset` and whole records follow.
    Damaged {
        /// Where the first unreadable record starts.
        offset: u64,
        /// Why it cannot be read, and what follows.
        reason: String,
    },
}

/// Checks one log's bytes.
pub fn check_log(bytes: &[u8]) -> LogEnd {
    check_reader(&mut std::io::Cursor::new(bytes)).expect("reading from memory cannot fail")
}

/// Checks one log, read a block at a time from `log`.
pub fn check_reader(log: &mut impl Read) -> std::io::Result<LogEnd> {
    let mut block = vec![0u8; BLOCK_BYTES];
    let mut block_start: u64 = 0;
    loop {
        let n = read_block(log, &mut block)?;
        let data = &block[..n];
        let mut at = 0;
        while BLOCK_BYTES - at >= HEADER_BYTES && at < n {
            match read_record(data, at) {
                Record::Whole { end } => at = end,
                // Zeros where a header would be (preallocated space): RocksDB skips the
                // rest of the block.
                Record::Padding => break,
                Record::Unreadable(reason) => {
                    let offset = block_start + at as u64;
                    let later = match (at + 1..n).find(|&i| is_whole_record(data, i)) {
                        Some(i) => Some(block_start + i as u64),
                        None => whole_block_after(log, block_start)?,
                    };
                    return Ok(match later {
                        None => LogEnd::Torn { offset, reason },
                        Some(later) => LogEnd::Damaged {
                            offset,
                            reason: format!("{reason}, yet a whole record follows at byte {later}"),
                        },
                    });
                }
            }
        }
        if n < BLOCK_BYTES {
            return Ok(LogEnd::Whole);
        }
        block_start += BLOCK_BYTES as u64;
    }
}

/// Fills `block` from `log` as far as it goes; the bytes read (fewer only at the end).
fn read_block(log: &mut impl Read, block: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < block.len() {
        match log.read(&mut block[n..]) {
            Ok(0) => break,
            Ok(read) => n += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The offset of the first later block of `log` that starts with a whole record (every
/// block starts with a header), reading on from the block that started at `block_start`.
fn whole_block_after(log: &mut impl Read, mut block_start: u64) -> std::io::Result<Option<u64>> {
    let mut block = vec![0u8; BLOCK_BYTES];
    loop {
        block_start += BLOCK_BYTES as u64;
        let n = read_block(log, &mut block)?;
        if n == 0 {
            return Ok(None);
        }
        if is_whole_record(&block[..n], 0) {
            return Ok(Some(block_start));
        }
    }
}

enum Record {
    /// A record that reads, ending at `end`.
    Whole { end: usize },
    /// Zeros where a header would be.
    Padding,
    /// The record cannot be read.
    Unreadable(String),
}

/// The record at `at` of `block` (one block of a log; shorter only at the end of the file).
fn read_record(block: &[u8], at: usize) -> Record {
    let Some(header) = block.get(at..at + HEADER_BYTES) else {
        return Record::Unreadable("the file ends inside a record header".to_owned());
    };
    let length = usize::from(u16::from_le_bytes([header[4], header[5]]));
    let kind = header[6];
    if kind == 0 && length == 0 {
        return Record::Padding;
    }
    let end = at + HEADER_BYTES + length;
    if end > BLOCK_BYTES {
        return Record::Unreadable(format!("record length {length} runs past its block"));
    }
    if end > block.len() {
        return Record::Unreadable(format!(
            "record length {length} runs past the end of the file"
        ));
    }
    if !checksum_matches(block, at, end) {
        return Record::Unreadable("checksum mismatch".to_owned());
    }
    if !KNOWN_TYPES.contains(&kind) && kind & SAFE_IGNORE_MASK == 0 {
        return Record::Unreadable(format!("unexpected record type {kind}"));
    }
    Record::Whole { end }
}

/// Whether a whole record (known type, not empty, checksum right) starts at `at` of `block`.
fn is_whole_record(block: &[u8], at: usize) -> bool {
    let Some(header) = block.get(at..at + HEADER_BYTES) else {
        return false;
    };
    let length = usize::from(u16::from_le_bytes([header[4], header[5]]));
    let end = at + HEADER_BYTES + length;
    length > 0
        && KNOWN_TYPES.contains(&header[6])
        && end <= block.len()
        && checksum_matches(block, at, end)
}

fn checksum_matches(block: &[u8], at: usize, end: usize) -> bool {
    let stored = u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
    let expected = stored.wrapping_sub(MASK_DELTA).rotate_left(15);
    crc32c::crc32c(&block[at + 6..end]) == expected
}

/// A log of physical records as RocksDB writes them (full records, padding at block ends),
/// for tests of this format (the write-ahead logs, the MANIFEST).
#[cfg(test)]
pub(super) fn log_of(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for payload in payloads {
        let left = BLOCK_BYTES - out.len() % BLOCK_BYTES;
        if left < HEADER_BYTES + payload.len() {
            out.resize(out.len() + left, 0);
        }
        let mut body = vec![1u8];
        body.extend_from_slice(payload);
        let crc = crc32c::crc32c(&body);
        let masked = crc.rotate_right(15).wrapping_add(MASK_DELTA);
        out.extend_from_slice(&masked.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8; 100 + i % 50]).collect()
    }

    fn is_damage(end: &LogEnd) -> bool {
        matches!(end, LogEnd::Damaged { .. })
    }

    #[test]
    fn a_whole_log_and_every_truncation_of_it_are_not_damage() {
        let log = log_of(&payloads(40));
        assert_eq!(check_log(&log), LogEnd::Whole);
        for cut in 0..log.len() {
            assert!(!is_damage(&check_log(&log[..cut])), "cut at {cut}");
        }
    }

    #[test]
    fn a_last_record_torn_in_the_middle_of_its_copy_is_a_torn_tail() {
        let log = log_of(&payloads(40));
        let mut torn = log.clone();
        let last = torn.len() - 20;
        torn[last..].fill(0);
        assert!(matches!(check_log(&torn), LogEnd::Torn { .. }));
    }

    /// The flips this check cannot see are in the last record, which then looks exactly
    /// like a torn tail (nothing follows it). docs/reliability.md says so.
    #[test]
    fn a_flipped_byte_in_any_record_but_the_last_is_damage() {
        let all = payloads(40);
        let log = log_of(&all);
        let last_record = log.len() - all[39].len() - HEADER_BYTES;
        for at in 0..last_record {
            let mut damaged = log.clone();
            damaged[at] ^= 0x40;
            assert!(is_damage(&check_log(&damaged)), "flip at {at} went unseen");
        }
        for at in last_record..log.len() {
            let mut damaged = log.clone();
            damaged[at] ^= 0x40;
            assert!(
                matches!(check_log(&damaged), LogEnd::Torn { .. }),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn damage_in_an_earlier_block_is_found_by_the_records_of_later_blocks() {
        let log = log_of(&payloads(600));
        assert!(log.len() > 2 * BLOCK_BYTES);
        let mut damaged = log.clone();
        damaged[BLOCK_BYTES / 2] ^= 0x01;
        assert!(is_damage(&check_log(&damaged)));
    }

    #[test]
    fn a_length_running_past_the_end_with_records_behind_it_is_damage() {
        let log = log_of(&payloads(40));
        let mut damaged = log.clone();
        // The second record's length, made to run past the end of the file.
        let second = HEADER_BYTES + 100;
        damaged[second + 5] = 0x7f;
        let LogEnd::Damaged { offset, reason } = check_log(&damaged) else {
            panic!("damage unseen");
        };
        assert_eq!(offset, second as u64);
        assert!(reason.contains("whole record follows"), "{reason}");
    }

    #[test]
    fn a_torn_log_followed_by_a_log_with_records_is_damage() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = log_of(&payloads(10));
        fs::write(dir.path().join("000007.log"), &log[..log.len() - 3]).expect("write");
        fs::write(dir.path().join("000009.log"), b"").expect("write");
        assert_eq!(check_dir(dir.path()).expect("readable"), WalState::TornTail);
        fs::write(dir.path().join("000011.log"), &log).expect("write");
        let damage = check_dir(dir.path())
            .expect("readable")
            .damage()
            .expect("damage");
        assert!(damage.file.ends_with("000007.log"), "{damage}");
        assert!(damage.reason.contains("later log"), "{damage}");
    }
}
