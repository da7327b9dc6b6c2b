//! The Merkle tree's stored nodes (`format::merkle`) in `meta`, the marker that the tree
//! covers the whole log, the ledger id and the checkpoint origin. A commit's nodes go into
//! its own `WriteBatch` (`tree_writes` makes them into rows): events and the nodes over them
//! are durable together or not at all.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{CF_META, Durability, Store, storage};
use crate::domain::{Hash, Position};
use crate::error::{Error, Result};
use crate::format::merkle::{self, Frontier, NodeId, STORED_LEVEL_MIN};
use crate::format::{RowWrite, chain, keys};

/// The rows that store the nodes `leaves` complete when appended to `frontier` (which
/// they advance): those of `STORED_LEVEL_MIN` and up.
pub fn tree_writes(frontier: &mut Frontier, leaves: &[Hash]) -> Vec<RowWrite> {
    let mut rows = Vec::with_capacity(leaves.len() / 8 + 8);
    for leaf in leaves {
        frontier.push(*leaf, &mut |id, hash| {
            if id.level < STORED_LEVEL_MIN {
                return;
            }
            rows.push(RowWrite {
                cf: CF_META,
                key: keys::merkle_node_key(id).to_vec(),
                value: Some(hash.0.to_vec()),
            });
        });
    }
    rows
}

/// A damaged or missing tree node: corruption at the last position it covers.
fn bad_node(id: NodeId, reason: &str) -> Error {
    Error::Corruption {
        position: Position(id.end_leaf()),
        reason: format!(
            "Merkle tree node at level {} index {} (positions {} to {}) {reason}",
            id.level,
            id.index,
            id.first_leaf() + 1,
            id.end_leaf()
        ),
    }
}

impl Store {
    /// Whether the Merkle tree covers the whole log (false for a ledger written before
    /// the tree was kept, until it is built).
    pub fn merkle_kept(&self) -> Result<bool> {
        Ok(self.get_pinned(CF_META, keys::META_MERKLE_KEPT)?.is_some())
    }

    /// The hash of a complete perfect subtree: a stored node, or below `STORED_LEVEL_MIN`
    /// recomputed from its events (at most 8, read as one range).
    pub fn merkle_node(&self, id: NodeId) -> Result<Hash> {
        if id.level < STORED_LEVEL_MIN {
            let width = id.end_leaf() - id.first_leaf();
            let mut subtree = Frontier::default();
            for event in self
                .events_from(Position(id.first_leaf() + 1))
                .take(width as usize)
            {
                let leaf = merkle::leaf_hash(&chain::canonical_bytes(&event?));
                subtree.push(leaf, &mut |_, _| {});
            }
            if subtree.size() != width {
                return Err(bad_node(id, "covers events past the end of the log"));
            }
            return Ok(subtree.root());
        }
        let raw = self
            .get_pinned(CF_META, &keys::merkle_node_key(id))?
            .ok_or_else(|| bad_node(id, "is missing"))?;
        let bytes = <[u8; 32]>::try_from(raw.as_ref())
            .map_err(|_| bad_node(id, &format!("has {} bytes, not 32", raw.len())))?;
        Ok(Hash(bytes))
    }

    /// The tree's frontier at `size` leaves (what the writer appends to).
    pub fn merkle_frontier(&self, size: u64) -> Result<Frontier> {
        Frontier::load(size, &mut |id| self.merkle_node(id))
    }

    /// What is wrong when a stored node covers a leaf at or past `size` (a tree of `size`
    /// leaves has none), naming the first such node.
    pub fn merkle_node_beyond(&self, size: u64) -> Result<Option<String>> {
        for level in STORED_LEVEL_MIN..64u8 {
            let from = keys::merkle_node_key(NodeId {
                level,
                index: size >> level,
            });
            let mut opts = rocksdb::ReadOptions::default();
            let _view = self.read_at(&mut opts, None);
            let mut rows = self.db.iterator_cf_opt(
                self.cf(CF_META),
                opts,
                IteratorMode::From(&from, Direction::Forward),
            );
            if let Some(row) = rows.next() {
                let (key, _) = row.map_err(storage)?;
                if let Some(id) = keys::decode_merkle_node_key(&key)
                    && id.level == level
                {
                    return Ok(Some(format!(
                        "the Merkle tree has a node at level {level} index {} beyond the log's {size} events",
                        id.index
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Builds the tree of a ledger written before it was kept, from the log (the writer is
    /// held): stores every node, then marks the tree kept. Interrupted, it starts over (the
    /// same nodes are written again). `advance` is told each event hashed.
    pub fn build_merkle(&self, head: Position, advance: &mut dyn FnMut(u64)) -> Result<()> {
        // Leaves hashed per message from the reading thread, and nodes written per batch.
        const LEAVES_PER_CHUNK: usize = 16_384;
        const CHUNKS_QUEUED_MAX: usize = 4;
        let mut frontier = Frontier::default();
        // Two stages on the two cores: one thread reads, decodes and hashes the leaves;
        // this one completes the nodes and writes them.
        std::thread::scope(|scope| -> Result<()> {
            let (chunks, received) = std::sync::mpsc::sync_channel(CHUNKS_QUEUED_MAX);
            let reader = scope.spawn(move || -> Result<()> {
                let mut leaves = Vec::with_capacity(LEAVES_PER_CHUNK);
                for event in self.events_from(Position(1)) {
                    let event = event?;
                    if event.position > head {
                        break;
                    }
                    leaves.push(merkle::leaf_hash(&chain::canonical_bytes(&event)));
                    if leaves.len() == LEAVES_PER_CHUNK
                        && chunks.send(std::mem::take(&mut leaves)).is_err()
                    {
                        return Ok(()); // the writer stopped; its error is the one to report
                    }
                }
                let _ = chunks.send(leaves);
                Ok(())
            });
            for leaves in received {
                let rows = tree_writes(&mut frontier, &leaves);
                advance(leaves.len() as u64);
                self.write_rows(&rows, Durability::NoSync)?;
            }
            reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        assert_eq!(
            frontier.size(),
            head.0,
            "the tree is built over the whole log"
        );
        let mut batch = WriteBatch::default();
        // Nodes beyond the log (a damaged tree being rewritten) go.
        for level in STORED_LEVEL_MIN..64u8 {
            let from = keys::merkle_node_key(NodeId {
                level,
                index: head.0 >> level,
            });
            let mut to = keys::merkle_node_key(NodeId { level, index: 0 });
            to[7] = level + 1;
            batch.delete_range_cf(self.cf(CF_META), from, to);
        }
        batch.put_cf(self.cf(CF_META), keys::META_MERKLE_KEPT, [1u8]);
        // With its tree, the ledger is of the format that keeps it (an older ordo would
        // append without the tree, so it must refuse the ledger).
        batch.put_cf(
            self.cf(CF_META),
            keys::META_FORMAT,
            [crate::format::LEDGER_FORMAT_VERSION],
        );
        if self.ledger_id()?.is_none() {
            batch.put_cf(self.cf(CF_META), keys::META_LEDGER_ID, new_ledger_id()?);
        }
        self.write(batch, Durability::Sync)
    }

    /// Why the stored node `id` is not `hash` (missing, damaged or different), if it is not.
    pub fn merkle_mismatch(&self, id: NodeId, hash: &Hash) -> Result<Option<String>> {
        match self.merkle_node(id) {
            Ok(stored) if stored == *hash => Ok(None),
            Ok(stored) => Ok(Some(format!(
                "Merkle tree node at level {} index {} is stored as {stored}, recomputed {hash} from the log",
                id.level, id.index
            ))),
            Err(Error::Corruption { reason, .. }) => Ok(Some(reason)),
            Err(e) => Err(e),
        }
    }

    /// The ledger id (16 bytes), if it has one yet.
    pub fn ledger_id(&self) -> Result<Option<[u8; 16]>> {
        let raw = self.get_pinned(CF_META, keys::META_LEDGER_ID)?;
        raw.map(|bytes| {
            <[u8; 16]>::try_from(bytes.as_ref()).map_err(|_| Error::Corruption {
                position: Position(0),
                reason: format!("the ledger id record has {} bytes, not 16", bytes.len()),
            })
        })
        .transpose()
    }

    /// The origin set by `ordo config origin`, if any.
    pub fn origin_setting(&self) -> Result<Option<String>> {
        let raw = self.get_pinned(CF_META, keys::META_ORIGIN)?;
        raw.map(|bytes| {
            String::from_utf8(bytes.to_vec()).map_err(|_| Error::Corruption {
                position: Position(0),
                reason: "the origin record is not UTF-8".to_owned(),
            })
        })
        .transpose()
    }

    /// Stores the checkpoint origin durably.
    pub fn set_origin(&self, origin: &str) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), keys::META_ORIGIN, origin.as_bytes());
        self.write(batch, Durability::Sync)
    }
}

/// 16 random bytes from the operating system.
pub(super) fn new_ledger_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| Error::Storage(format!("cannot draw a random ledger id: {e}")))?;
    Ok(id)
}
