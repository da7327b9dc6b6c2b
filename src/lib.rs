//! ordo: an event-sourced order ledger on RocksDB.
//!
//! Every change to an order is an immutable, hash-chained event in an append-only log;
//! projections fold the log into current state, and any moment of history can be rebuilt.
//! The codemap is in `docs/ARCHITECTURE.md`; the CLI contract in `shared/product.md`.
//!
//! - [`domain`]: event types, order state, the rules and the fold. No I/O.
//! - [`format`](mod@format): every byte the ledger stores: keys, the record codec, the hash chain, the
//!   projection digest. No RocksDB.
//! - [`store`]: RocksDB: the log, the projection rows and snapshots as bytes. The only I/O
//!   on the ledger.
//! - [`ledger`]: the public API: open, append (through the sequencer), read, verify.
//! - [`projection`]: the aggregate projections and queries, as pure folds.
//! - [`replay`]: the whole ledger at a point in time, from the nearest snapshot.
//! - [`proof`]: Merkle proofs, signed checkpoints and evidence bundles in public formats,
//!   and their offline check. No I/O.
//! - [`server`]: `ordo serve`, the HTTP API, live subscriptions and metrics (axum).
//! - [`relay`]: committed events into NATS JetStream, exactly once (`ordo relay`).
//! - [`generate`]: deterministic realistic workloads.
//! - [`progress`]: how long work reports its progress.
//! - `cli` (binary only): parses arguments and prints.

pub mod domain;
pub mod error;
pub mod format;
pub mod generate;
pub mod ledger;
pub mod progress;
pub mod projection;
pub mod proof;
pub mod relay;
pub mod replay;
pub mod server;
pub mod store;

pub use error::{Error, Result};

/// The README's Rust example compiles as a doc test, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
