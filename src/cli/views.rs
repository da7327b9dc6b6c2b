//! Whole-ledger commands: query, replay, audit, snapshot, config, rebuild.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use ordo::ledger::Ledger;
use ordo::ledger::params::{self, Naming};
use ordo::store::Access;

use super::read::Bar;
use super::{Cli, TimeArgs, output, remote};

fn invalid(message: String) -> ordo::Error {
    ordo::Error::InvalidInput(message)
}

fn open(cli: &Cli) -> Result<Ledger, ordo::Error> {
    Ledger::open(&cli.data_dir, Access::ReadOnly)
}

fn open_writer(cli: &Cli) -> Result<Ledger, ordo::Error> {
    if !ordo::store::Store::exists(&cli.data_dir) {
        // Maintenance commands never create a ledger.
        return open(cli);
    }
    Ledger::open(&cli.data_dir, Access::ReadWrite)
}

fn rows<T: serde::Serialize>(items: &[T]) -> Result<Vec<Value>> {
    Ok(items
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?)
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
    let server = remote::connect(cli)?;
    let (columns, found): (&[&str], Vec<Value>) = match q {
        Query::Orders {
            status,
            customer: c,
            limit,
            time,
        } => {
            let of = params::order_filter(Naming::Flags, status.as_deref(), c.as_deref(), *limit)?;
            let filter = time.filter()?;
            let found = match &server {
                Some(server) => {
                    let extra = [
                        ("status", status.clone()),
                        ("customer", c.clone()),
                        ("limit", limit.map(|n| n.to_string())),
                    ];
                    server.rows("/v1/query/orders", &with(time, &extra))?
                }
                None => rows(&open(cli)?.query_orders(&of, &filter)?)?,
            };
            (ORDER_COLUMNS, found)
        }
        Query::Customers { customer: c, time } => {
            let customer = params::customer(Naming::Flags, c.as_deref())?;
            let filter = time.filter()?;
            let found = match &server {
                Some(server) => server.rows(
                    "/v1/query/customers",
                    &with(time, &[("customer", c.clone())]),
                )?,
                None => rows(&open(cli)?.query_customers(customer.as_ref(), &filter)?)?,
            };
            (CUSTOMER_COLUMNS, found)
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
            let of = params::revenue_filter(
                Naming::Flags,
                Some(by),
                from.as_deref(),
                to.as_deref(),
                currency.as_deref(),
            )?;
            let filter = time.filter()?;
            let found = match &server {
                Some(server) => {
                    let extra = [
                        ("by", Some(by.to_owned())),
                        ("from", from.clone()),
                        ("to", to.clone()),
                        ("currency", currency.clone()),
                    ];
                    server.rows("/v1/query/revenue", &with(time, &extra))?
                }
                None => rows(&open(cli)?.query_revenue(&of, &filter)?)?,
            };
            (REVENUE_COLUMNS, found)
        }
        Query::Statuses { time } => {
            let filter = time.filter()?;
            let found = match &server {
                Some(server) => server.rows("/v1/query/statuses", &time.query())?,
                None => rows(&open(cli)?.query_statuses(&filter)?)?,
            };
            (&["status", "count"], found)
        }
    };
    output::rows(out, cli.format, columns, &found)
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
    if let Some(server) = remote::connect(cli)? {
        if args.into.is_some() || matches!(cli.format, output::Format::Ndjson) {
            return Err(remote::local_only("replay --into or --format ndjson").into());
        }
        let summary = server.get("/v1/replay", &args.time.query())?;
        return output::object(out, cli.format, &summary);
    }
    let ledger = open(cli)?;
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
    if matches!(cli.format, output::Format::Ndjson) {
        let r = ledger.replay(&filter, &Bar::new())?;
        for state in r.book.orders.values() {
            writeln!(out, "{}", serde_json::to_string(state)?)?;
        }
        return Ok(());
    }
    let summary = ledger.replay_summary(&filter, &Bar::new())?.to_json();
    output::object(out, cli.format, &summary)
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
    let entries = match (&args.order, &args.actor) {
        (Some(order), _) => {
            let id = params::order_id(order)?;
            let filter = args.time.filter()?;
            match remote::connect(cli)? {
                Some(server) => server.rows(
                    &format!("/v1/orders/{}/audit", remote::segment(id.as_str())),
                    &args.time.query(),
                )?,
                None => open(cli)?.audit(&id, &filter)?,
            }
        }
        (None, Some(actor)) => {
            let actor = params::actor(Naming::Flags, actor)?;
            let from = params::time_opt(Naming::Flags, "from", args.from.as_deref())?;
            let to = params::time_opt(Naming::Flags, "to", args.to.as_deref())?;
            match remote::connect(cli)? {
                Some(server) => {
                    let query = [
                        ("actor", Some(actor.as_str().to_owned())),
                        ("from", args.from.clone()),
                        ("to", args.to.clone()),
                    ];
                    server.rows("/v1/audit", &with(&TimeArgs::default(), &query))?
                }
                None => open(cli)?.audit_actor(&actor, from, to)?,
            }
        }
        (None, None) => unreachable!("clap requires an order or --actor"),
    };
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
    if let Some(server) = remote::connect(cli)? {
        let Snapshot::List = cmd else {
            return Err(remote::local_only("snapshot create and prune").into());
        };
        return output::rows(
            out,
            cli.format,
            SNAPSHOT_COLUMNS,
            &server.rows("/v1/snapshots", &Vec::new())?,
        );
    }
    match cmd {
        Snapshot::Create => {
            let header = open_writer(cli)?.snapshot_create()?;
            let info = ordo::ledger::SnapshotInfo::from(header);
            output::object(out, cli.format, &serde_json::to_value(info)?)
        }
        Snapshot::List => {
            let list = open(cli)?.snapshots()?;
            output::rows(out, cli.format, SNAPSHOT_COLUMNS, &rows(&list)?)
        }
        Snapshot::Prune { keep } => {
            let deleted = open_writer(cli)?.snapshot_prune(*keep)?;
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
    /// The setting to show or change (snapshot_every).
    key: Option<String>,
    /// Its new value.
    value: Option<String>,
}

pub fn config(cli: &Cli, args: &ConfigArgs, out: &mut dyn Write) -> Result<()> {
    if cli.server.is_some() {
        return Err(remote::local_only("config").into());
    }
    match (&args.key, &args.value) {
        (Some(key), _) if key != "snapshot_every" => Err(invalid(format!(
            "unknown setting {key:?}; the settings are: snapshot_every"
        ))
        .into()),
        (_, Some(value)) => {
            let every: u64 = value.parse().map_err(|_| {
                invalid(format!(
                    "snapshot_every must be a whole number of events (0: never), got {value:?}"
                ))
            })?;
            let ledger = open_writer(cli)?;
            let mut settings = ledger.settings()?;
            settings.snapshot_every_events = every;
            ledger.set_settings(settings)?;
            output::object(out, cli.format, &json!({ "snapshot_every": every }))
        }
        _ => {
            let settings = open(cli)?.settings()?;
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
    /// Replace the stored projections even when they differ from the rebuild.
    #[arg(long)]
    force: bool,
}

pub fn rebuild(cli: &Cli, args: &RebuildArgs, out: &mut dyn Write) -> Result<()> {
    if cli.server.is_some() {
        return Err(remote::local_only("rebuild").into());
    }
    let report = open_writer(cli)?.rebuild(args.force, Box::new(Bar::new()))?;
    output::object(out, cli.format, &serde_json::to_value(report)?)
}
