//! Event types (schema version 1): their data, how they are read from JSON with the path of
//! the offending field, and the sequenced `Event` that the ledger stores.
//!
//! Storage note: `EventData` is encoded by its variant index. Variants are only ever added at
//! the end; reordering them would change the meaning of stored records.

use std::collections::HashSet;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hash::Hash;
use super::ids::{
    Actor, CustomerId, EventId, OrderId, PaymentId, Position, RefundId, ShipmentId, Sku, Version,
};
use super::money::{Amount, Currency, Quantity};
use super::text::Text;
use super::time::Timestamp;

/// The schema version of every event type this code writes.
pub const SCHEMA_VERSION: u16 = 1;

/// The most lines an `order_placed` may carry.
pub const ORDER_LINES_MAX: usize = 1000;

/// A field that is wrong, with its path (`data.lines[0].quantity`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, from the event's top level.
    pub path: String,
    /// What is wrong, as a sentence fragment.
    pub message: String,
}

impl FieldError {
    /// A field error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.path, self.message)
    }
}

macro_rules! event_types {
    ($($variant:ident($data:ident) = $name:literal,)*) => {
        /// The type of an event.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EventType { $(#[doc = $name] $variant,)* }

        impl EventType {
            /// Every event type, in the order of product.md section 2.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The type's name as written in JSON (`order_placed`).
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }

            /// Parses a type name.
            pub fn parse(name: &str) -> Result<EventType, String> {
                match name {
                    $($name => Ok(EventType::$variant),)*
                    _ => Err(format!(
                        "unknown event type {name:?}; known types: {}",
                        EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                }
            }

            /// The JSON Schema of this type's `data` object, generated from the Rust type.
            pub fn data_schema(self) -> schemars::Schema {
                match self { $(EventType::$variant => schemars::schema_for!($data),)* }
            }
        }

        /// The data of an event, one variant per event type.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum EventData { $(#[doc = $name] $variant($data),)* }

        impl EventData {
            /// The type of this data.
            pub fn event_type(&self) -> EventType {
                match self { $(EventData::$variant(_) => EventType::$variant,)* }
            }

            /// Reads the `data` object of an event of type `event_type`, refusing unknown
            /// fields and values that break the schema, and naming the field at fault.
            pub fn from_json(event_type: EventType, data: Value) -> Result<EventData, FieldError> {
                let parsed = match event_type {
                    $(EventType::$variant => EventData::$variant(parse_data(data)?),)*
                };
                parsed.validate()?;
                Ok(parsed)
            }

            /// `from_json` straight from the `data` object's JSON text, without building a
            /// `Value` first (an import parses every line this way). `None` for anything
            /// but an object with each field once that `from_json` would accept: then the
            /// caller asks `from_json`, which names the fault. When it is `Some`, it equals
            /// what `from_json` gives (the tests of `ledger::input` compare both).
            pub fn from_json_text(event_type: EventType, text: &str) -> Option<EventData> {
                if !text.trim_start().starts_with('{') {
                    return None;
                }
                let parsed = match event_type {
                    $(EventType::$variant => EventData::$variant(serde_json::from_str(text).ok()?),)*
                };
                parsed.validate().ok()?;
                Some(parsed)
            }

            /// The `data` object as JSON.
            pub fn to_json(&self) -> Value {
                self.serialize_data(serde_json::value::Serializer)
                    .expect("event data always serializes to JSON (plain structs of strings and integers)")
            }

            /// Serializes the `data` object alone (the variant's struct, without the
            /// variant's name that `Serialize` for `EventData` wraps it in).
            pub fn serialize_data<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(EventData::$variant(d) => d.serialize(serializer),)*
                }
            }
        }
    };
}

event_types! {
    OrderPlaced(OrderPlaced) = "order_placed",
    ItemAdded(ItemAdded) = "item_added",
    ItemRemoved(ItemRemoved) = "item_removed",
    QuantityChanged(QuantityChanged) = "quantity_changed",
    ShippingAddressChanged(ShippingAddressChanged) = "shipping_address_changed",
    PaymentCaptured(PaymentCaptured) = "payment_captured",
    PaymentRefunded(PaymentRefunded) = "payment_refunded",
    OrderShipped(OrderShipped) = "order_shipped",
    OrderDelivered(OrderDelivered) = "order_delivered",
    OrderCancelled(OrderCancelled) = "order_cancelled",
    OrderReturned(OrderReturned) = "order_returned",
    NoteAdded(NoteAdded) = "note_added",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Deserializes one data struct, keeping the path of the first failing field.
fn parse_data<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, FieldError> {
    if !data.is_object() {
        return Err(FieldError::new("data", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(data).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            "data".to_owned()
        } else {
            format!("data.{inner}")
        };
        FieldError::new(path, e.into_inner().to_string())
    })
}

/// A shipping address: free text.
pub type Address = Text<1024>;
/// A reason for a refund, a cancellation or a return.
pub type Reason = Text<1024>;
/// A carrier name or a tracking number.
pub type Label = Text<256>;

/// One line of an order: so many units of a sku at a unit price (minor units).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The article.
    pub sku: Sku,
    /// Units, at least 1.
    pub quantity: Quantity,
    /// Price of one unit in minor units, at least 0.
    #[schemars(range(min = 0))]
    pub unit_price: Amount,
}

impl Line {
    /// quantity x unit_price, or `None` on overflow.
    pub fn total(&self) -> Option<Amount> {
        self.quantity.0.checked_mul(self.unit_price.0).map(Amount)
    }
}

/// A new order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "order_placed (v1) data")]
pub struct OrderPlaced {
    /// Who ordered.
    pub customer_id: CustomerId,
    /// ISO-4217 code of every amount of the order.
    pub currency: Currency,
    /// 1 to 1000 lines with unique skus.
    #[schemars(length(min = 1, max = 1000))]
    pub lines: Vec<Line>,
    /// Where to ship.
    #[serde(default)]
    pub shipping_address: Option<Address>,
}

/// A line added to an unpaid order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "item_added (v1) data")]
pub struct ItemAdded {
    /// The article; not already on the order.
    pub sku: Sku,
    /// Units, at least 1.
    pub quantity: Quantity,
    /// Price of one unit in minor units, at least 0.
    #[schemars(range(min = 0))]
    pub unit_price: Amount,
}

/// A line removed from an unpaid order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "item_removed (v1) data")]
pub struct ItemRemoved {
    /// The article; must be on the order, and not its last line.
    pub sku: Sku,
}

/// A line's quantity changed on an unpaid order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "quantity_changed (v1) data")]
pub struct QuantityChanged {
    /// The article; must be on the order.
    pub sku: Sku,
    /// The new number of units, at least 1.
    pub quantity: Quantity,
}

/// The shipping address changed before shipping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "shipping_address_changed (v1) data")]
pub struct ShippingAddressChanged {
    /// The new address.
    pub shipping_address: Address,
}

/// Money captured for the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "payment_captured (v1) data")]
pub struct PaymentCaptured {
    /// The payment provider's id.
    pub payment_id: PaymentId,
    /// Minor units, more than 0, at most what is still unpaid.
    #[schemars(range(min = 1))]
    pub amount: Amount,
}

/// Money given back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "payment_refunded (v1) data")]
pub struct PaymentRefunded {
    /// The refund's id.
    pub refund_id: RefundId,
    /// Minor units, more than 0, at most what was paid and not yet refunded.
    #[schemars(range(min = 1))]
    pub amount: Amount,
    /// Why.
    #[serde(default)]
    pub reason: Option<Reason>,
}

/// The order left the warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "order_shipped (v1) data")]
pub struct OrderShipped {
    /// The shipment's id.
    pub shipment_id: ShipmentId,
    /// Who carries it.
    #[serde(default)]
    pub carrier: Option<Label>,
    /// The carrier's tracking number.
    #[serde(default)]
    pub tracking_number: Option<Label>,
}

/// The order reached the customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "order_delivered (v1) data")]
pub struct OrderDelivered {}

/// The order was cancelled before shipping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "order_cancelled (v1) data")]
pub struct OrderCancelled {
    /// Why.
    pub reason: Reason,
}

/// The customer sent a delivered order back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "order_returned (v1) data")]
pub struct OrderReturned {
    /// Why.
    #[serde(default)]
    pub reason: Option<Reason>,
}

/// A free-text note on the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "note_added (v1) data")]
pub struct NoteAdded {
    /// 1 to 4096 characters.
    pub text: Text<4096>,
}

fn check_quantity(path: &str, q: Quantity) -> Result<(), FieldError> {
    if q.0 < 1 {
        return Err(FieldError::new(
            path,
            format!("must be at least 1, got {q}"),
        ));
    }
    Ok(())
}

fn check_price(path: &str, a: Amount) -> Result<(), FieldError> {
    if a.0 < 0 {
        return Err(FieldError::new(
            path,
            format!("must be at least 0, got {a}"),
        ));
    }
    Ok(())
}

fn check_positive(path: &str, a: Amount) -> Result<(), FieldError> {
    if a.0 <= 0 {
        return Err(FieldError::new(
            path,
            format!("must be more than 0, got {a}"),
        ));
    }
    Ok(())
}

impl EventData {
    /// Checks the constraints that a JSON type cannot express: ranges, unique skus, a total
    /// that fits in i64 and is not 0.
    fn validate(&self) -> Result<(), FieldError> {
        match self {
            EventData::OrderPlaced(p) => validate_placed(p),
            EventData::ItemAdded(a) => {
                check_quantity("data.quantity", a.quantity)?;
                check_price("data.unit_price", a.unit_price)
            }
            EventData::QuantityChanged(q) => check_quantity("data.quantity", q.quantity),
            EventData::PaymentCaptured(p) => check_positive("data.amount", p.amount),
            EventData::PaymentRefunded(r) => check_positive("data.amount", r.amount),
            EventData::ItemRemoved(_)
            | EventData::ShippingAddressChanged(_)
            | EventData::OrderShipped(_)
            | EventData::OrderDelivered(_)
            | EventData::OrderCancelled(_)
            | EventData::OrderReturned(_)
            | EventData::NoteAdded(_) => Ok(()),
        }
    }
}

fn validate_placed(p: &OrderPlaced) -> Result<(), FieldError> {
    if p.lines.is_empty() || p.lines.len() > ORDER_LINES_MAX {
        return Err(FieldError::new(
            "data.lines",
            format!(
                "must hold 1 to {ORDER_LINES_MAX} lines, got {}",
                p.lines.len()
            ),
        ));
    }
    let mut skus = HashSet::with_capacity(p.lines.len());
    let mut total = Amount::ZERO;
    for (i, line) in p.lines.iter().enumerate() {
        check_quantity(&format!("data.lines[{i}].quantity"), line.quantity)?;
        check_price(&format!("data.lines[{i}].unit_price"), line.unit_price)?;
        if !skus.insert(&line.sku) {
            return Err(FieldError::new(
                format!("data.lines[{i}].sku"),
                format!("sku {} appears twice; skus must be unique", line.sku),
            ));
        }
        total = line
            .total()
            .and_then(|t| total.checked_add(t))
            .ok_or_else(|| {
                FieldError::new(
                    format!("data.lines[{i}]"),
                    "the order total does not fit in a 64-bit integer",
                )
            })?;
    }
    if total == Amount::ZERO {
        return Err(FieldError::new(
            "data.lines",
            "the order total is 0; free items are fine, a free order is not",
        ));
    }
    Ok(())
}

/// A sequenced event: what the ledger stores and returns. Built only by the sequencer (or
/// decoded from disk), so its position, version, times and hash are always consistent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Global, gapless sequence number.
    pub position: Position,
    /// The order stream this event belongs to.
    pub order_id: OrderId,
    /// Version within the order stream.
    pub version: Version,
    /// Idempotency key.
    pub event_id: EventId,
    /// Schema version of `data`.
    pub schema_version: u16,
    /// When the ledger committed it (system time).
    pub recorded_at: Timestamp,
    /// When it happened in the business (valid time).
    pub occurred_at: Timestamp,
    /// Who recorded it.
    pub actor: Option<Actor>,
    /// Correlation id given by the writer.
    pub correlation_id: Option<Label>,
    /// Causation id given by the writer.
    pub causation_id: Option<Label>,
    /// What happened.
    pub data: EventData,
    /// SHA-256 chaining this event to its predecessor.
    pub hash: Hash,
}

impl Event {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// The envelope of product.md section 6, fields in the documented order.
    pub fn envelope_json(&self) -> Value {
        let mut value = self.envelope_json_unhashed();
        value
            .as_object_mut()
            .expect("the envelope is a JSON object")
            .insert("hash".to_owned(), Value::String(self.hash.to_hex()));
        value
    }

    /// The envelope without `hash`: what the hash chain covers.
    pub fn envelope_json_unhashed(&self) -> Value {
        let text = |t: &Option<Label>| t.as_ref().map(|t| t.as_str().to_owned());
        serde_json::json!({
            "position": self.position.0,
            "order_id": self.order_id.as_str(),
            "version": self.version.0,
            "event_id": self.event_id.to_string(),
            "type": self.event_type().as_str(),
            "schema_version": self.schema_version,
            "recorded_at": self.recorded_at.to_string(),
            "occurred_at": self.occurred_at.to_string(),
            "actor": self.actor.as_ref().map(|a| a.as_str().to_owned()),
            "correlation_id": text(&self.correlation_id),
            "causation_id": text(&self.causation_id),
            "data": self.data.to_json(),
        })
    }
}
