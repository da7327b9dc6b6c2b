//! The device's own ceiling for concurrent durable appends (issue 25, item 1): closed-loop
//! writers on a plain file, no database, no encoding, sharing `syncers` threads. A syncer
//! takes every record waiting, writes them at the end of the file and fdatasyncs it; a
//! writer is answered once its record and every record before it are durable, as in a log.
//! One syncer is group commit with one sync in flight (what ordo's syncer and RocksDB do);
//! two let syncs overlap (the device accepts concurrent flushes). What no design on top of
//! this file system can beat with the same writers.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Latencies, MachineCpu, cpu_seconds, cpu_us_per, load};

/// What a run of `group_commit` measured.
pub(super) struct GroupCommit {
    /// Each writer's wait, append to answer.
    pub(super) latencies: Latencies,
    /// Records written per second.
    pub(super) rate: f64,
    /// fdatasync calls made.
    pub(super) syncs: u64,
    /// Cores the process kept busy meanwhile (CPU time / wall time): near the machine's
    /// cores, the probe was bound by CPU (thread wake-ups), not by the device.
    pub(super) cores_busy: f64,
    /// Cores the whole machine kept busy meanwhile (the kernel's work for the syncs too).
    pub(super) machine_cores_busy: f64,
    /// The machine's CPU time per record written, in microseconds.
    pub(super) machine_cpu_us_per_write: f64,
}

/// Records issued, taken by syncers, and durable; shared under one lock.
#[derive(Default)]
struct Queue {
    /// Tickets handed to writers (the next one to hand out).
    issued: u64,
    /// Tickets below this are taken by a syncer.
    taken: u64,
    /// Tickets below this are durable, with every one before them.
    durable: u64,
    /// Synced ranges not yet joined to `durable` (a later sync can end first): from -> to.
    synced: BTreeMap<u64, u64>,
    /// Where the next taken records go in the file.
    offset: u64,
    /// The writers are done: syncers return once nothing is left to take.
    stop: bool,
    /// A syncer's write or sync failed: writers stop waiting.
    failed: Option<String>,
    /// Writers waiting: (ticket, writer), woken one by one once their ticket is durable.
    waiting: Vec<(u64, usize)>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a record is issued (syncers wait on it).
    work: Condvar,
    /// One per writer, signalled when its record is durable (waking every writer at each
    /// sync would cost 64 wake-ups per sync at 64 writers, and bound the probe by CPU).
    done: Vec<Condvar>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `writers` closed-loop threads appending `record_bytes` each to a fresh file in `dir` for
/// `seconds`, through `syncers` syncing threads.
pub(super) fn group_commit(
    dir: &Path,
    writers: usize,
    syncers: usize,
    record_bytes: usize,
    seconds: f64,
) -> Result<GroupCommit> {
    let path = dir.join("group-commit-probe");
    let file = File::create(&path)?;
    let shared = Shared {
        queue: Mutex::new(Queue::default()),
        work: Condvar::new(),
        done: (0..writers).map(|_| Condvar::new()).collect(),
    };
    let cpu = cpu_seconds("self")?;
    let machine = MachineCpu::start()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let (latencies, syncs) = std::thread::scope(|scope| -> Result<(Vec<Duration>, u64)> {
        let syncing: Vec<_> = (0..syncers)
            .map(|_| scope.spawn(|| sync_loop(&shared, &file, record_bytes)))
            .collect();
        let latencies = load(writers, deadline, |writer, _| {
            let mut queue = shared.lock();
            let ticket = queue.issued;
            queue.issued += 1;
            queue.waiting.push((ticket, writer));
            shared.work.notify_one();
            let queue = shared.done[writer]
                .wait_while(queue, |q| q.durable <= ticket && q.failed.is_none())
                .unwrap_or_else(|e| e.into_inner());
            if let Some(failed) = &queue.failed {
                bail!("group commit probe: {failed}");
            }
            Ok(())
        });
        shared.lock().stop = true;
        shared.work.notify_all();
        let mut syncs = 0;
        for syncer in syncing {
            syncs += syncer
                .join()
                .map_err(|_| anyhow::anyhow!("a syncer panicked"))?;
        }
        Ok((latencies?, syncs))
    })?;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds("self")? - cpu;
    let machine_cores_busy = machine.cores_busy()?;
    fs::remove_file(&path)?;
    let latencies = Latencies::new(latencies);
    let writes = latencies.len() as u64;
    Ok(GroupCommit {
        rate: super::rate(latencies.len() as u64, elapsed),
        latencies,
        syncs,
        cores_busy: super::round2(cpu / elapsed.as_secs_f64().max(1e-9)),
        machine_cores_busy: super::round2(machine_cores_busy),
        machine_cpu_us_per_write: cpu_us_per(machine_cores_busy, elapsed.as_secs_f64(), writes),
    })
}

/// One syncer: takes what is waiting, writes it, syncs it, marks it durable; returns its
/// syncs. A failure is put in the queue for the writers and ends it.
fn sync_loop(shared: &Shared, file: &File, record_bytes: usize) -> u64 {
    let mut syncs = 0;
    let mut records = Vec::new();
    let mut queue = shared.lock();
    loop {
        queue = shared
            .work
            .wait_while(queue, |q| q.taken == q.issued && !q.stop)
            .unwrap_or_else(|e| e.into_inner());
        if queue.taken == queue.issued || queue.failed.is_some() {
            return syncs;
        }
        let (from, to) = (queue.taken, queue.issued);
        let bytes = usize::try_from(to - from).unwrap_or(usize::MAX) * record_bytes;
        let offset = queue.offset;
        queue.taken = to;
        queue.offset += bytes as u64;
        drop(queue);
        records.resize(bytes, 7u8);
        let written = file
            .write_all_at(&records, offset)
            .and_then(|()| file.sync_data());
        syncs += 1;
        queue = shared.lock();
        if let Err(error) = written {
            queue.failed = Some(error.to_string());
            shared.done.iter().for_each(Condvar::notify_all);
            return syncs;
        }
        queue.synced.insert(from, to);
        while let Some(to) = {
            let durable = queue.durable;
            queue.synced.remove(&durable)
        } {
            queue.durable = to;
        }
        let durable = queue.durable;
        queue.waiting.retain(|&(ticket, writer)| {
            let answered = ticket < durable;
            if answered {
                shared.done[writer].notify_one();
            }
            !answered
        });
    }
}
