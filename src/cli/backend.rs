//! Where a command's answer comes from: the ledger directory, or `ordo serve` when
//! `--server` is given. A command parses its arguments into one `Ask` (so its argument
//! errors are the same both ways), and `Backend::answer` answers it with the JSON the
//! contract prints, locally or over HTTP: each command is written once. Commands that only
//! run on the directory ask `Backend::local` for it; `import` and `export` stream, so they
//! also ask for the server.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use ordo::Error;
use ordo::domain::{Actor, CustomerId, Filter, OrderId, Timestamp};
use ordo::ledger::{BatchResult, Ledger, NewEvent};
use ordo::projection::query::{OrderFilter, RevenueFilter};
use ordo::proof::note::Signer;
use ordo::store::Access;

use super::Cli;
use super::read::Bar;
use super::remote::{self, Query, Remote, segment};

/// The ledger a command works on.
pub enum Backend {
    /// The directory (`--data-dir`).
    Local(PathBuf),
    /// A server (`--server`).
    Remote(Remote),
}

/// A question a command asks of the ledger: parsed values for a local ledger, and the
/// query parameters as the user wrote them for a server.
pub enum Ask {
    /// `history ORDER`.
    History(OrderId, Filter, Query),
    /// `state ORDER`.
    State(OrderId, Filter, Query),
    /// `verify`.
    Verify,
    /// `stats`.
    Stats,
    /// `query orders`.
    Orders(OrderFilter, Filter, Query),
    /// `query customers`.
    Customers(Option<CustomerId>, Filter, Query),
    /// `query revenue`.
    Revenue(RevenueFilter, Filter, Query),
    /// `query statuses`.
    Statuses(Filter, Query),
    /// `replay`'s summary.
    Replay(Filter, Query),
    /// `audit ORDER`.
    Audit(OrderId, Filter, Query),
    /// `audit --actor`.
    AuditActor(Actor, Option<Timestamp>, Option<Timestamp>, Query),
    /// `snapshot list`.
    Snapshots,
    /// `append` of one event (and its JSON for a server).
    Append(Box<NewEvent>, Value),
    /// `append --file`: (line, event, JSON) each.
    AppendBatch(Vec<(u64, NewEvent, Value)>),
    /// `checkpoint` at a tree size, signed by a local key.
    Checkpoint(Option<u64>, Option<Signer>, Query),
    /// `prove inclusion`: position, tree size.
    Inclusion(u64, Option<u64>, Query),
    /// `prove consistency`: old size, tree size.
    Consistency(u64, Option<u64>, Query),
    /// `prove order`: the order, tree size, a local key.
    Evidence(OrderId, Option<u64>, Option<Signer>, Query),
}

impl Backend {
    /// The backend `cli` names: the one place that looks at `--server`.
    pub fn of(cli: &Cli) -> Result<Backend, Error> {
        Ok(match remote::connect(cli)? {
            Some(server) => Backend::Remote(server),
            None => Backend::Local(cli.data_dir.clone()),
        })
    }

    /// The ledger directory, for `what` that only runs there.
    pub fn local(&self, what: &str) -> Result<&Path, Error> {
        match self {
            Backend::Local(dir) => Ok(dir),
            Backend::Remote(_) => Err(remote::local_only(what)),
        }
    }

    /// The answer to `ask`, as product.md prints it.
    pub fn answer(&self, ask: Ask) -> Result<Value, Error> {
        match self {
            Backend::Local(dir) => local(dir, ask),
            Backend::Remote(server) => over_http(server, ask),
        }
    }

    /// The answer to `ask`, a list of rows.
    pub fn rows(&self, ask: Ask) -> Result<Vec<Value>, Error> {
        match self.answer(ask)? {
            Value::Array(rows) => Ok(rows),
            other => Err(Error::Remote {
                kind: "unavailable".to_owned(),
                message: format!("expected rows, got {other}"),
            }),
        }
    }
}

fn json(value: impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(value)
        .map_err(|e| Error::Storage(format!("an answer did not serialize: {e}")))
}

fn reader(dir: &Path) -> Result<Ledger, Error> {
    Ledger::open(dir, Access::ReadOnly)
}

/// `ask` answered by the ledger in `dir` (read-only unless it appends).
fn local(dir: &Path, ask: Ask) -> Result<Value, Error> {
    match ask {
        Ask::History(order, filter, _) => {
            let events = reader(dir)?.history(&order, &filter)?;
            Ok(Value::Array(
                events.iter().map(|e| e.envelope_json()).collect(),
            ))
        }
        Ask::State(order, filter, _) => json(reader(dir)?.state(&order, &filter)?),
        Ask::Verify => json(reader(dir)?.verify(&Bar::new())?),
        Ask::Stats => json(reader(dir)?.stats()?),
        Ask::Orders(of, filter, _) => json(reader(dir)?.query_orders(&of, &filter)?),
        Ask::Customers(customer, filter, _) => {
            json(reader(dir)?.query_customers(customer.as_ref(), &filter)?)
        }
        Ask::Revenue(of, filter, _) => json(reader(dir)?.query_revenue(&of, &filter)?),
        Ask::Statuses(filter, _) => json(reader(dir)?.query_statuses(&filter)?),
        Ask::Replay(filter, _) => Ok(reader(dir)?.replay_summary(&filter, &Bar::new())?.to_json()),
        Ask::Audit(order, filter, _) => json(reader(dir)?.audit(&order, &filter)?),
        Ask::AuditActor(actor, from, to, _) => json(reader(dir)?.audit_actor(&actor, from, to)?),
        Ask::Snapshots => json(reader(dir)?.snapshots()?),
        Ask::Checkpoint(size, signer, _) => json(reader(dir)?.checkpoint(size, signer.as_ref())?),
        Ask::Inclusion(position, size, _) => json(reader(dir)?.prove_inclusion(position, size)?),
        Ask::Consistency(old, size, _) => json(reader(dir)?.prove_consistency(old, size)?),
        Ask::Evidence(order, size, signer, _) => {
            json(reader(dir)?.prove_order(&order, size, signer.as_ref())?)
        }
        Ask::Append(event, _) => json(super::open_writing_briefly(dir)?.append(*event)?),
        Ask::AppendBatch(events) => {
            let ledger = super::open_writing_briefly(dir)?;
            let events = events.into_iter().map(|(line, e, _)| (line, e)).collect();
            let mut result = BatchResult::default();
            result.add(&ledger.append_batch(events)?);
            json(result)
        }
    }
}

/// `ask` answered by `server`.
fn over_http(server: &Remote, ask: Ask) -> Result<Value, Error> {
    let order_path =
        |order: &OrderId, tail: &str| format!("/v1/orders/{}{tail}", segment(order.as_str()));
    match ask {
        Ask::History(order, _, query) => server.get(&order_path(&order, "/events"), &query),
        Ask::State(order, _, query) => server.get(&order_path(&order, ""), &query),
        Ask::Verify => server.get("/v1/verify", &Vec::new()),
        Ask::Stats => server.get("/v1/stats", &Vec::new()),
        Ask::Orders(_, _, query) => server.get("/v1/query/orders", &query),
        Ask::Customers(_, _, query) => server.get("/v1/query/customers", &query),
        Ask::Revenue(_, _, query) => server.get("/v1/query/revenue", &query),
        Ask::Statuses(_, query) => server.get("/v1/query/statuses", &query),
        Ask::Replay(_, query) => server.get("/v1/replay", &query),
        Ask::Audit(order, _, query) => server.get(&order_path(&order, "/audit"), &query),
        Ask::AuditActor(_, _, _, query) => server.get("/v1/audit", &query),
        Ask::Snapshots => server.get("/v1/snapshots", &Vec::new()),
        Ask::Checkpoint(_, _, query) => server.get("/v1/checkpoint", &query),
        Ask::Inclusion(_, _, query) => server.get("/v1/proof/inclusion", &query),
        Ask::Consistency(_, _, query) => server.get("/v1/proof/consistency", &query),
        Ask::Evidence(order, _, _, query) => server.get(&order_path(&order, "/evidence"), &query),
        Ask::Append(_, event) => server.post_json("/v1/events", &event),
        Ask::AppendBatch(events) => {
            let batch = events.into_iter().map(|(_, _, json)| json).collect();
            let mut answer = server.post_json("/v1/events", &Value::Array(batch))?;
            // The batch result of product.md section 6; per-event results are the server's
            // addition.
            if let Some(fields) = answer.as_object_mut() {
                fields.remove("results");
            }
            Ok(answer)
        }
    }
}
