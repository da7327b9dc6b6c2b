//! `GET /metrics`: Prometheus text. Requests by route and status, append latency, events
//! appended, subscribers, the writer's own counters read at scrape time (commits, events
//! per commit: how well group commit combines concurrent requests), and with `--relay` the
//! relay's lag and events published.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::domain::Position;
use crate::ledger::Ledger;
use crate::relay::RelayStats;
use crate::relay::follow::FollowStats;
use std::sync::atomic::Ordering;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    append_seconds: Histogram,
    appended_events: Counter,
    subscribers: Gauge,
    subscribers_dropped: Counter,
}

/// The writer's counters, read when scraped.
#[derive(Debug)]
struct Writer {
    ledger: Arc<Ledger>,
    committed: watch::Receiver<Position>,
}

impl Collector for Writer {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.ledger.writer_stats().unwrap_or_default();
        let counters = [
            (
                "ordo_commits",
                "Durable commits (one WriteBatch each)",
                stats.commits,
            ),
            (
                "ordo_wal_syncs",
                "Syncs of the write-ahead log (one fsync each), each covering every commit written before it",
                stats.syncs,
            ),
            (
                "ordo_committed_events",
                "Events written by commits",
                stats.events,
            ),
            (
                "ordo_commit_requests",
                "Append requests answered by the writer",
                stats.requests,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let per_commit = if stats.commits == 0 {
            0.0
        } else {
            stats.events as f64 / stats.commits as f64
        };
        let gauge = ConstGauge::new(per_commit);
        gauge.encode(encoder.encode_descriptor(
            "ordo_events_per_commit",
            "Mean events per commit since the server started",
            None,
            gauge.metric_type(),
        )?)?;
        let head = ConstGauge::new(self.committed.borrow().0 as i64);
        head.encode(encoder.encode_descriptor(
            "ordo_head_position",
            "Position of the last durable commit",
            None,
            head.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The relay's counters (`serve --relay`), read when scraped.
#[derive(Debug)]
struct Relay(Arc<RelayStats>);

impl Collector for Relay {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let published = ConstCounter::new(self.0.published.load(Ordering::Relaxed));
        published.encode(encoder.encode_descriptor(
            "ordo_relay_published_events",
            "Events the relay published and the stream acknowledged",
            None,
            published.metric_type(),
        )?)?;
        let lag = ConstGauge::new(self.0.lag() as i64);
        lag.encode(encoder.encode_descriptor(
            "ordo_relay_lag_positions",
            "Committed positions not yet acknowledged by the stream",
            None,
            lag.metric_type(),
        )?)?;
        Ok(())
    }
}

/// A replica's counters (`follow --listen`), read when scraped.
#[derive(Debug)]
struct Replica(Arc<FollowStats>);

impl Collector for Replica {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let consumed = ConstCounter::new(self.0.consumed.load(Ordering::Relaxed));
        consumed.encode(encoder.encode_descriptor(
            "ordo_replica_consumed_events",
            "Events the replica consumed from its leader's stream and stored",
            None,
            consumed.metric_type(),
        )?)?;
        let lag = ConstGauge::new(self.0.lag.load(Ordering::Relaxed) as i64);
        lag.encode(encoder.encode_descriptor(
            "ordo_replica_lag_positions",
            "Messages in the leader's stream the replica has not stored yet",
            None,
            lag.metric_type(),
        )?)?;
        Ok(())
    }
}

/// What runs beside the server and reports through its metrics.
#[derive(Clone, Debug, Default)]
pub struct Beside {
    /// A relay (`serve --relay`).
    pub relay: Option<Arc<RelayStats>>,
    /// A replica's follower (`follow --listen`).
    pub replica: Option<Arc<FollowStats>>,
}

impl Metrics {
    /// Metrics for a server over `ledger`, and what runs beside it.
    pub fn new(
        ledger: Arc<Ledger>,
        committed: watch::Receiver<Position>,
        beside: &Beside,
    ) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ordo_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        // 0.5 ms to about 4 s: an fsync is a few milliseconds on a disk.
        let append_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "ordo_append_seconds",
            "Latency of POST /v1/events, acknowledged or refused",
            append_seconds.clone(),
        );
        let appended_events = Counter::default();
        registry.register(
            "ordo_appended_events",
            "Events appended through HTTP (duplicates not counted)",
            appended_events.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "ordo_subscribers",
            "Live subscriptions",
            subscribers.clone(),
        );
        let subscribers_dropped = Counter::default();
        registry.register(
            "ordo_subscribers_dropped",
            "Subscriptions disconnected for not reading",
            subscribers_dropped.clone(),
        );
        registry.register_collector(Box::new(Writer { ledger, committed }));
        if let Some(relay) = &beside.relay {
            registry.register_collector(Box::new(Relay(relay.clone())));
        }
        if let Some(replica) = &beside.replica {
            registry.register_collector(Box::new(Replica(replica.clone())));
        }
        Metrics {
            registry,
            requests,
            append_seconds,
            appended_events,
            subscribers,
            subscribers_dropped,
        }
    }

    /// Counts a request.
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// Records an append's latency and the events it wrote.
    pub fn append(&self, seconds: f64, appended: u64) {
        self.append_seconds.observe(seconds);
        self.appended_events.inc_by(appended);
    }

    /// A subscription started (+1) or ended (-1).
    pub fn subscribers(&self, delta: i64) {
        self.subscribers.inc_by(delta);
    }

    /// A slow subscription was disconnected.
    pub fn subscriber_dropped(&self) {
        self.subscribers_dropped.inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("encoding metrics failed: {e}");
        }
        text
    }

    /// Live subscriptions (for tests and health).
    pub fn subscriber_count(&self) -> i64 {
        self.subscribers.get()
    }
}
