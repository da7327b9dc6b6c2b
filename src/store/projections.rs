//! Stored projections, snapshots and settings: rows in the `status_orders`, `customers`,
//! `revenue` and `snapshots` column families and in `meta` (docs/format.md).

use rocksdb::{ReadOptions, Snapshot, WriteBatch};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::sync::{Mutex, PoisonError};

use super::digest::Digester;
use super::{
    CF_CUSTOMERS, CF_META, CF_ORDER_STATE, CF_REVENUE, CF_SNAPSHOTS, CF_STATUS_ORDERS, Durability,
    Store, codec, keys, storage,
};
use crate::domain::{Hash, OrderId, OrderState, Position, Status, Timestamp};
use crate::error::{Error, Result};
use crate::projection::{
    Add, Book, CustomerKey, CustomerRow, Delta, RevenueKey, RevenueRow, Totals, in_key_order,
    status_index,
};

/// Ledger settings, shown and changed by `ordo config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Take a snapshot automatically each time the head crosses a multiple of this many
    /// events (0: never).
    pub snapshot_every_events: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            snapshot_every_events: 100_000,
        }
    }
}

/// What a snapshot covers; stored in `meta` under `snapshot/<position>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The last position folded into it.
    pub position: Position,
    /// The latest occurred_at of any event it contains (for `--valid-at` replays).
    pub max_occurred_at: Option<Timestamp>,
    /// Digest of its content (`digest`), checked when it is loaded.
    pub digest: Hash,
    /// `projection::PROJECTION_VERSION` of the code that wrote it.
    pub projection_version: u32,
    /// Orders it holds.
    pub orders: u64,
    /// When it was taken.
    pub created_at: Timestamp,
}

/// Rows per write while copying a snapshot (bounds its memory).
pub const SNAPSHOT_CHUNK_ROWS: usize = 20_000;

/// A digest of every projection in `book`: equal books have equal digests.
pub fn digest(book: &Book) -> Hash {
    encode_rows(book, |_| {})
}

/// One encoded projection row of a book (`encode_rows`).
enum Row<'a> {
    Order(&'a OrderState, Vec<u8>),
    Customer(Vec<u8>, Vec<u8>),
    Revenue(Vec<u8>, Vec<u8>),
    Totals(Vec<u8>),
}

/// Encodes every row of `book` once, in the digest's order, hands each to `visit`, and
/// returns the digest: the one place that fixes what a digest covers and in which order
/// (orders, customers, revenue, then the totals; each kind in the order of its stored
/// keys).
///
/// The customer rows are encoded and sorted on a second thread while this one encodes the
/// orders (one after the other, the two were a third of what a rebuild spent here after
/// its fold); the digest is one stream, so this thread hashes all.
fn encode_rows(book: &Book, mut visit: impl FnMut(Row<'_>)) -> Hash {
    let mut hasher = Digester::default();
    std::thread::scope(|scope| {
        let customers = scope.spawn(|| encoded_customers(book));
        for state in book.orders.values() {
            let value = codec::encode_state(state);
            hasher.update(&value);
            visit(Row::Order(state, value));
        }
        let customers = customers
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        for (key, value) in customers {
            hasher.update(&key);
            hasher.update(&value);
            visit(Row::Customer(key, value));
        }
    });
    for (key, row) in &book.revenue {
        let (key, value) = (keys::revenue_key(key), codec::encode_record(row));
        hasher.update(&key);
        hasher.update(&value);
        visit(Row::Revenue(key, value));
    }
    let totals = codec::encode_record(&book.totals);
    hasher.update(&totals);
    visit(Row::Totals(totals));
    hasher.finalize()
}

/// `book`'s customer rows, encoded, in key order (which is `CustomerKey`'s order: an id
/// never holds the 0x00 that ends it in a key). The sort compares a 16-byte prefix of each
/// key held in the array, then whole keys on a tie: sorting the map's keys chased two
/// pointers per comparison, cache miss after cache miss (seen in a rebuild's profile).
fn encoded_customers(book: &Book) -> Vec<(Vec<u8>, Vec<u8>)> {
    let prefix = |key: &[u8]| {
        let mut bytes = [0u8; 16];
        for (to, from) in bytes.iter_mut().zip(key) {
            *to = *from;
        }
        u128::from_be_bytes(bytes)
    };
    let mut rows: Vec<_> = book
        .customers
        .iter()
        .map(|(key, row)| {
            let key = keys::customer_key(key);
            (prefix(&key), key, codec::encode_record(row))
        })
        .collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    rows.into_iter()
        .map(|(_, key, value)| (key, value))
        .collect()
}

/// Every stored projection replaced by a book's, built but not yet written
/// (`Store::replacement`).
pub struct Replacement {
    batch: WriteBatch,
    digest: Hash,
}

impl Replacement {
    /// The book's `digest`.
    pub fn digest(&self) -> Hash {
        self.digest
    }
}

/// What `Store::live_rows` walked.
struct LiveRows {
    /// The stored totals.
    totals: Totals,
    /// Order-state rows.
    orders: u64,
    /// Their `digest`.
    digest: Hash,
}

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

/// One stored snapshot row by kind, borrowed: the row's own key and value.
enum SnapshotRow<'r> {
    Totals(&'r [u8]),
    Order(&'r [u8]),
    Customer(&'r [u8], &'r [u8]),
    Revenue(&'r [u8], &'r [u8]),
}

impl<'r> SnapshotRow<'r> {
    fn parse(what: &str, key: &'r [u8], value: &'r [u8]) -> Result<SnapshotRow<'r>> {
        let (kind, row_key) = match key.get(8..) {
            Some([kind, rest @ ..]) => (*kind, rest),
            _ => return Err(corrupt(what, "malformed key")),
        };
        Ok(match kind {
            0 => SnapshotRow::Totals(value),
            keys::SNAPSHOT_ORDER => SnapshotRow::Order(value),
            keys::SNAPSHOT_CUSTOMER => SnapshotRow::Customer(row_key, value),
            keys::SNAPSHOT_REVENUE => SnapshotRow::Revenue(row_key, value),
            other => return Err(corrupt(what, format!("unknown row kind {other}"))),
        })
    }

    /// Feeds `feed` what `digest` hashes for this row, in `digest`'s order of rows
    /// (orders, customers, revenue: key order). An order's key is inside its value; the
    /// totals, stored first, are hashed last, by the caller.
    fn feed(&self, feed: &mut impl FnMut(&[u8])) {
        match *self {
            SnapshotRow::Totals(_) => {}
            SnapshotRow::Order(value) => feed(value),
            SnapshotRow::Customer(key, value) | SnapshotRow::Revenue(key, value) => {
                feed(key);
                feed(value);
            }
        }
    }
}

/// Keys `from..to` (`to` `None`: to the end of the column family).
type KeyRange = (Vec<u8>, Option<Vec<u8>>);

/// What `Store::feed_snapshot_rows` read besides the digest input, in key order.
#[derive(Debug, Default)]
struct SnapshotPart {
    /// The totals row's bytes, if it was in the range.
    totals: Option<Vec<u8>>,
    /// Decoded rows (when asked for).
    orders: Vec<(OrderId, OrderState)>,
    customers: Vec<(CustomerKey, CustomerRow)>,
    revenue: Vec<(RevenueKey, RevenueRow)>,
}

impl SnapshotPart {
    /// Appends `later`, whose keys all follow this part's.
    fn append(&mut self, mut later: SnapshotPart) {
        self.totals = self.totals.take().or(later.totals);
        self.orders.append(&mut later.orders);
        self.customers.append(&mut later.customers);
        self.revenue.append(&mut later.revenue);
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

fn corrupt(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Corruption {
        position: Position(0),
        reason: format!("{what}: {reason}"),
    }
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    codec::decode_record(bytes).map_err(|reason| corrupt(what, reason))
}

impl Store {
    fn meta_record<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.meta_record_at(key, None)
    }

    fn meta_record_at<T: DeserializeOwned>(
        &self,
        key: &[u8],
        at: Option<&Snapshot<'_>>,
    ) -> Result<Option<T>> {
        let raw = self
            .db
            .get_pinned_cf_opt(self.cf(CF_META), key, &read_options(at))
            .map_err(storage)?;
        raw.map(|bytes| decode(&String::from_utf8_lossy(key), &bytes))
            .transpose()
    }

    /// The ledger's settings (defaults until changed).
    pub fn settings(&self) -> Result<Settings> {
        Ok(self.meta_record(keys::META_SETTINGS)?.unwrap_or_default())
    }

    /// Stores new settings durably.
    pub fn set_settings(&self, settings: &Settings) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META),
            keys::META_SETTINGS,
            codec::encode_record(settings),
        );
        self.write(batch, Durability::Sync)
    }

    /// Orders per status and the latest occurred_at, as of the head.
    pub fn totals(&self) -> Result<Totals> {
        Ok(self.meta_record(keys::META_TOTALS)?.unwrap_or_default())
    }

    /// Adds a commit's projection changes to `batch` (reads the rows it changes).
    pub(super) fn put_delta(&self, batch: &mut WriteBatch, delta: &Delta) -> Result<()> {
        let status_cf = self.cf(CF_STATUS_ORDERS);
        let mut totals = self.totals()?;
        // In key order, as every other key of a commit (see `Store::commit`).
        for (order_id, (from, to)) in in_key_order(&delta.moves) {
            if let Some(from) = from {
                batch.delete_cf(status_cf, keys::status_order_key(*from, order_id));
            }
            batch.put_cf(status_cf, keys::status_order_key(*to, order_id), []);
            totals
                .move_order(*from, *to)
                .map_err(|reason| corrupt("totals", reason))?;
        }
        totals.max_occurred_at = totals.max_occurred_at.max(delta.max_occurred_at);
        for (key, change) in in_key_order(&delta.customers) {
            let raw = keys::customer_key(key);
            let mut row: CustomerRow = self.row(CF_CUSTOMERS, &raw)?.unwrap_or_default();
            row.add(change);
            batch.put_cf(self.cf(CF_CUSTOMERS), raw, codec::encode_record(&row));
        }
        for (key, change) in &delta.revenue {
            let raw = keys::revenue_key(key);
            let mut row: RevenueRow = self.row(CF_REVENUE, &raw)?.unwrap_or_default();
            row.add(change);
            batch.put_cf(self.cf(CF_REVENUE), raw, codec::encode_record(&row));
        }
        batch.put_cf(
            self.cf(CF_META),
            keys::META_TOTALS,
            codec::encode_record(&totals),
        );
        Ok(())
    }

    fn row<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>> {
        let raw = self.db.get_pinned_cf(self.cf(cf), key).map_err(storage)?;
        raw.map(|bytes| decode(cf, &bytes)).transpose()
    }

    /// Every row of a column family under `prefix`, in key order, mapped by `map` from its
    /// key and value (borrowed: see `raw_scan`).
    fn scan<'s, T, F: FnMut(&[u8], &[u8]) -> Result<T> + 's>(
        &'s self,
        cf: &str,
        prefix: &[u8],
        map: F,
    ) -> impl Iterator<Item = Result<T>> + use<'s, T, F> {
        self.scan_at(cf, prefix, None, map)
    }

    /// Rows of `cf` with keys in `from..to` (`None`: to the end) as of `at` (`None`: now),
    /// mapped as by `scan`.
    fn scan_range<'s, T, F: FnMut(&[u8], &[u8]) -> Result<T> + 's>(
        &'s self,
        cf: &str,
        (from, to): (&[u8], Option<&[u8]>),
        at: Option<&Snapshot<'_>>,
        map: F,
    ) -> impl Iterator<Item = Result<T>> + use<'s, T, F> {
        let mut opts = read_options(at);
        // Scans read whole column families (snapshots, live projections): see `events_from`.
        opts.fill_cache(false);
        if let Some(to) = to {
            opts.set_iterate_upper_bound(to.to_vec());
        }
        self.raw_scan(cf, opts, from, map)
    }

    /// `scan` as of a RocksDB snapshot (`None`: now).
    fn scan_at<'s, T, F: FnMut(&[u8], &[u8]) -> Result<T> + 's>(
        &'s self,
        cf: &str,
        prefix: &[u8],
        at: Option<&Snapshot<'_>>,
        map: F,
    ) -> impl Iterator<Item = Result<T>> + use<'s, T, F> {
        let upper = prefix_upper_bound(prefix);
        self.scan_range(cf, (prefix, upper.as_deref()), at, map)
    }

    /// Every order's current state, in order-id order.
    pub fn order_states(&self) -> impl Iterator<Item = Result<OrderState>> + '_ {
        self.scan(CF_ORDER_STATE, &[], |_, value| decode("order_state", value))
    }

    /// The current state of every order in `status`, in order-id order.
    pub fn orders_in_status(
        &self,
        status: Status,
    ) -> impl Iterator<Item = Result<OrderState>> + '_ {
        let prefix = [u8::try_from(status_index(status)).expect("six statuses")];
        self.scan(CF_STATUS_ORDERS, &prefix, move |key, _| {
            let order_id = std::str::from_utf8(&key[1..])
                .ok()
                .and_then(|id| OrderId::new(id).ok())
                .ok_or_else(|| corrupt("status_orders", "malformed key"))?;
            let state = self.order_state(&order_id)?.ok_or_else(|| {
                corrupt("status_orders", format!("order {order_id} has no state"))
            })?;
            if state.status != status {
                return Err(corrupt(
                    "status_orders",
                    format!(
                        "order {order_id} is listed as {} but is {}",
                        status.as_str(),
                        state.status.as_str()
                    ),
                ));
            }
            Ok(state)
        })
    }

    /// Every per-customer totals row, in key order.
    pub fn customer_rows(&self) -> Result<Vec<(CustomerKey, CustomerRow)>> {
        self.customer_rows_at(None)
    }

    fn customer_rows_at(
        &self,
        at: Option<&Snapshot<'_>>,
    ) -> Result<Vec<(CustomerKey, CustomerRow)>> {
        self.keyed_rows_at(CF_CUSTOMERS, keys::decode_customer_key, at)
    }

    /// Every revenue row, in day then currency order.
    pub fn revenue_rows(&self) -> Result<Vec<(RevenueKey, RevenueRow)>> {
        self.revenue_rows_at(None)
    }

    fn revenue_rows_at(&self, at: Option<&Snapshot<'_>>) -> Result<Vec<(RevenueKey, RevenueRow)>> {
        self.keyed_rows_at(CF_REVENUE, keys::decode_revenue_key, at)
    }

    /// Every row of an aggregate column family, keys decoded by `decode_key`.
    fn keyed_rows_at<K, V: DeserializeOwned>(
        &self,
        cf: &str,
        decode_key: fn(&[u8]) -> Option<K>,
        at: Option<&Snapshot<'_>>,
    ) -> Result<Vec<(K, V)>> {
        self.scan_at(cf, &[], at, |key, value| {
            let key = decode_key(key).ok_or_else(|| corrupt(cf, "malformed key"))?;
            Ok((key, decode(cf, value)?))
        })
        .collect()
    }

    /// The digest of the stored projections at the head (equal to `digest` of the book
    /// they hold), computed over their stored bytes without decoding them: a rebuild
    /// compares it with the digest of the book it folded. A row whose bytes were damaged
    /// makes the digests differ (the rebuild reports it), it does not stop the rebuild.
    pub fn live_digest(&self) -> Result<Hash> {
        let snapshot = self.db.snapshot();
        Ok(self.live_rows(&snapshot, |_, _, _| Ok(()))?.digest)
    }

    /// Walks every live projection row as stored, read through the RocksDB `snapshot`
    /// (consistent: it sits between two commits), in `digest`'s order: order states,
    /// customers, revenue (`visit` gets the snapshot row kind, key and value), then the
    /// totals. The one place that hashes stored rows the way `digest` hashes a book.
    fn live_rows(
        &self,
        snapshot: &Snapshot<'_>,
        mut visit: impl FnMut(u8, &[u8], &[u8]) -> Result<()>,
    ) -> Result<LiveRows> {
        let at = Some(snapshot);
        let totals: Totals = self
            .meta_record_at(keys::META_TOTALS, at)?
            .unwrap_or_default();
        let mut hasher = Digester::default();
        let mut orders = 0u64;
        for (live_cf, kind) in [
            (CF_ORDER_STATE, keys::SNAPSHOT_ORDER),
            (CF_CUSTOMERS, keys::SNAPSHOT_CUSTOMER),
            (CF_REVENUE, keys::SNAPSHOT_REVENUE),
        ] {
            let rows = self.scan_at(live_cf, &[], at, |key, value| {
                if kind == keys::SNAPSHOT_ORDER {
                    // `digest` hashes an order's encoded state alone (its key is inside).
                    orders += 1;
                } else {
                    hasher.update(key);
                }
                hasher.update(value);
                visit(kind, key, value)
            });
            rows.collect::<Result<()>>()?;
        }
        hasher.update(&codec::encode_record(&totals));
        Ok(LiveRows {
            totals,
            orders,
            digest: hasher.finalize(),
        })
    }

    /// The write that replaces every stored projection with `book`'s (`ordo rebuild`),
    /// with `book`'s `digest`: each row is encoded once, for both.
    pub fn replacement(&self, book: &Book) -> Replacement {
        let mut batch = WriteBatch::default();
        let everything: &[u8] = &[0xFF; 16];
        for cf in [CF_ORDER_STATE, CF_STATUS_ORDERS, CF_CUSTOMERS, CF_REVENUE] {
            batch.delete_range_cf(self.cf(cf), [].as_slice(), everything);
        }
        // Handles looked up once: by name, per put, they were a search per row.
        let (states, statuses) = (self.cf(CF_ORDER_STATE), self.cf(CF_STATUS_ORDERS));
        let (customers, revenue) = (self.cf(CF_CUSTOMERS), self.cf(CF_REVENUE));
        let digest = encode_rows(book, |row| match row {
            Row::Order(state, value) => {
                batch.put_cf(states, keys::order_state_key(&state.order_id), value);
                batch.put_cf(
                    statuses,
                    keys::status_order_key(state.status, &state.order_id),
                    [],
                );
            }
            Row::Customer(key, value) => batch.put_cf(customers, key, value),
            Row::Revenue(key, value) => batch.put_cf(revenue, key, value),
            Row::Totals(value) => batch.put_cf(self.cf(CF_META), keys::META_TOTALS, value),
        });
        Replacement { batch, digest }
    }

    /// Writes a `replacement`, atomically and durably.
    pub fn replace_projections(&self, replacement: Replacement) -> Result<()> {
        self.write(replacement.batch, Durability::Sync)
    }

    /// Snapshots the stored projections at the head, durably, and returns the header.
    ///
    /// Rows are copied as stored bytes from one RocksDB snapshot of the live column
    /// families (consistent: it sits between two commits), in chunks of
    /// `SNAPSHOT_CHUNK_ROWS`, hashing them in `digest`'s order on the way: memory stays
    /// constant whatever the number of orders, and commits go on meanwhile. The header is
    /// written last, with fsync; until then the snapshot does not exist for readers.
    pub fn write_snapshot(&self, created_at: Timestamp) -> Result<SnapshotHeader> {
        let written = self.write_snapshot_then(created_at, || true)?;
        Ok(written.expect("a snapshot told to go on is written"))
    }

    /// `write_snapshot`, calling `taken` as soon as the RocksDB snapshot it copies from is
    /// taken (a writer that waits for it before its next commit fixes the position the
    /// snapshot covers), and writing only if `taken` returns true (else `None`: the view is
    /// dropped and nothing is written).
    pub fn write_snapshot_then(
        &self,
        created_at: Timestamp,
        taken: impl FnOnce() -> bool,
    ) -> Result<Option<SnapshotHeader>> {
        let snapshot = self.db.snapshot();
        if !taken() {
            return Ok(None);
        }
        let head: super::Head = self
            .meta_record_at(keys::META_HEAD, Some(&snapshot))?
            .ok_or_else(|| corrupt("meta", "the ledger has no head record"))?;
        let position = head.position;
        let mut batch = WriteBatch::default();
        self.delete_snapshot_rows(&mut batch, position);
        let rows = self.live_rows(&snapshot, |kind, key, value| {
            batch.put_cf(
                self.cf(CF_SNAPSHOTS),
                keys::snapshot_key(position, kind, key),
                value,
            );
            if batch.len() >= SNAPSHOT_CHUNK_ROWS {
                self.write(std::mem::take(&mut batch), Durability::Sync)?;
            }
            Ok(())
        })?;
        batch.put_cf(
            self.cf(CF_SNAPSHOTS),
            keys::snapshot_key(position, 0, &[]),
            codec::encode_record(&rows.totals),
        );
        let header = SnapshotHeader {
            position,
            max_occurred_at: rows.totals.max_occurred_at,
            digest: rows.digest,
            projection_version: crate::projection::PROJECTION_VERSION,
            orders: rows.orders,
            created_at,
        };
        batch.put_cf(
            self.cf(CF_META),
            keys::snapshot_header_key(position),
            codec::encode_record(&header),
        );
        self.write(batch, Durability::Sync)?;
        Ok(Some(header))
    }

    fn delete_snapshot_rows(&self, batch: &mut WriteBatch, position: Position) {
        let from = keys::snapshot_prefix(position);
        let to = keys::snapshot_prefix(Position(position.0.saturating_add(1)));
        batch.delete_range_cf(self.cf(CF_SNAPSHOTS), from, to);
    }

    /// Every snapshot header, oldest first.
    pub fn snapshot_headers(&self) -> Result<Vec<SnapshotHeader>> {
        self.scan(CF_META, keys::META_SNAPSHOT_PREFIX, |_, value| {
            decode("snapshot header", value)
        })
        .collect()
    }

    /// Loads the snapshot at `header.position` and checks it against the header's digest.
    pub fn load_snapshot(&self, header: &SnapshotHeader) -> Result<Book> {
        let (totals, rows) = self.check_snapshot(
            header,
            true,
            SNAPSHOT_CHECK_BUFFER_BYTES_MAX,
            SNAPSHOT_CHECK_RANGE_ORDERS,
        )?;
        // Rows come in key order: collecting them builds the maps in bulk, in linear time.
        let book = Book {
            orders: rows.orders.into_iter().collect(),
            customers: rows.customers.into_iter().collect(),
            revenue: rows.revenue.into_iter().collect(),
            totals,
            position: header.position,
        };
        debug_assert!(digest(&book) == header.digest, "stored bytes are canonical");
        Ok(book)
    }

    /// Checks the snapshot at `header.position` against its digest without decoding its
    /// rows, and returns its totals. With `snapshot_order_state`, a replay that needs only
    /// a few orders reads those and nothing else (`replay::summarize`).
    pub fn verify_snapshot(&self, header: &SnapshotHeader) -> Result<Totals> {
        let (totals, _) = self.check_snapshot(
            header,
            false,
            SNAPSHOT_CHECK_BUFFER_BYTES_MAX,
            SNAPSHOT_CHECK_RANGE_ORDERS,
        )?;
        Ok(totals)
    }

    /// Reads the snapshot `header`, checking its digest over the stored bytes as they are
    /// read (the codec is deterministic, so they are what `digest` would re-encode), and
    /// returns its totals and, if `decode_rows`, its rows decoded. The second thread holds
    /// at most about `buffer_bytes_max` bytes of digest input, in ranges of about
    /// `range_orders` orders.
    ///
    /// Reading the rows (iterator, block reads, LZ4) and decoding them is most of the work,
    /// and the digest is one stream. So the rows are cut into ranges: this thread takes them
    /// from the front and hashes them, a second thread takes them from the back and keeps
    /// their digest input in buffers (while it holds less than `buffer_bytes_max`), until
    /// the two meet; then this thread hashes the buffers, in key order. Which thread reads a
    /// range never changes the digest's input, only who waits.
    fn check_snapshot(
        &self,
        header: &SnapshotHeader,
        decode_rows: bool,
        buffer_bytes_max: usize,
        range_orders: u64,
    ) -> Result<(Totals, SnapshotPart)> {
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
        let mut rows = SnapshotPart::default();
        std::thread::scope(|scope| -> Result<()> {
            let back = scope.spawn(|| -> Result<Vec<(Vec<u8>, SnapshotPart)>> {
                let mut parts = Vec::new();
                let mut bytes = 0usize;
                while bytes < buffer_bytes_max
                    && let Some(range) = claim(true)
                {
                    let mut input = Vec::new();
                    let part =
                        self.feed_snapshot_rows(&what, range, decode_rows, &mut |bytes| {
                            input.extend_from_slice(bytes)
                        })?;
                    bytes += input.len();
                    parts.push((input, part));
                }
                Ok(parts)
            });
            while let Some(range) = claim(false) {
                let part = self.feed_snapshot_rows(&what, range, decode_rows, &mut |bytes| {
                    hasher.update(bytes)
                })?;
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
        Ok((decode(&what, &totals)?, rows))
    }

    /// Feeds `feed` the digest input of the snapshot rows in `range` (`from..to`, `to`
    /// `None`: to the end), in key order, and decodes them if `decode_rows`.
    fn feed_snapshot_rows(
        &self,
        what: &str,
        (from, to): (&[u8], Option<&[u8]>),
        decode_rows: bool,
        feed: &mut impl FnMut(&[u8]),
    ) -> Result<SnapshotPart> {
        let mut part = SnapshotPart::default();
        let rows = self.scan_range(CF_SNAPSHOTS, (from, to), None, |key, value| {
            let row = SnapshotRow::parse(what, key, value)?;
            row.feed(feed);
            match row {
                SnapshotRow::Totals(value) => part.totals = Some(value.to_vec()),
                _ if !decode_rows => {}
                SnapshotRow::Order(value) => {
                    let state: OrderState =
                        codec::decode_state(value).map_err(|reason| corrupt(what, reason))?;
                    part.orders.push((state.order_id.clone(), state));
                }
                SnapshotRow::Customer(key, value) => {
                    let key = keys::decode_customer_key(key)
                        .ok_or_else(|| corrupt(what, "malformed customer key"))?;
                    part.customers.push((key, decode(what, value)?));
                }
                SnapshotRow::Revenue(key, value) => {
                    let key = keys::decode_revenue_key(key)
                        .ok_or_else(|| corrupt(what, "malformed revenue key"))?;
                    part.revenue.push((key, decode(what, value)?));
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
        let mut rows = self.db.raw_iterator_cf(self.cf(cf));
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

    /// The totals row of the snapshot at `position` (checked by `verify_snapshot`).
    pub fn snapshot_totals(&self, position: Position) -> Result<Totals> {
        let what = format!("snapshot at position {position}");
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_SNAPSHOTS), keys::snapshot_key(position, 0, &[]))
            .map_err(storage)?
            .ok_or_else(|| corrupt(&what, "no totals row"))?;
        decode(&what, &raw)
    }

    /// One order's state in the snapshot at `position` (not checked against the digest on
    /// its own: callers verify the snapshot first).
    pub fn snapshot_order_state(
        &self,
        position: Position,
        order_id: &OrderId,
    ) -> Result<Option<OrderState>> {
        let key = keys::snapshot_key(
            position,
            keys::SNAPSHOT_ORDER,
            keys::order_state_key(order_id),
        );
        let Some(raw) = self
            .db
            .get_pinned_cf(self.cf(CF_SNAPSHOTS), key)
            .map_err(storage)?
        else {
            return Ok(None);
        };
        let what = format!("snapshot at position {position}");
        let state = codec::decode_state(&raw).map_err(|reason| corrupt(&what, reason))?;
        if &state.order_id != order_id {
            return Err(corrupt(
                &what,
                format!("the row of {order_id} holds {}", state.order_id),
            ));
        }
        Ok(Some(state))
    }

    /// Deletes the snapshot at `position`.
    pub fn delete_snapshot(&self, position: Position) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.delete_snapshot_rows(&mut batch, position);
        batch.delete_cf(self.cf(CF_META), keys::snapshot_header_key(position));
        self.write(batch, Durability::Sync)
    }
}

/// The smallest key greater than every key starting with `prefix` (None: no bound).
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xFF {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// Read options as of `at` (`None`: the latest data).
fn read_options(at: Option<&Snapshot<'_>>) -> ReadOptions {
    let mut opts = ReadOptions::default();
    if let Some(snapshot) = at {
        opts.set_snapshot(snapshot);
    }
    opts
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

    #[test]
    fn a_snapshot_check_gives_one_answer_however_its_rows_are_shared_out() {
        let (_tmp, ledger) = crate::store::ledger_of_placed_orders(300, 70);
        let header = ledger.snapshot_create().expect("snapshot");
        let store = ledger.store();
        // What the snapshot must hold: a fold of the log up to it.
        let filter = crate::ledger::Filter {
            at_position: Some(header.position),
            ..crate::ledger::Filter::default()
        };
        let full = crate::replay::replay(store, &filter, false, &crate::ledger::NoProgress)
            .expect("full replay")
            .book;
        let expected = full.totals;
        assert_eq!(store.verify_snapshot(&header).expect("valid"), expected);
        let loaded = store.load_snapshot(&header).expect("loads");
        assert_eq!(
            (
                &loaded.orders,
                &loaded.customers,
                &loaded.revenue,
                &loaded.totals
            ),
            (&full.orders, &full.customers, &full.revenue, &full.totals)
        );
        // No room to buffer (this thread reads everything), little, plenty; one range per
        // kind, ranges of 16 orders, of one order.
        let shares = [0, 1, 4096, usize::MAX]
            .into_iter()
            .flat_map(|buffer| [4096, 16, 1].map(|range_orders| (buffer, range_orders)));
        for (buffer, range_orders) in shares.clone() {
            let (totals, _) = store
                .check_snapshot(&header, false, buffer, range_orders)
                .expect("valid");
            assert_eq!(totals, expected, "{buffer} {range_orders}");
            let (totals, rows) = store
                .check_snapshot(&header, true, buffer, range_orders)
                .expect("valid");
            assert_eq!(totals, expected, "{buffer} {range_orders}");
            let orders: Vec<_> = full
                .orders
                .iter()
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect();
            assert_eq!(rows.orders, orders, "{buffer} {range_orders}");
            let customers: Vec<_> = full
                .customers_in_order()
                .into_iter()
                .map(|(key, row)| (key.clone(), *row))
                .collect();
            assert_eq!(rows.customers, customers);
            let revenue: Vec<_> = full.revenue.clone().into_iter().collect();
            assert_eq!(rows.revenue, revenue);
        }
        // One changed byte is found wherever it is, whichever thread reads it.
        let rows = store.raw_rows(super::CF_SNAPSHOTS).expect("rows");
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
                .tamper_raw(super::CF_SNAPSHOTS, key, Some(&changed))
                .expect("tamper");
            for ((buffer, range_orders), decode_rows) in shares.clone().zip([false, true].repeat(6))
            {
                let err = store
                    .check_snapshot(&header, decode_rows, buffer, range_orders)
                    .expect_err("refused");
                // Decoding meets the record's own checksum first; a check alone, the digest.
                let message = err.to_string();
                assert!(
                    matches!(err, Error::Corruption { .. })
                        && message.contains("snapshot at position")
                        && (message.contains("does not match its digest")
                            || decode_rows && message.contains("checksum")),
                    "{err}"
                );
            }
            store
                .tamper_raw(super::CF_SNAPSHOTS, key, Some(value))
                .expect("restore");
        }
        assert_eq!(store.verify_snapshot(&header).expect("valid"), expected);
    }
}
