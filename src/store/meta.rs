//! Records in `meta` besides the head: the ledger's settings (`ordo config`), the replica
//! marker (`ordo follow`), and the generic record reader the others use.

use rocksdb::{Snapshot, WriteBatch};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{CF_META, Durability, Store, decode};
use crate::domain::Position;
use crate::error::{Error, Result};
use crate::format::{codec, keys};

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

impl Store {
    pub(super) fn meta_record<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.meta_record_at(key, None)
    }

    pub(super) fn meta_record_at<T: DeserializeOwned>(
        &self,
        key: &[u8],
        at: Option<&Snapshot<'_>>,
    ) -> Result<Option<T>> {
        let raw = self.get_pinned_at(CF_META, key, at)?;
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

    /// The leader this ledger is a read replica of, if it is one.
    pub fn replica_of(&self) -> Result<Option<String>> {
        let raw = self.get_pinned(CF_META, keys::META_REPLICA_OF)?;
        raw.map(|bytes| {
            String::from_utf8(bytes.to_vec()).map_err(|_| Error::Corruption {
                position: Position(0),
                reason: "the replica_of record is not UTF-8".to_owned(),
            })
        })
        .transpose()
    }

    /// Marks the ledger as a read replica of `leader`, or (`None`) promotes it to a writer.
    pub fn set_replica_of(&self, leader: Option<&str>) -> Result<()> {
        let mut batch = WriteBatch::default();
        match leader {
            Some(leader) => {
                batch.put_cf(self.cf(CF_META), keys::META_REPLICA_OF, leader.as_bytes())
            }
            None => batch.delete_cf(self.cf(CF_META), keys::META_REPLICA_OF),
        }
        self.write(batch, Durability::Sync)
    }
}
