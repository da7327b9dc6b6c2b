//! Progress of long work (import, rebuild, replay, verify, copies): the library reports
//! phases and units through this trait, and the CLI draws a bar on a terminal. Its own
//! module because every layer that does long work reports through it (`ledger`, `replay`),
//! and none of them owns it.

/// Progress of long work, shown by the CLI as a bar on a terminal.
pub trait Progress {
    /// A phase starts; `total` units if known.
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    /// `units` more are done.
    fn advance(&self, _units: u64) {}
    /// The phase is over.
    fn end(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
