//! Identifier newtypes (order, customer, sku, payment, refund, shipment, actor), event ids,
//! versions and positions. Identifiers are validated when they are built, so a value of one of
//! these types is always well-formed, whether it came from input or from disk.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The longest identifier accepted, in characters (product.md section 1).
pub const IDENTIFIER_CHARS_MAX: usize = 128;

/// Checks the identifier rule of product.md section 1: 1 to 128 of `A-Z a-z 0-9 . _ : -`.
fn validate_identifier(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if s.len() > IDENTIFIER_CHARS_MAX {
        return Err(format!(
            "is {} characters long; at most {IDENTIFIER_CHARS_MAX} are allowed",
            s.chars().count()
        ));
    }
    // Bytes, not chars: every allowed character is ASCII, and every identifier read from the
    // log is checked again when decoded (a replay checks millions).
    if let Some(at) = s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')))
    {
        let c = s[at..]
            .chars()
            .next()
            .expect("a byte position inside the string");
        return Err(format!(
            "contains {c:?}; only A-Z a-z 0-9 . _ : - are allowed"
        ));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            /// Builds the identifier, checking the identifier rule.
            pub fn new(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                validate_identifier(&value)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                Self::new(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": IDENTIFIER_CHARS_MAX,
                    "pattern": "^[A-Za-z0-9._:-]+$"
                })
            }
        }
    };
}

identifier!(
    /// The id of an order; one order stream per id.
    OrderId
);
identifier!(
    /// The id of a customer.
    CustomerId
);
identifier!(
    /// A stock-keeping unit: the id of an order line.
    Sku
);
identifier!(
    /// The id of a captured payment.
    PaymentId
);
identifier!(
    /// The id of a refund.
    RefundId
);
identifier!(
    /// The id of a shipment.
    ShipmentId
);
identifier!(
    /// Who recorded an event.
    Actor
);

/// An event's id: a UUID given by the writer (an idempotency key) or assigned (v7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub uuid::Uuid);

impl EventId {
    /// The 16 bytes of the UUID, as stored in keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The version of an event within its order stream: 1, 2, 3, ... with no gaps.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version that follows this one.
    pub fn next(self) -> Version {
        Version(
            self.0
                .checked_add(1)
                .expect("a version never reaches u64::MAX"),
        )
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The global, gapless sequence number of an event in the ledger, starting at 1.
/// `Position(0)` means "before the first event" (an empty ledger's head).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// The position that follows this one.
    pub fn next(self) -> Position {
        Position(
            self.0
                .checked_add(1)
                .expect("a position never reaches u64::MAX"),
        )
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_accept_the_allowed_alphabet_and_refuse_everything_else() {
        assert!(OrderId::new("ORD-1.a_b:c").is_ok());
        assert!(OrderId::new("x".repeat(128)).is_ok());
        assert_eq!(
            OrderId::new("").expect_err("empty is refused"),
            "must not be empty"
        );
        assert!(OrderId::new("x".repeat(129)).is_err());
        assert!(OrderId::new("ORD 1").is_err());
        assert!(OrderId::new("ORD/1").is_err());
        assert!(OrderId::new("ORDé").is_err());
        assert!(OrderId::new("ORD\u{0}").is_err());
    }
}
