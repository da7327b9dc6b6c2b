//! RocksDB's options for each column family: compression, bloom filters, the block cache
//! and memtable budgets; and where RocksDB's info log goes for a brief writer and a reader
//! beside a writer.
//! Every value has its reason next to it.

use rocksdb::{DBCompressionType, Options};

use super::{
    Access, CF_CUSTOMERS, CF_EVENT_IDS, CF_ORDER_STATE, CF_REVENUE, CF_SNAPSHOTS, CF_STATUS_ORDERS,
    storage,
};
use crate::error::Result;

/// The block cache shared by all column families of a store.
pub const BLOCK_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// Memtable memory of all column families together.
pub const WRITE_BUFFERS_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The level size RocksDB starts from for a brief writer (`ordo append`); see `options`.
const BRIEF_LEVEL_BASE_BYTES: u64 = 1024 * 1024;

/// Bloom filter bits per key: about 1% false positives.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Uncompressed size of a data block in the snapshots column family (RocksDB's default,
/// used elsewhere, is 4 KiB).
const SNAPSHOT_BLOCK_BYTES: usize = 16 * 1024;

/// Share of a memtable's size given to its whole-key bloom filter (RocksDB's
/// `memtable_prefix_bloom_size_ratio`), in the column families looked up by key.
pub(super) const MEMTABLE_BLOOM_RATIO: f64 = 0.05;

/// The column families whose point lookups usually miss (a new event id, a new order, a
/// new customer or day), so that bloom filters save reads. The others are scanned (the
/// log, the indexes, snapshots) or looked up by keys that exist: a filter would only cost
/// space, and time at every open (a reader opening a table reads its filter).
const FILTERED: [&str; 4] = [CF_EVENT_IDS, CF_ORDER_STATE, CF_CUSTOMERS, CF_REVENUE];

/// The column families `ordo rebuild --force` rewrites, each in key order
/// (`store::Reconciler`; all of their rows when the projections were lost). RocksDB places each row of a write in its memtable's
/// skip list by a search from the top; with a hint kept per key prefix (here the first
/// byte: a status, or the first byte of the ids) it starts from where the last row with that
/// prefix went, so rows that come in key order are placed almost for free. The rebuild's
/// write of about 700,000 rows took a median 0.21 s instead of 0.41 s (six rebuilds each
/// way on a copy of a benchmark ledger, 2026-12-03, docs/benchmarks.md). A commit's few rows
/// land anywhere: the hint is checked and the search goes on as without it.
const INSERTED_IN_KEY_ORDER: [&str; 4] =
    [CF_ORDER_STATE, CF_STATUS_ORDERS, CF_CUSTOMERS, CF_REVENUE];

/// That hint, as RocksDB's option string names it (the C API has no setter for it).
const INSERT_HINT_OPTION: &str = "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1";

/// How long RocksDB leaves a table at the last level before rewriting it only to zero its
/// keys' sequence numbers ("BottommostFiles" compactions): 30 days, for snapshots. A
/// snapshot is written as one table file that RocksDB takes in at the last level
/// (`Store::write_snapshot`); without a delay RocksDB rewrote each one (26 MB at a million
/// events) seconds after it was taken in, as much work again as writing it, to change
/// nothing anyone reads (2026-12-03, docs/benchmarks.md). Its rows never change; pruned
/// ones are dropped by the compactions that meet their deletion.
const SNAPSHOT_REWRITE_DELAY_OPTION: &str = "bottommost_file_compaction_delay=2592000";

/// RocksDB's default options, made once per process and copied for each use. Each
/// `Options::default()` makes a default table factory, which makes its own 32 MiB block
/// cache (a hyper clock cache, mapped and touched as it is made, unmapped when replaced):
/// ten per open, one for the database and one per column family, about a fifth of the
/// caches an `ordo append` made and threw away (RocksDB's check of the options file it
/// writes makes the others). A copy shares the one default factory until its own replaces
/// it.
fn defaults() -> Options {
    static DEFAULTS: std::sync::OnceLock<Options> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(Options::default).clone()
}

/// Options of the column family `name` (`None`: the database's own options), opened for
/// `access`.
pub(super) fn options(
    cache: &rocksdb::Cache,
    name: Option<&str>,
    access: Access,
) -> Result<Options> {
    // Options the C API has no setter for, as RocksDB's option string names them; only for
    // a writer that stays (readers insert nothing, brief writers run no compactions, and
    // parsing an option string costs every open a fraction of a millisecond).
    let option_string = match name {
        Some(name) if access == Access::ReadWrite && INSERTED_IN_KEY_ORDER.contains(&name) => {
            Some(INSERT_HINT_OPTION)
        }
        Some(CF_SNAPSHOTS) if access == Access::ReadWrite => Some(SNAPSHOT_REWRITE_DELAY_OPTION),
        _ => None,
    };
    let mut opts = match option_string {
        // First, on RocksDB's defaults: the option string makes a new `Options`, which
        // would not keep what the binding holds for the options set below.
        Some(option_string) => defaults()
            .get_options_from_string(option_string)
            .map_err(storage)?,
        None => defaults(),
    };
    // Every append looks up its event id (almost never stored yet) and its order's state
    // (absent for a new order) while the memtable holds the most recent writes: without a
    // filter, each miss searches the memtable's skip list, cache miss by cache miss (a
    // large share of the writer thread in a profile of `ordo import`). Readers write
    // nothing; allocating and zeroing the filters cost every read command's open.
    // A brief writer commits a few events: zeroing the filters (MiBs) would cost it more
    // than they save.
    if access == Access::ReadWrite && matches!(name, Some(CF_EVENT_IDS | CF_ORDER_STATE)) {
        opts.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
        opts.set_memtable_whole_key_filtering(true);
    }
    // A brief writer's compactions would be cancelled when it closes, milliseconds later,
    // after competing with its commit for the CPU (`Store::bound_level0` says what
    // replaces them).
    if access == Access::ReadWriteBrief {
        opts.set_disable_auto_compactions(true);
        // The compaction of level 0 a brief writer runs as it closes (one `ordo append` in
        // 153) goes into the first level RocksDB sizes at or above this. With RocksDB's
        // 256 MiB that is the last level, and for random keys (event ids, order ids) the
        // whole of it is rewritten: 58 MB and 1.4 to 1.7 s at a million events, growing
        // with the ledger. From 1 MiB, RocksDB keeps smaller levels above the last one
        // (each a tenth of the next) and compacts level 0 into the first of them: 1,000
        // appends on a copy of the benchmark's ledger took 21.0 ms on average, the slowest
        // 184 ms, against 28.8 ms and 1.7 s (p50 within noise, 2026-12-03). Those levels
        // are merged down as they outgrow their sizes, and by a writer that stays
        // (RocksDB's sizes) at its first compactions.
        opts.set_max_bytes_for_level_base(BRIEF_LEVEL_BASE_BYTES);
    }
    // Built without snappy; name the compression we have, never rely on the default.
    opts.set_compression_type(DBCompressionType::Lz4);
    // Every append looks up keys that usually do not exist (a new event id, a new order's
    // state): bloom filters answer those without reading data blocks of every level.
    let mut table = rocksdb::BlockBasedOptions::default();
    if name.is_some_and(|name| FILTERED.contains(&name)) {
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
    }
    table.set_block_cache(cache);
    // Index and filter blocks live in the (bounded) block cache, partitioned into small
    // blocks: a whole-file filter grows with the file (megabytes at 10M events) and, larger
    // than a cache shard, was re-read from disk on every lookup.
    table.set_cache_index_and_filter_blocks(true);
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Snapshot rows are read whole (a replay checks every byte of one snapshot against its
    // digest) and only a few at a time otherwise (the orders a replay's tail touches): larger
    // blocks cost less per row, and a replay's tail's point reads did not get slower
    // (docs/benchmarks.md). The log keeps 4 KiB: one order's events are point reads, each
    // of a whole block.
    if name == Some(CF_SNAPSHOTS) {
        table.set_block_size(SNAPSHOT_BLOCK_BYTES);
    }
    opts.set_block_based_table_factory(&table);
    Ok(opts)
}

/// RocksDB's info log for a brief writer (`ordo append`) and a reader beside a writer (a
/// secondary instance), instead of a `LOG` file: RocksDB's errors and fatal errors as
/// warnings, its warnings as information (`ORDO_LOG=info` shows them), the rest dropped.
///
/// Most of what RocksDB logs at an open is every column family's options, about 160 KB of
/// text for this ledger, formatted line by line: 5 to 8% of an `ordo append`'s CPU (perf,
/// issue 25). A brief writer also started a new `LOG` at each open and renamed the last one
/// aside, so that ten appends pushed the log of the writer that stays (`ordo serve`, with
/// its compactions and errors) out of the `INFO_LOGS_KEPT` kept. A secondary instance
/// wrote its `LOG` into a directory of its own, left behind in the temporary directory
/// when the reader was killed. At `Warn`, RocksDB formats nothing below a warning but the
/// options it dumps as headers, which this drops.
pub(super) fn info_log_to_tracing() -> rocksdb::InfoLogger {
    use rocksdb::LogLevel;
    rocksdb::InfoLogger::new_callback_logger(LogLevel::Warn, |level, message| {
        let message = message.trim_end();
        match level {
            LogLevel::Error | LogLevel::Fatal => tracing::warn!(target: "rocksdb", "{message}"),
            LogLevel::Warn => tracing::info!(target: "rocksdb", "{message}"),
            LogLevel::Debug | LogLevel::Info | LogLevel::Header => {}
        }
    })
}
