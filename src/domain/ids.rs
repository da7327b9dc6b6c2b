//! Identifier newtypes (order, customer, sku, payment, refund, shipment, actor), event ids,
//! versions and positions. Identifiers are validated when they are built, so a value of one of
//! these types is always well-formed, whether it came from input or from disk.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use compact_str::CompactString;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
        ///
        /// Held inline (no heap allocation) when at most 24 bytes long, which covers the ids
        /// people use: a decoded event builds several identifiers, and the folds' maps
        /// compare ids without following a pointer (docs/benchmarks.md, rebuild).
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(CompactString);

        impl $name {
            /// Builds the identifier, checking the identifier rule.
            pub fn new(value: impl AsRef<str>) -> Result<Self, String> {
                let value = value.as_ref();
                validate_identifier(value)?;
                Ok(Self(CompactString::new(value)))
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

        impl FromStr for $name {
            type Err = String;
            fn from_str(value: &str) -> Result<Self, String> {
                Self::new(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(StrVisitor::<$name>::new())
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

/// Reads a value held inline (an identifier, a currency) from a string, borrowed or not,
/// checking its rule. A borrowed string (bincode over a stored record, JSON without escapes)
/// is copied straight into the value, without an intermediate `String`.
pub(crate) struct StrVisitor<T>(PhantomData<T>);

impl<T> StrVisitor<T> {
    /// The visitor for `T`.
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: FromStr<Err = String>> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        T::from_str(value).map_err(E::custom)
    }
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

    #[test]
    fn identifiers_and_currencies_read_from_json_as_text_whatever_its_escapes() {
        let long = "L".repeat(100);
        let read: (OrderId, Sku, crate::domain::Currency, OrderId) =
            serde_json::from_str(&format!(r#"["ORD\u002d1", "SKU-7", "E\u0055R", "{long}"]"#))
                .expect("valid JSON");
        assert_eq!(read.0.as_str(), "ORD-1");
        assert_eq!(read.1.as_str(), "SKU-7");
        assert_eq!(read.2.as_str(), "EUR");
        assert_eq!(read.3.as_str(), long, "longer than what is held inline");
        assert_eq!(
            serde_json::to_string(&read).expect("serializable"),
            format!(r#"["ORD-1","SKU-7","EUR","{long}"]"#)
        );
        let refused = |json: &str| {
            serde_json::from_str::<OrderId>(json)
                .expect_err("refused")
                .to_string()
        };
        assert!(refused(r#""ORD 1""#).contains("only A-Z a-z 0-9 . _ : - are allowed"));
        assert!(refused("5").contains("expected a string"));
        assert!(
            serde_json::from_str::<crate::domain::Currency>(r#""eur""#)
                .expect_err("lower case is refused")
                .to_string()
                .contains("is not a currency code")
        );
    }
}
