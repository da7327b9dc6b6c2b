//! Whole-ledger reads: queries (from the stored projections now, from a replay at a point in
//! time), replay, snapshots, settings, rebuild and audits.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{Filter, Ledger, NewEvent, Preserved, Progress};
use crate::domain::{Actor, Event, Hash, OrderId, OrderState, Position, Timestamp, apply};
use crate::error::{Error, Result};
use crate::format::chain;
use crate::projection::query::{self, OrderFilter, RevenueFilter};
use crate::projection::{Book, PROJECTION_VERSION};
use crate::projection::{Table, tables};
use crate::replay::{self, Replay, Summary};
use crate::store::{
    Access, CF_CUSTOMERS, CF_ORDER_STATE, CF_REVENUE, CF_STATUS_ORDERS, Settings, SnapshotHeader,
    Store,
};

/// A snapshot as `snapshot list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    /// Position covered.
    pub position: Position,
    /// Latest occurred_at it contains.
    pub max_occurred_at: Option<Timestamp>,
    /// Orders it holds.
    pub orders: u64,
    /// Content digest.
    pub digest: String,
    /// Projection code version that wrote it.
    pub projection_version: u32,
    /// False when written by other projection code: never used.
    pub usable: bool,
    /// When it was taken.
    pub created_at: Timestamp,
}

impl From<SnapshotHeader> for SnapshotInfo {
    fn from(h: SnapshotHeader) -> SnapshotInfo {
        SnapshotInfo {
            position: h.position,
            max_occurred_at: h.max_occurred_at,
            orders: h.orders,
            digest: h.digest.to_hex(),
            projection_version: h.projection_version,
            usable: h.projection_version == PROJECTION_VERSION,
            created_at: h.created_at,
        }
    }
}

/// What `rebuild` found and did.
#[derive(Clone, Debug, Serialize)]
pub struct RebuildReport {
    /// Events folded.
    pub events: u64,
    /// Digest of the projections rebuilt from the log.
    pub rebuilt_digest: String,
    /// Digest of the stored projections before.
    pub live_digest: String,
    /// Whether they were equal.
    pub matched: bool,
    /// Whether the stored projections are now the rebuilt ones (always, when a rebuild
    /// returns: equal ones are left as they are, differing rows are rewritten with `--force`).
    pub swapped: bool,
    /// Stored rows written or deleted to make them equal to the rebuilt ones (0 when they
    /// matched).
    pub rows_rewritten: u64,
    /// Whether the Merkle tree was rewritten from the log (`--force`, or a ledger without
    /// one).
    pub tree_rebuilt: bool,
}

/// `state_after` of an audit entry.
#[derive(Clone, Debug, Serialize)]
pub struct StateAfter {
    status: crate::domain::Status,
    total: i64,
    paid: i64,
    refunded: i64,
}

fn audit_entry(event: &Event, state: Option<&OrderState>, verified: bool) -> Value {
    let mut entry = event.envelope_json();
    let object = entry
        .as_object_mut()
        .expect("the envelope is a JSON object");
    let after = state.map(|s| StateAfter {
        status: s.status,
        total: s.total.0,
        paid: s.paid.0,
        refunded: s.refunded.0,
    });
    object.insert(
        "state_after".to_owned(),
        serde_json::to_value(after).expect("plain struct"),
    );
    object.insert("verified".to_owned(), Value::Bool(verified));
    entry
}

/// The column families a rebuild compares whole with the rows the digest covers (the totals
/// record in `meta` is compared by its key; `status_orders`, which the digest does not
/// cover, is compared whole on its own).
const DIGESTED_TABLES: [&str; 3] = [CF_ORDER_STATE, CF_CUSTOMERS, CF_REVENUE];

impl Ledger {
    fn book_at(&self, filter: &Filter) -> Result<Book> {
        Ok(replay::replay(&self.store, filter, true, &super::NoProgress)?.book)
    }

    /// Every row of the stored table `T`, in key order.
    fn stored_rows<T: Table>(&self) -> Result<Vec<(T::Key, T::Row)>> {
        self.store.scan(T::CF, &[], T::decode).collect()
    }

    /// `query statuses`.
    pub fn query_statuses(&self, filter: &Filter) -> Result<Vec<query::StatusCount>> {
        let counts = if filter.is_unfiltered() {
            tables::stored_totals(&mut |cf, key| self.store.get(cf, key))?.statuses
        } else {
            self.book_at(filter)?.totals.statuses
        };
        Ok(query::statuses(&counts))
    }

    /// `query orders`.
    pub fn query_orders(&self, of: &OrderFilter, filter: &Filter) -> Result<Vec<OrderState>> {
        if !filter.is_unfiltered() {
            return Ok(query::orders(self.book_at(filter)?.orders.values(), of));
        }
        let states: Box<dyn Iterator<Item = Result<OrderState>>> = match of.status {
            Some(status) => Box::new(self.store.orders_in_status(status)),
            None => Box::new(self.store.order_states()),
        };
        let mut out = Vec::new();
        for state in states {
            let state = state?;
            if out.len() >= of.limit.unwrap_or(usize::MAX) {
                break;
            }
            if of.admits(&state) {
                out.push(state);
            }
        }
        Ok(out)
    }

    /// `query customers`.
    pub fn query_customers(
        &self,
        customer: Option<&crate::domain::CustomerId>,
        filter: &Filter,
    ) -> Result<Vec<query::CustomerTotals>> {
        if filter.is_unfiltered() {
            let rows = self.stored_rows::<tables::Customers>()?;
            return Ok(query::customers(rows.iter().map(|(k, r)| (k, r)), customer));
        }
        Ok(query::customers(
            self.book_at(filter)?.customers_in_order().into_iter(),
            customer,
        ))
    }

    /// `query revenue`.
    pub fn query_revenue(
        &self,
        of: &RevenueFilter,
        filter: &Filter,
    ) -> Result<Vec<query::Revenue>> {
        if filter.is_unfiltered() {
            let rows = self.stored_rows::<tables::Revenue>()?;
            return Ok(query::revenue(rows.iter().map(|(k, r)| (k, r)), of));
        }
        Ok(query::revenue(self.book_at(filter)?.revenue.iter(), of))
    }

    /// The whole ledger at `filter`'s point, from the nearest usable snapshot.
    pub fn replay(&self, filter: &Filter, progress: &dyn Progress) -> Result<Replay> {
        replay::replay(&self.store, filter, true, progress)
    }

    /// `ordo replay`'s summary at `filter`'s point: reads the nearest usable snapshot's
    /// totals (verified) and only the orders the tail touches.
    pub fn replay_summary(&self, filter: &Filter, progress: &dyn Progress) -> Result<Summary> {
        replay::summarize(&self.store, filter, true, progress)
    }

    /// Writes a point-in-time copy of the ledger into `dir` (new, or an empty directory
    /// outside the ledger): the events up to the target, with the same positions, times and
    /// hashes, and their projections. The copy is built in a temporary sibling of `dir` and
    /// renamed into place at the end, so an interrupted copy never looks like a ledger.
    /// Returns the copy's head.
    pub fn replay_into(
        &self,
        filter: &Filter,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<crate::store::Head> {
        if filter.valid_at.is_some() {
            return Err(Error::InvalidInput(
                "--into copies a prefix of the log (--as-of or --at-position); a --valid-at view is not a prefix, so its hashes could not be kept".to_owned(),
            ));
        }
        let dir = into_destination(self.store.path(), dir)?;
        let target = replay::target_position(&self.store, filter)?;
        let parent = dir.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let building = tempfile::Builder::new()
            .prefix(".ordo-replay-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let head = self.copy_into(building.path(), target, progress)?;
        // rename(2) replaces an empty directory; the copy is complete and closed here.
        std::fs::rename(building.path(), &dir).map_err(|e| Error::io(&dir, e))?;
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(parent, e))?;
        Ok(head)
    }

    /// Copies the events up to `target` into a new ledger at `dir`; returns its head.
    fn copy_into(
        &self,
        dir: &Path,
        target: Position,
        progress: &dyn Progress,
    ) -> Result<crate::store::Head> {
        let copy = Ledger::open(dir, Access::ReadWrite)?;
        progress.begin("copying", Some(target.0));
        let mut batch = Vec::with_capacity(super::import::BATCH_EVENTS_DEFAULT);
        for event in self.store.events_from(Position(1)) {
            let event = event?;
            if event.position > target {
                break;
            }
            batch.push((event.position.0, preserving(event)));
            if batch.len() == super::import::BATCH_EVENTS_DEFAULT {
                progress.advance(batch.len() as u64);
                copy.append_batch(std::mem::take(&mut batch))?;
            }
        }
        progress.advance(batch.len() as u64);
        copy.append_batch(batch)?;
        progress.end();
        copy.head()
    }

    /// Takes a snapshot of every projection at the head (needs the ledger open for writing).
    pub fn snapshot_create(&self) -> Result<SnapshotHeader> {
        self.sequencer()?.exclusive(super::write::snapshot)
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        Ok(self
            .store
            .snapshot_headers()?
            .into_iter()
            .map(SnapshotInfo::from)
            .collect())
    }

    /// Deletes all but the newest `keep` snapshots; returns the positions deleted.
    pub fn snapshot_prune(&self, keep: usize) -> Result<Vec<Position>> {
        self.sequencer()?.exclusive(move |store: &Store| {
            let headers = store.snapshot_headers()?;
            let doomed: Vec<Position> = headers
                .iter()
                .rev()
                .skip(keep)
                .map(|h| h.position)
                .collect();
            for position in &doomed {
                store.delete_snapshot(*position)?;
            }
            Ok(doomed)
        })
    }

    /// The ledger's settings.
    pub fn settings(&self) -> Result<Settings> {
        self.store.settings()
    }

    /// Changes the ledger's settings (needs the ledger open for writing).
    pub fn set_settings(&self, settings: Settings) -> Result<()> {
        self.sequencer()?
            .exclusive(move |store: &Store| store.set_settings(&settings))
    }

    /// Rebuilds every projection from the log and compares it with the stored ones, row by
    /// row (keys, values and the status index) and by digest. Equal: nothing is written.
    /// Different: nothing is changed and the mismatch is an error, unless `force`, which
    /// writes the rows that differ in one atomic, durable write, so that the stored
    /// projections become the rebuilt ones.
    pub fn rebuild(
        &self,
        force: bool,
        progress: Box<dyn Progress + Send>,
    ) -> Result<RebuildReport> {
        self.sequencer()?.exclusive(move |store: &Store| {
            // The writer is held: the stored projections cannot change while this runs.
            let replayed = replay::replay(store, &Filter::default(), false, progress.as_ref())?;
            let mut tables = store.reconciler(&DIGESTED_TABLES, &super::PROJECTIONS);
            let mut index = store.reconciler(&[CF_STATUS_ORDERS], &super::PROJECTIONS);
            let rebuilt = tables::book_rows(
                &replayed.book,
                |cf, key, value| tables.row(cf, key, value),
                |key| index.row(CF_STATUS_ORDERS, key, &[]),
            )?;
            let mut differences = tables.finish()?;
            differences.extend(index.finish()?);
            let matched = differences.is_empty();
            // Equal rows hash alike: the stored digest is read again only when they differ.
            let live = if matched {
                rebuilt
            } else {
                store.live_digest(&super::PROJECTIONS)?
            };
            if let Some(first) = differences.first().filter(|_| !force) {
                return Err(Error::Corruption {
                    position: replayed.position,
                    reason: format!(
                        "{} stored projection rows differ from a rebuild from the log, the first in {} at key \"{}\" (stored digest {live}, rebuilt {rebuilt}); nothing was changed; `ordo rebuild --force` replaces them",
                        differences.len(),
                        first.cf,
                        first.key.escape_ascii(),
                    ),
                });
            }
            let tree = rebuild_tree(store, replayed.position, force)?;
            if !matched {
                store.write_differences(&differences)?;
            }
            Ok(RebuildReport {
                events: replayed.events_applied,
                rebuilt_digest: rebuilt.to_hex(),
                live_digest: live.to_hex(),
                matched,
                swapped: true,
                rows_rewritten: differences.len() as u64,
                tree_rebuilt: tree,
            })
        })
    }

    /// `audit ORDER`: the order's events under `filter`, each with the state after it and
    /// whether its hash verifies against its predecessor.
    pub fn audit(&self, order_id: &OrderId, filter: &Filter) -> Result<Vec<Value>> {
        let mut state = None;
        let mut entries = Vec::new();
        for event in self.history(order_id, filter)? {
            let previous = self.hash_at(Position(event.position.0 - 1))?;
            state = apply(state, &event);
            entries.push(audit_entry(
                &event,
                state.as_ref(),
                verifies(&previous, &event),
            ));
        }
        Ok(entries)
    }

    /// `audit --actor`: every event `actor` recorded between `from` and `to` (recorded_at,
    /// inclusive), with the state of its order after it. Reads the whole log.
    pub fn audit_actor(
        &self,
        actor: &Actor,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<Value>> {
        let mut states: HashMap<OrderId, OrderState> = HashMap::new();
        let mut previous = chain::GENESIS;
        let mut entries = Vec::new();
        for event in self.store.events_from(Position(1)) {
            let event = event?;
            if to.is_some_and(|to| event.recorded_at > to) {
                break;
            }
            let verified = verifies(&previous, &event);
            previous = event.hash;
            let next = apply(states.remove(&event.order_id), &event);
            let wanted = event.actor.as_ref() == Some(actor)
                && from.is_none_or(|from| event.recorded_at >= from);
            if wanted {
                entries.push(audit_entry(&event, next.as_ref(), verified));
            }
            if let Some(next) = next {
                states.insert(event.order_id.clone(), next);
            }
        }
        Ok(entries)
    }
}

/// With `force` (or for a ledger without a tree), rewrites the Merkle tree from the log up
/// to `head`; returns whether it did. A rebuild of the projections does not read the tree
/// otherwise: checking it costs a second pass over the log, and `verify` does that.
fn rebuild_tree(store: &Store, head: Position, force: bool) -> Result<bool> {
    if force || !store.merkle_kept()? {
        store.build_merkle(head, &mut |_| {})?;
        return Ok(true);
    }
    Ok(false)
}

fn verifies(previous: &Hash, event: &Event) -> bool {
    chain::chain(previous, event) == event.hash
}

/// The event as an input that `import --preserve` would give: same id, times and hash.
fn preserving(event: Event) -> NewEvent {
    NewEvent {
        preserved: Some(Preserved {
            position: event.position,
            version: event.version,
            recorded_at: event.recorded_at,
            hash: event.hash,
        }),
        order_id: event.order_id,
        data: event.data,
        occurred_at: Some(event.occurred_at),
        event_id: Some(event.event_id),
        expected_version: None,
        actor: event.actor,
        correlation_id: event.correlation_id,
        causation_id: event.causation_id,
    }
}

/// Where `replay --into DIR` may write: `dir` resolved (symbolic links and `..` followed as
/// far as it exists), refused when it exists and is not an empty directory, or lies inside
/// the ledger `ledger`.
fn into_destination(ledger: &Path, dir: &Path) -> Result<std::path::PathBuf> {
    let resolved = resolved(dir).map_err(|e| Error::io(dir, e))?;
    let ledger = resolved_ledger(ledger)?;
    if resolved.starts_with(&ledger) {
        return Err(Error::InvalidInput(format!(
            "--into {} lies inside the ledger {}; choose a directory outside it",
            dir.display(),
            ledger.display()
        )));
    }
    match std::fs::read_dir(&resolved) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::InvalidInput(format!(
                    "--into {} is not empty; --into needs a new or empty directory",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::InvalidInput(format!(
                "--into {} is a file; --into needs a new or empty directory",
                dir.display()
            )));
        }
        Err(e) => return Err(Error::io(dir, e)),
    }
    Ok(resolved)
}

fn resolved_ledger(ledger: &Path) -> Result<std::path::PathBuf> {
    ledger.canonicalize().map_err(|e| Error::io(ledger, e))
}

/// `path` made absolute, its longest existing ancestor canonicalized and the rest appended.
fn resolved(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize()?;
    out.extend(missing.iter().rev());
    Ok(out)
}
