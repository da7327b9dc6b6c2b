//! Reading a snapshot back: every row checked against the header's digest as it is read,
//! on two threads, and decoded by the caller's decoder if it asks for the rows.

use std::sync::{Mutex, PoisonError};

use super::SnapshotHeader;
use crate::error::{Error, Result};
use crate::format::digest::Digester;
use crate::format::{CF_SNAPSHOTS, DIGEST_TABLES, keys};
use crate::store::{Store, corrupt, prefix_upper_bound, storage};

/// Decodes one snapshot row: (what names the snapshot, row kind, row key, value).
pub type RowDecoder<R> = dyn Fn(&str, u8, &[u8], &[u8]) -> Result<R> + Sync;

/// Bytes of digest input the second thread of a snapshot check may hold for the first
/// (`Store::check_snapshot`), plus at most one range more; past it, the first thread reads
/// the rest itself. Bounds a check's memory whatever the number of orders (a snapshot's
/// digest input grows with them).
const SNAPSHOT_CHECK_BUFFER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Orders per range of a snapshot check (`Store::snapshot_ranges`): ranges small enough
/// that the two threads end close together, large enough that a seek per range is
/// nothing.
const SNAPSHOT_CHECK_RANGE_ORDERS: u64 = 4096;

/// At most this many ranges per row kind in a snapshot check.
const SNAPSHOT_CHECK_RANGES_PER_KIND_MAX: usize = 4096;

/// One stored snapshot row, borrowed: the totals, or a row of a `DIGEST_TABLES` table
/// with its kind, whether the digest covers its key, its own key and its value.
enum SnapshotRow<'r> {
    Totals(&'r [u8]),
    Row {
        kind: u8,
        hash_key: bool,
        key: &'r [u8],
        value: &'r [u8],
    },
}

impl<'r> SnapshotRow<'r> {
    fn parse(what: &str, key: &'r [u8], value: &'r [u8]) -> Result<SnapshotRow<'r>> {
        let (kind, row_key) = match key.get(8..) {
            Some([kind, rest @ ..]) => (*kind, rest),
            _ => return Err(corrupt(what, "malformed key")),
        };
        if kind == 0 {
            return Ok(SnapshotRow::Totals(value));
        }
        // The table is looked up once per row, here; `feed` uses what it found.
        let Some((_, _, hash_key)) = DIGEST_TABLES.iter().find(|(_, known, _)| *known == kind)
        else {
            return Err(corrupt(what, format!("unknown row kind {kind}")));
        };
        Ok(SnapshotRow::Row {
            kind,
            hash_key: *hash_key,
            key: row_key,
            value,
        })
    }

    /// Feeds `feed` what the digest hashes for this row (`DIGEST_TABLES` says whether its
    /// key is hashed). The totals, stored first, are hashed last, by the caller.
    fn feed(&self, feed: &mut impl FnMut(&[u8])) {
        if let SnapshotRow::Row {
            hash_key,
            key,
            value,
            ..
        } = *self
        {
            if hash_key {
                feed(key);
            }
            feed(value);
        }
    }
}

/// Keys `from..to` (`to` `None`: to the end of the column family).
type KeyRange = (Vec<u8>, Option<Vec<u8>>);

/// What `Store::feed_snapshot_rows` read besides the digest input, in key order.
#[derive(Debug)]
struct SnapshotPart<R> {
    /// The totals row's bytes, if it was in the range.
    totals: Option<Vec<u8>>,
    /// Decoded rows (when asked for).
    rows: Vec<R>,
}

impl<R> SnapshotPart<R> {
    fn new() -> SnapshotPart<R> {
        SnapshotPart {
            totals: None,
            rows: Vec::new(),
        }
    }

    /// Appends `later`, whose keys all follow this part's.
    fn append(&mut self, mut later: SnapshotPart<R>) {
        self.totals = self.totals.take().or(later.totals);
        self.rows.append(&mut later.rows);
    }
}

/// `parts - 1` keys cutting `low..=high` (`low < high`) into `parts` about equal spans:
/// their common prefix, then the next 8 bytes of each key read as a big-endian number
/// (missing bytes count as zeros), interpolated.
fn keys_between(low: &[u8], high: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let common = low.iter().zip(high).take_while(|(a, b)| a == b).count();
    let number = |key: &[u8]| {
        let mut bytes = [0u8; 8];
        for (to, from) in bytes.iter_mut().zip(&key[common..]) {
            *to = *from;
        }
        u128::from(u64::from_be_bytes(bytes))
    };
    let (from, to) = (number(low), number(high));
    let span = to.saturating_sub(from);
    let parts = parts.max(1) as u128;
    (1..parts)
        .map(|i| {
            let cut = u64::try_from(from + span * i / parts).expect("between two u64 values");
            let mut key = low[..common].to_vec();
            key.extend_from_slice(&cut.to_be_bytes());
            key
        })
        .collect()
}

impl Store {
    /// Loads the snapshot at `header.position`, checked against the header's digest: its
    /// totals record and its rows, each decoded by `decode`, in key order.
    pub fn load_snapshot<R: Send>(
        &self,
        header: &SnapshotHeader,
        decode: &RowDecoder<R>,
    ) -> Result<(Vec<u8>, Vec<R>)> {
        self.check_snapshot(
            header,
            Some(decode),
            SNAPSHOT_CHECK_BUFFER_BYTES_MAX,
            SNAPSHOT_CHECK_RANGE_ORDERS,
        )
    }

    /// Checks the snapshot at `header.position` against its digest without decoding its
    /// rows, and returns its totals record. With `snapshot_order_state`, a replay that needs
    /// only a few orders reads those and nothing else (`replay::summarize`).
    pub fn verify_snapshot(&self, header: &SnapshotHeader) -> Result<Vec<u8>> {
        let (totals, _) = self.check_snapshot::<()>(
            header,
            None,
            SNAPSHOT_CHECK_BUFFER_BYTES_MAX,
            SNAPSHOT_CHECK_RANGE_ORDERS,
        )?;
        Ok(totals)
    }

    /// Reads the snapshot `header`, checking its digest over the stored bytes as they are
    /// read (the codec is deterministic, so they are what the digest of the decoded book
    /// would re-encode), and returns its totals record and, if `decode` is given, its rows
    /// decoded by it, in key order. The second thread holds
    /// at most about `buffer_bytes_max` bytes of digest input, in ranges of about
    /// `range_orders` orders.
    ///
    /// Reading the rows (iterator, block reads, LZ4) and decoding them is most of the work,
    /// and the digest is one stream. So the rows are cut into ranges: this thread takes them
    /// from the front and hashes them, a second thread takes them from the back and keeps
    /// their digest input in buffers (while it holds less than `buffer_bytes_max`), until
    /// the two meet; then this thread hashes the buffers, in key order. Which thread reads a
    /// range never changes the digest's input, only who waits.
    fn check_snapshot<R: Send>(
        &self,
        header: &SnapshotHeader,
        decode: Option<&RowDecoder<R>>,
        buffer_bytes_max: usize,
        range_orders: u64,
    ) -> Result<(Vec<u8>, Vec<R>)> {
        let what = format!("snapshot at position {}", header.position);
        // No RocksDB snapshot holds the ranges together (a secondary instance, what readers
        // open, has none): a snapshot's rows never change once its header exists, and a
        // secondary sees the primary's writes only when it catches up.
        let ranges = self.snapshot_ranges(header, range_orders)?;
        let unclaimed = Mutex::new(0..ranges.len());
        let claim = |from_back: bool| {
            let mut unclaimed = unclaimed.lock().unwrap_or_else(PoisonError::into_inner);
            let index = if from_back {
                unclaimed.next_back()
            } else {
                unclaimed.next()
            };
            index.map(|i| (ranges[i].0.as_slice(), ranges[i].1.as_deref()))
        };
        let mut hasher = Digester::default();
        let mut rows = SnapshotPart::new();
        std::thread::scope(|scope| -> Result<()> {
            let back = scope.spawn(|| -> Result<Vec<(Vec<u8>, SnapshotPart<R>)>> {
                let mut parts = Vec::new();
                let mut bytes = 0usize;
                while bytes < buffer_bytes_max
                    && let Some(range) = claim(true)
                {
                    let mut input = Vec::new();
                    let part = self.feed_snapshot_rows(&what, range, decode, &mut |bytes| {
                        input.extend_from_slice(bytes)
                    })?;
                    bytes += input.len();
                    parts.push((input, part));
                }
                Ok(parts)
            });
            while let Some(range) = claim(false) {
                let part = self
                    .feed_snapshot_rows(&what, range, decode, &mut |bytes| hasher.update(bytes))?;
                rows.append(part);
            }
            let parts = back
                .join()
                .map_err(|_| Error::Storage("the snapshot check panicked".to_owned()))??;
            // Claimed from the back: the last part holds the lowest keys.
            for (input, part) in parts.into_iter().rev() {
                hasher.update(&input);
                rows.append(part);
            }
            Ok(())
        })?;
        let totals = rows
            .totals
            .take()
            .ok_or_else(|| corrupt(&what, "no totals row"))?;
        hasher.update(&totals);
        if hasher.finalize() != header.digest {
            return Err(corrupt(&what, "its content does not match its digest"));
        }
        Ok((totals, rows.rows))
    }

    /// Feeds `feed` the digest input of the snapshot rows in `range` (`from..to`, `to`
    /// `None`: to the end), in key order, and decodes them if `decode_rows`.
    fn feed_snapshot_rows<R>(
        &self,
        what: &str,
        (from, to): (&[u8], Option<&[u8]>),
        decode: Option<&RowDecoder<R>>,
        feed: &mut impl FnMut(&[u8]),
    ) -> Result<SnapshotPart<R>> {
        let mut part = SnapshotPart::new();
        let rows = self.scan_range(CF_SNAPSHOTS, (from, to), None, |key, value| {
            let row = SnapshotRow::parse(what, key, value)?;
            row.feed(feed);
            match (row, decode) {
                (SnapshotRow::Totals(value), _) => part.totals = Some(value.to_vec()),
                (_, None) => {}
                (
                    SnapshotRow::Row {
                        kind, key, value, ..
                    },
                    Some(decode),
                ) => {
                    part.rows.push(decode(what, kind, key, value)?);
                }
            }
            Ok(())
        });
        rows.collect::<Result<()>>()?;
        Ok(part)
    }

    /// Contiguous key ranges covering every row of the snapshot `header`, in key order: the
    /// order rows and the customer rows are each cut into about `header.orders /
    /// range_orders` ranges at keys interpolated between their first and last keys. Any cut
    /// would be correct (the ranges only decide which thread reads what); these balance the
    /// two threads.
    fn snapshot_ranges(&self, header: &SnapshotHeader, range_orders: u64) -> Result<Vec<KeyRange>> {
        let position = header.position;
        let parts = usize::try_from(header.orders / range_orders.max(1))
            .unwrap_or(usize::MAX)
            .clamp(1, SNAPSHOT_CHECK_RANGES_PER_KIND_MAX);
        let mut cuts = vec![keys::snapshot_prefix(position).to_vec()];
        for kind in [keys::SNAPSHOT_ORDER, keys::SNAPSHOT_CUSTOMER] {
            let start = keys::snapshot_key(position, kind, &[]);
            let end = keys::snapshot_key(position, kind + 1, &[]);
            if let Some((first, last)) = self.first_and_last_key(CF_SNAPSHOTS, &start, &end)? {
                cuts.extend(keys_between(&first, &last, parts));
            }
            cuts.push(end);
        }
        cuts.sort();
        cuts.dedup();
        let end = prefix_upper_bound(&keys::snapshot_prefix(position));
        let ranges = cuts
            .iter()
            .enumerate()
            .map(|(i, from)| {
                (
                    from.clone(),
                    cuts.get(i + 1).cloned().or_else(|| end.clone()),
                )
            })
            .collect();
        Ok(ranges)
    }

    /// The first and the last key of `cf` in `from..to`, if any.
    fn first_and_last_key(
        &self,
        cf: &str,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let within = |key: &[u8]| key >= from && key < to;
        let mut opts = rocksdb::ReadOptions::default();
        let _view = self.read_at(&mut opts, None);
        let mut rows = self.db.raw_iterator_cf_opt(self.cf(cf), opts);
        rows.seek(from);
        let first = rows.key().filter(|key| within(key)).map(<[u8]>::to_vec);
        rows.seek_for_prev(to);
        if rows.key() == Some(to) {
            rows.prev();
        }
        let last = rows.key().filter(|key| within(key)).map(<[u8]>::to_vec);
        rows.status().map_err(storage)?;
        Ok(first.zip(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_between_cuts_in_key_order_inside_the_common_prefix() {
        let pairs: [(&[u8], &[u8]); 5] = [
            (b"ORD-00000001", b"ORD-00220265"),
            (b"A", b"B"),
            (b"A", b"A\x00\x01"),
            (b"", b"\xff\xff"),
            (b"tail-000000000000-1", b"tail-999999999999-2"),
        ];
        for (low, high) in pairs {
            let common = low.iter().zip(high).take_while(|(a, b)| a == b).count();
            for parts in [1, 2, 7, 64] {
                let cuts = keys_between(low, high, parts);
                assert_eq!(cuts.len(), parts - 1);
                assert!(cuts.windows(2).all(|w| w[0] <= w[1]), "{cuts:?}");
                assert!(cuts.iter().all(|cut| cut.starts_with(&low[..common])));
                assert!(cuts.iter().all(|cut| cut.as_slice() <= high));
            }
        }
        // Sequential ids are cut near the middle.
        let middle = &keys_between(b"ORD-00000001", b"ORD-00220265", 2)[0];
        assert!(middle.as_slice() > b"ORD-00100000".as_slice(), "{middle:?}");
        assert!(middle.as_slice() < b"ORD-00120000".as_slice(), "{middle:?}");
    }

    /// A decoder that keeps each row as it was read.
    fn raw(_: &str, kind: u8, key: &[u8], value: &[u8]) -> Result<(u8, Vec<u8>, Vec<u8>)> {
        Ok((kind, key.to_vec(), value.to_vec()))
    }

    #[test]
    fn a_snapshot_check_gives_one_answer_however_its_rows_are_shared_out() {
        let (_tmp, ledger) = crate::store::ledger_of_placed_orders(300, 70);
        let header = ledger.snapshot_create().expect("snapshot");
        let store = ledger.store();
        // What the snapshot must hold: its stored rows, in key order, totals first.
        let stored = store.raw_rows(CF_SNAPSHOTS).expect("rows");
        let (totals_row, rows) = stored.split_first().expect("a totals row");
        let expected: Vec<_> = rows
            .iter()
            .map(|(key, value)| (key[8], key[9..].to_vec(), value.clone()))
            .collect();
        assert_eq!(expected.len(), 300 + 70 + 1, "orders, customers, one day");
        assert_eq!(store.verify_snapshot(&header).expect("valid"), totals_row.1);
        // No room to buffer (this thread reads everything), little, plenty; one range per
        // kind, ranges of 16 orders, of one order.
        let shares = [0, 1, 4096, usize::MAX]
            .into_iter()
            .flat_map(|buffer| [4096, 16, 1].map(|range_orders| (buffer, range_orders)));
        for (buffer, range_orders) in shares.clone() {
            let (totals, none) = store
                .check_snapshot::<()>(&header, None, buffer, range_orders)
                .expect("valid");
            assert_eq!((&totals, none.len()), (&totals_row.1, 0));
            let (totals, decoded) = store
                .check_snapshot(&header, Some(&raw), buffer, range_orders)
                .expect("valid");
            assert_eq!(totals, totals_row.1, "{buffer} {range_orders}");
            assert_eq!(decoded, expected, "{buffer} {range_orders}");
        }
        // One changed byte is found wherever it is, whichever thread reads it.
        let of_kind = |kind: u8| rows.iter().filter(move |(key, _)| key[8] == kind);
        let orders: Vec<_> = of_kind(keys::SNAPSHOT_ORDER).collect();
        let victims = [
            orders[0],
            orders[150],
            orders[299],
            of_kind(keys::SNAPSHOT_CUSTOMER)
                .next_back()
                .expect("customer rows"),
        ];
        for (key, value) in victims {
            let mut changed = value.clone();
            *changed.last_mut().expect("a value") ^= 1;
            store
                .tamper_raw(CF_SNAPSHOTS, key, Some(&changed))
                .expect("tamper");
            for ((buffer, range_orders), decode_rows) in shares.clone().zip([false, true].repeat(6))
            {
                let decode: Option<&RowDecoder<_>> = decode_rows.then_some(&raw);
                let err = store
                    .check_snapshot(&header, decode, buffer, range_orders)
                    .expect_err("refused");
                let message = err.to_string();
                assert!(
                    matches!(err, Error::Corruption { .. })
                        && message.contains("snapshot at position")
                        && message.contains("does not match its digest"),
                    "{err}"
                );
            }
            store
                .tamper_raw(CF_SNAPSHOTS, key, Some(value))
                .expect("restore");
        }
        assert_eq!(store.verify_snapshot(&header).expect("valid"), totals_row.1);
    }
}
