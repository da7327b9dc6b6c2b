//! The aggregate projections as stored rows: for each table its column family, its key, its
//! row type and how a commit's `Delta` adds to it; a whole `Book` as rows, with its digest;
//! rows read back into a `Book`. A new projection is a `Table` here (its bytes in
//! `format::keys`, its column family in `format`); `store` stays generic: it moves the rows
//! this module makes and hands back the bytes it reads.
//!
//! Still no I/O: reading the rows a delta adds to goes through a closure the caller gives.

use serde::{Serialize, de::DeserializeOwned};

use super::{
    Add, Book, CustomerKey, CustomerRow, Day, Delta, RevenueKey, RevenueRow, Totals, in_key_order,
};
use crate::domain::{Hash, OrderId, OrderState, Position, Status};
use crate::error::{Error, Result};
use crate::format::digest::Digester;
use crate::format::{
    CF_CUSTOMERS, CF_META, CF_ORDER_STATE, CF_REVENUE, CF_STATUS_ORDERS, RowWrite, codec, keys,
};

/// One aggregate table: rows of `Row` under keys of `Key`, in column family `CF`.
pub trait Table {
    /// Its column family.
    const CF: &'static str;
    /// What a row is keyed by.
    type Key;
    /// A row: a sum, so a commit adds its change to the stored row.
    type Row: Add + Default + Serialize + DeserializeOwned;

    /// The stored key of `key`.
    fn key(key: &Self::Key) -> Vec<u8>;

    /// The key stored as `bytes`, if they are one.
    fn decode_key(bytes: &[u8]) -> Option<Self::Key>;

    /// A stored row, decoded and checked.
    fn decode(key: &[u8], value: &[u8]) -> Result<(Self::Key, Self::Row)> {
        let decoded = Self::decode_key(key).ok_or_else(|| corrupt(Self::CF, "malformed key"))?;
        Ok((decoded, decode_record(Self::CF, value)?))
    }
}

/// Per-customer totals (`customers`).
pub struct Customers;

impl Table for Customers {
    const CF: &'static str = CF_CUSTOMERS;
    type Key = CustomerKey;
    type Row = CustomerRow;

    fn key(key: &CustomerKey) -> Vec<u8> {
        keys::customer_key(&key.customer_id, key.currency)
    }

    fn decode_key(bytes: &[u8]) -> Option<CustomerKey> {
        let (customer_id, currency) = keys::decode_customer_key(bytes)?;
        Some(CustomerKey {
            customer_id,
            currency,
        })
    }
}

/// Revenue by day and currency (`revenue`).
pub struct Revenue;

impl Table for Revenue {
    const CF: &'static str = CF_REVENUE;
    type Key = RevenueKey;
    type Row = RevenueRow;

    fn key(key: &RevenueKey) -> Vec<u8> {
        keys::revenue_key(key.day.0, key.currency)
    }

    fn decode_key(bytes: &[u8]) -> Option<RevenueKey> {
        let (day, currency) = keys::decode_revenue_key(bytes)?;
        Some(RevenueKey {
            day: Day(day),
            currency,
        })
    }
}

/// Reads one stored row: (column family, key) -> its bytes, if it exists.
pub trait ReadRow: FnMut(&'static str, &[u8]) -> Result<Option<Vec<u8>>> {}
impl<F: FnMut(&'static str, &[u8]) -> Result<Option<Vec<u8>>>> ReadRow for F {}

/// The stored totals (`meta` record `totals`; defaults before the first commit).
pub fn stored_totals(read: &mut impl ReadRow) -> Result<Totals> {
    read(CF_META, keys::META_TOTALS)?
        .map(|bytes| decode_totals("totals", &bytes))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Decodes a totals record (`what` names it in an error).
pub fn decode_totals(what: &str, bytes: &[u8]) -> Result<Totals> {
    decode_record(what, bytes)
}

/// The rows a commit writes for `delta`: the status index moves, every changed customer and
/// revenue row (read, added to, written back) and the totals. The stored rows are read with
/// `read`. Keys come in key order, table by table (`Store::commit` says why).
pub fn delta_writes(delta: &Delta, mut read: impl ReadRow) -> Result<Vec<RowWrite>> {
    let mut writes = Vec::with_capacity(2 * delta.moves.len() + delta.customers.len() + 8);
    let mut totals = stored_totals(&mut read)?;
    for (order_id, (from, to)) in in_key_order(&delta.moves) {
        if let Some(from) = from {
            writes.push(RowWrite {
                cf: CF_STATUS_ORDERS,
                key: keys::status_order_key(*from, order_id),
                value: None,
            });
        }
        writes.push(RowWrite {
            cf: CF_STATUS_ORDERS,
            key: keys::status_order_key(*to, order_id),
            value: Some(Vec::new()),
        });
        totals
            .move_order(*from, *to)
            .map_err(|reason| corrupt("totals", reason))?;
    }
    totals.max_occurred_at = totals.max_occurred_at.max(delta.max_occurred_at);
    add_rows::<Customers>(&mut writes, in_key_order(&delta.customers), &mut read)?;
    add_rows::<Revenue>(&mut writes, delta.revenue.iter(), &mut read)?;
    writes.push(RowWrite {
        cf: CF_META,
        key: keys::META_TOTALS.to_vec(),
        value: Some(codec::encode_record(&totals)),
    });
    Ok(writes)
}

/// Adds each change to its stored row of table `T` and pushes the sums to `writes`.
fn add_rows<'c, T: Table + 'c>(
    writes: &mut Vec<RowWrite>,
    changes: impl IntoIterator<Item = (&'c T::Key, &'c T::Row)>,
    read: &mut impl ReadRow,
) -> Result<()> {
    for (key, change) in changes {
        let key = T::key(key);
        let mut row: T::Row = match read(T::CF, &key)? {
            Some(bytes) => decode_record(T::CF, &bytes)?,
            None => T::Row::default(),
        };
        row.add(change);
        writes.push(RowWrite {
            cf: T::CF,
            value: Some(codec::encode_record(&row)),
            key,
        });
    }
    Ok(())
}

/// A digest of every projection in `book`: equal books have equal digests.
pub fn digest(book: &Book) -> Hash {
    book_rows(book, |_, _, _| Ok(()), |_| Ok(())).expect("hashing alone does not fail")
}

/// Encodes every row of `book` once and returns the digest. `put` gets the rows the digest
/// covers, as (column family, key, value), in the digest's order (`format::DIGEST_TABLES`:
/// orders, customers, revenue, each in the order of its stored keys, then the totals);
/// `index` gets the keys of the `status_orders` rows (their values are empty), in key
/// order, on a second thread. The one place that fixes what the digest of a book covers;
/// `Store::live_digest` hashes stored rows the same way. The first error either returns
/// ends it.
///
/// The customer rows are encoded and sorted on a third thread while this one encodes the
/// orders (one after the other, the two were a third of what a rebuild spent here after
/// its fold); the digest is one stream, so this thread hashes all.
pub fn book_rows(
    book: &Book,
    mut put: impl FnMut(&'static str, &[u8], &[u8]) -> Result<()>,
    index: impl FnMut(&[u8]) -> Result<()> + Send,
) -> Result<Hash> {
    let mut hasher = Digester::default();
    // In id order once, for both threads (a walk of orders first seen out of id order sorts).
    let orders: Vec<&OrderState> = book.orders.values().collect();
    std::thread::scope(|scope| {
        let customers = scope.spawn(|| encoded_customers(book));
        let indexed = scope.spawn(|| status_index(&orders, index));
        let rows = (|| -> Result<()> {
            for state in &orders {
                let value = codec::encode_state(state);
                hasher.update(&value);
                put(
                    CF_ORDER_STATE,
                    keys::order_state_key(&state.order_id),
                    &value,
                )?;
            }
            let customers = customers
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (key, value) in customers {
                hasher.update(&key);
                hasher.update(&value);
                put(CF_CUSTOMERS, &key, &value)?;
            }
            for (key, row) in &book.revenue {
                let (key, value) = (Revenue::key(key), codec::encode_record(row));
                hasher.update(&key);
                hasher.update(&value);
                put(CF_REVENUE, &key, &value)?;
            }
            let totals = codec::encode_record(&book.totals);
            hasher.update(&totals);
            put(CF_META, keys::META_TOTALS, &totals)
        })();
        let indexed = indexed
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        rows.and(indexed)
    })?;
    Ok(hasher.finalize())
}

/// Hands `index` the key of every `status_orders` row of `orders` (in id order), in key
/// order: status by status (`keys::status_byte`, the order of `Status::ALL`), then by id.
fn status_index(orders: &[&OrderState], mut index: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut by_status: [Vec<&OrderId>; Status::ALL.len()] = Default::default();
    for state in orders {
        by_status[state.status.index()].push(&state.order_id);
    }
    let mut key = Vec::new();
    for (status, ids) in Status::ALL.into_iter().zip(by_status) {
        for id in ids {
            keys::set_status_order_key(&mut key, status, id);
            index(&key)?;
        }
    }
    Ok(())
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
            let key = Customers::key(key);
            (prefix(&key), key, codec::encode_record(row))
        })
        .collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    rows.into_iter()
        .map(|(_, key, value)| (key, value))
        .collect()
}

/// One projection row read back from a snapshot.
#[derive(Debug)]
pub enum BookRow {
    /// An order's state.
    Order(OrderId, OrderState),
    /// A customer's totals.
    Customer(CustomerKey, CustomerRow),
    /// A day's revenue.
    Revenue(RevenueKey, RevenueRow),
}

/// Decodes a snapshot row of `kind` (`keys::SNAPSHOT_*`) with its own `key` and `value`;
/// `what` names the snapshot in an error.
pub fn decode_snapshot_row(what: &str, kind: u8, key: &[u8], value: &[u8]) -> Result<BookRow> {
    Ok(match kind {
        keys::SNAPSHOT_ORDER => {
            let state = codec::decode_state(value).map_err(|reason| corrupt(what, reason))?;
            BookRow::Order(state.order_id.clone(), state)
        }
        keys::SNAPSHOT_CUSTOMER => BookRow::Customer(
            Customers::decode_key(key).ok_or_else(|| corrupt(what, "malformed customer key"))?,
            decode_record(what, value)?,
        ),
        keys::SNAPSHOT_REVENUE => BookRow::Revenue(
            Revenue::decode_key(key).ok_or_else(|| corrupt(what, "malformed revenue key"))?,
            decode_record(what, value)?,
        ),
        other => return Err(corrupt(what, format!("unknown row kind {other}"))),
    })
}

impl Book {
    /// The book of a snapshot at `position`: its rows in key order, and its totals.
    pub fn from_rows(rows: Vec<BookRow>, totals: Totals, position: Position) -> Book {
        let mut book = Book {
            totals,
            position,
            ..Book::default()
        };
        // Rows come in key order: collecting them builds the maps in bulk, in linear time.
        let (mut orders, mut customers) = (Vec::new(), Vec::new());
        for row in rows {
            match row {
                BookRow::Order(id, state) => orders.push((id, state)),
                BookRow::Customer(key, row) => customers.push((key, row)),
                BookRow::Revenue(key, row) => {
                    book.revenue.insert(key, row);
                }
            }
        }
        book.orders = orders.into_iter().collect();
        book.customers = customers.into_iter().collect();
        book
    }
}

fn decode_record<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    codec::decode_record(bytes).map_err(|reason| corrupt(what, reason))
}

fn corrupt(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Corruption {
        position: Position(0),
        reason: format!("{what}: {reason}"),
    }
}
