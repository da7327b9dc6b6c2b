//! The order domain: event types, order state, the rules (`decide`) and the fold (`apply`).
//!
//! Architecture invariant: nothing in this module does I/O, reads a clock or touches bytes on
//! disk. Everything here is a pure function of its arguments, so the same code judges an
//! append, replays history and backs the model tests.

mod event;
mod filter;
mod hash;
mod ids;
mod money;
mod rules;
mod state;
mod text;
mod time;

pub use event::{
    Address, Event, EventData, EventType, FieldError, ItemAdded, ItemRemoved, Label, Line,
    NoteAdded, ORDER_LINES_MAX, OrderCancelled, OrderDelivered, OrderPlaced, OrderReturned,
    OrderShipped, PaymentCaptured, PaymentRefunded, QuantityChanged, Reason, SCHEMA_VERSION,
    ShippingAddressChanged,
};
pub use filter::Filter;
pub use hash::Hash;
pub use ids::{
    Actor, CustomerId, EventId, IDENTIFIER_CHARS_MAX, OrderId, PaymentId, Position, RefundId,
    ShipmentId, Sku, Version,
};
pub use money::{Amount, Currency, Quantity};
pub use rules::{Rejection, decide};
pub use state::{OrderState, Status, StatusCounts, apply, apply_to};
pub use text::Text;
pub use time::{OCCURRED_AHEAD_MICROS_MAX, Timestamp};
