//! Whole-ledger commands: query, replay, audit, snapshot, config, rebuild.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use ordo::ledger::Ledger;
use ordo::ledger::params::{self, Naming};
use ordo::store::Access;

use super::backend::{Ask, Backend};
use super::read::Bar;
use super::{Cli, TimeArgs, output, remote};

fn invalid(message: String) -> ordo::Error {
    ordo::Error::InvalidInput(message)
}

/// The ledger in `dir` as its writer; a maintenance command never creates a ledger (where
/// there is none, the read-only open says so).
fn open_writer(dir: &Path) -> Result<Ledger, ordo::Error> {
    if ordo::store::Store::exists(dir) {
        super::open_writing(dir)
    } else {
        Ledger::open(dir, Access::ReadOnly)
    }
}

#[derive(Subcommand, Debug)]
pub enum Query {
    /// Order states, in order-id order.
    Orders {
        /// Only orders in this status.
        #[arg(long)]
        status: Option<String>,
        /// Only this customer's orders.
        #[arg(long)]
        customer: Option<String>,
        /// At most N rows.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Totals per customer and currency.
    Customers {
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Revenue bucketed by the day (or month) the events occurred, UTC.
    Revenue {
        /// Bucket size.
        #[arg(long, value_enum, default_value_t = By::Day)]
        by: By,
        /// First day included.
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// Last day included.
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// Only this currency.
        #[arg(long, value_name = "CUR")]
        currency: Option<String>,
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Count of orders per status.
    Statuses {
        #[command(flatten)]
        time: TimeArgs,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum By {
    Day,
    Month,
}

const ORDER_COLUMNS: &[&str] = &[
    "order_id",
    "customer_id",
    "status",
    "currency",
    "total",
    "paid",
    "refunded",
    "version",
    "updated_at",
];

const CUSTOMER_COLUMNS: &[&str] = &[
    "customer_id",
    "currency",
    "orders",
    "total",
    "paid",
    "refunded",
];

const REVENUE_COLUMNS: &[&str] = &[
    "period",
    "currency",
    "orders_placed",
    "placed_total",
    "captured",
    "refunded",
    "net",
    "orders_cancelled",
];

/// A server query: the time filters plus the parameters given.
fn with(time: &TimeArgs, extra: &[(&'static str, Option<String>)]) -> remote::Query {
    let mut query = time.query();
    query.extend(
        extra
            .iter()
            .filter_map(|(name, value)| value.clone().map(|v| (*name, v))),
    );
    query
}

pub fn query(cli: &Cli, q: &Query, out: &mut dyn Write) -> Result<()> {
    let (columns, ask) = ask_of(q)?;
    let found = Backend::of(cli)?.rows(ask)?;
    output::rows(out, cli.format, columns, &found)
}

/// The columns and the question of a `query` command.
fn ask_of(q: &Query) -> Result<(&'static [&'static str], Ask), ordo::Error> {
    Ok(match q {
        Query::Orders {
            status,
            customer,
            limit,
            time,
        } => {
            let of = params::order_filter(
                Naming::Flags,
                status.as_deref(),
                customer.as_deref(),
                *limit,
            )?;
            let extra = [
                ("status", status.clone()),
                ("customer", customer.clone()),
                ("limit", limit.map(|n| n.to_string())),
            ];
            let ask = Ask::Orders(of, time.filter()?, with(time, &extra));
            (ORDER_COLUMNS, ask)
        }
        Query::Customers { customer, time } => {
            let id = params::customer(Naming::Flags, customer.as_deref())?;
            let query = with(time, &[("customer", customer.clone())]);
            (CUSTOMER_COLUMNS, Ask::Customers(id, time.filter()?, query))
        }
        Query::Revenue {
            by,
            from,
            to,
            currency,
            time,
        } => {
            let by = match by {
                By::Day => "day",
                By::Month => "month",
            };
            let (from, to, currency) = (from.as_deref(), to.as_deref(), currency.as_deref());
            let of = params::revenue_filter(Naming::Flags, Some(by), from, to, currency)?;
            let extra = [
                ("by", Some(by.to_owned())),
                ("from", from.map(str::to_owned)),
                ("to", to.map(str::to_owned)),
                ("currency", currency.map(str::to_owned)),
            ];
            let ask = Ask::Revenue(of, time.filter()?, with(time, &extra));
            (REVENUE_COLUMNS, ask)
        }
        Query::Statuses { time } => (
            &["status", "count"],
            Ask::Statuses(time.filter()?, time.query()),
        ),
    })
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    time: TimeArgs,
    /// Write a point-in-time copy of the ledger into DIR (a new directory).
    #[arg(long, value_name = "DIR")]
    into: Option<PathBuf>,
}

pub fn replay(cli: &Cli, args: &ReplayArgs, out: &mut dyn Write) -> Result<()> {
    let filter = args.time.filter()?;
    if filter.is_unfiltered() {
        return Err(invalid(
            "replay needs a point: --as-of TIME, --valid-at TIME or --at-position P".to_owned(),
        )
        .into());
    }
    let backend = Backend::of(cli)?;
    if args.into.is_none() && !matches!(cli.format, output::Format::Ndjson) {
        let summary = backend.answer(Ask::Replay(filter, args.time.query()))?;
        return output::object(out, cli.format, &summary);
    }
    let ledger = Ledger::open(
        backend.local("replay --into or --format ndjson")?,
        Access::ReadOnly,
    )?;
    if let Some(dir) = &args.into {
        let head = ledger.replay_into(&filter, dir, &Bar::new())?;
        let value = json!({
            "into": dir.display().to_string(),
            "position": head.position,
            "head_hash": head.hash.to_hex(),
            "orders": head.orders,
        });
        return output::object(out, cli.format, &value);
    }
    let r = ledger.replay(&filter, &Bar::new())?;
    for state in r.book.orders.values() {
        writeln!(out, "{}", serde_json::to_string(state)?)?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The order to audit (or use --actor).
    #[arg(required_unless_present = "actor", conflicts_with = "actor")]
    order: Option<String>,
    /// Everything this actor recorded.
    #[arg(long)]
    actor: Option<String>,
    /// With --actor: recorded at or after TIME.
    #[arg(long, value_name = "TIME", requires = "actor")]
    from: Option<String>,
    /// With --actor: recorded at or before TIME.
    #[arg(long, value_name = "TIME", requires = "actor")]
    to: Option<String>,
    #[command(flatten)]
    time: TimeArgs,
}

const AUDIT_COLUMNS: &[&str] = &[
    "position",
    "version",
    "type",
    "actor",
    "recorded_at",
    "occurred_at",
    "state_after",
    "verified",
];

pub fn audit(cli: &Cli, args: &AuditArgs, out: &mut dyn Write) -> Result<()> {
    let ask = match (&args.order, &args.actor) {
        (Some(order), _) => Ask::Audit(
            params::order_id(order)?,
            args.time.filter()?,
            args.time.query(),
        ),
        (None, Some(actor)) => {
            let actor = params::actor(Naming::Flags, actor)?;
            let from = params::time_opt(Naming::Flags, "from", args.from.as_deref())?;
            let to = params::time_opt(Naming::Flags, "to", args.to.as_deref())?;
            let query = [
                ("actor", Some(actor.as_str().to_owned())),
                ("from", args.from.clone()),
                ("to", args.to.clone()),
            ];
            let query = with(&TimeArgs::default(), &query);
            Ask::AuditActor(actor, from, to, query)
        }
        (None, None) => unreachable!("clap requires an order or --actor"),
    };
    let entries = Backend::of(cli)?.rows(ask)?;
    output::rows(out, cli.format, AUDIT_COLUMNS, &entries)?;
    if let Some(bad) = entries.iter().find(|e| e["verified"] == Value::Bool(false)) {
        let position = ordo::domain::Position(bad["position"].as_u64().unwrap_or(0));
        return Err(ordo::Error::Corruption {
            position,
            reason: "its hash does not verify against its predecessor".to_owned(),
        }
        .into());
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum Snapshot {
    /// Snapshot every projection at the head now.
    Create,
    /// List snapshots (those of other projection code are marked unusable).
    List,
    /// Delete all but the newest N snapshots.
    Prune {
        /// How many to keep.
        #[arg(long, value_name = "N")]
        keep: usize,
    },
}

const SNAPSHOT_COLUMNS: &[&str] = &[
    "position",
    "orders",
    "max_occurred_at",
    "created_at",
    "usable",
];

pub fn snapshot(cli: &Cli, cmd: &Snapshot, out: &mut dyn Write) -> Result<()> {
    let backend = Backend::of(cli)?;
    match cmd {
        Snapshot::List => {
            let list = backend.rows(Ask::Snapshots)?;
            output::rows(out, cli.format, SNAPSHOT_COLUMNS, &list)
        }
        Snapshot::Create => {
            let header = open_writer(backend.local("snapshot create")?)?.snapshot_create()?;
            let info = ordo::ledger::SnapshotInfo::from(header);
            output::object(out, cli.format, &serde_json::to_value(info)?)
        }
        Snapshot::Prune { keep } => {
            let deleted = open_writer(backend.local("snapshot prune")?)?.snapshot_prune(*keep)?;
            output::object(
                out,
                cli.format,
                &json!({ "deleted": deleted, "kept": keep }),
            )
        }
    }
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// The setting to show or change (snapshot_every, origin, replica_of).
    key: Option<String>,
    /// Its new value.
    value: Option<String>,
}

pub fn config(cli: &Cli, args: &ConfigArgs, out: &mut dyn Write) -> Result<()> {
    let dir = Backend::of(cli)?.local("config")?.to_owned();
    match (&args.key, &args.value) {
        (Some(key), _) if !["snapshot_every", "origin", "replica_of"].contains(&key.as_str()) => {
            Err(invalid(format!(
                "unknown setting {key:?}; the settings are: snapshot_every, origin, replica_of"
            ))
            .into())
        }
        (Some(key), Some(value)) if key == "replica_of" => {
            // Set only by `ordo follow`; here it can only be cleared, promoting a replica
            // whose leader is lost to a writer of its own (docs/scale-out.md).
            if value != "none" {
                return Err(invalid(format!(
                    "replica_of can only be set to none here (promoting the replica); `ordo follow` sets it, got {value:?}"
                ))
                .into());
            }
            open_writer(&dir)?.set_replica_of(None)?;
            output::object(out, cli.format, &json!({ "replica_of": null }))
        }
        (Some(key), None) if key == "replica_of" => {
            let ledger = Ledger::open(&dir, Access::ReadOnly)?;
            output::object(
                out,
                cli.format,
                &json!({ "replica_of": ledger.replica_of() }),
            )
        }
        (Some(key), Some(value)) if key == "origin" => {
            let ledger = open_writer(&dir)?;
            ledger.set_origin(value.clone())?;
            output::object(out, cli.format, &json!({ "origin": value }))
        }
        (Some(key), None) if key == "origin" => {
            let origin = Ledger::open(&dir, Access::ReadOnly)?.origin()?;
            output::object(out, cli.format, &json!({ "origin": origin }))
        }
        (_, Some(value)) => {
            let every: u64 = value.parse().map_err(|_| {
                invalid(format!(
                    "snapshot_every must be a whole number of events (0: never), got {value:?}"
                ))
            })?;
            let ledger = open_writer(&dir)?;
            let mut settings = ledger.settings()?;
            settings.snapshot_every_events = every;
            ledger.set_settings(settings)?;
            output::object(out, cli.format, &json!({ "snapshot_every": every }))
        }
        _ => {
            let settings = Ledger::open(&dir, Access::ReadOnly)?.settings()?;
            output::object(
                out,
                cli.format,
                &json!({ "snapshot_every": settings.snapshot_every_events }),
            )
        }
    }
}

#[derive(Args, Debug)]
pub struct RebuildArgs {
    /// Rewrite the stored rows that differ from the rebuild (else a difference changes
    /// nothing and exits 5).
    #[arg(long)]
    force: bool,
}

pub fn rebuild(cli: &Cli, args: &RebuildArgs, out: &mut dyn Write) -> Result<()> {
    let backend = Backend::of(cli)?;
    let ledger = open_writer(backend.local("rebuild")?)?;
    let report = ledger.rebuild(args.force, Box::new(Bar::new()))?;
    output::object(out, cli.format, &serde_json::to_value(report)?)
}
