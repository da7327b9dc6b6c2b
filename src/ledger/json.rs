//! JSON text to `serde_json::Value` for everything a user or client sends, refusing a
//! document in which an object names a key twice. serde_json's own `Value` keeps the last
//! one, while other parsers keep the first: two readers of the same input (a client's check
//! and ordo, ordo and an auditor) could then disagree on what was appended.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `text` as one JSON value, refusing duplicate keys (the error names the key, line
/// and column).
pub fn parse_value(text: &str) -> serde_json::Result<Value> {
    parse_value_bytes(text.as_bytes())
}

/// `parse_value` over bytes (a request body).
pub fn parse_value_bytes(bytes: &[u8]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a `Value` as serde_json's own does, except for duplicate keys.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {key:?} (a key may appear once in an object)"
                )));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth() {
        for text in [
            r#"{"order_id":"N3","order_id":"N4"}"#,
            r#"{"data":{"amount":1,"amount":2}}"#,
            r#"[{"a":1},{"b":{"c":[{"d":1,"d":1}]}}]"#,
        ] {
            let error = parse_value(text).expect_err(text).to_string();
            assert!(error.contains("duplicate key"), "{text}: {error}");
        }
    }

    #[test]
    fn trailing_text_is_refused() {
        assert!(parse_value(r#"{"a":1} {"b":2}"#).is_err());
    }

    proptest! {
        /// Without duplicate keys, the same value as serde_json's own parser.
        #[test]
        fn documents_without_duplicates_parse_as_serde_json_does(
            entries in proptest::collection::btree_map("[a-z]{1,6}", any::<i64>(), 0..8),
            floats in proptest::collection::vec(-1e9f64..1e9, 0..4),
            text in ".{0,20}",
        ) {
            let document = serde_json::json!({"entries": entries, "floats": floats, "text": text, "null": null, "yes": true});
            let text = document.to_string();
            prop_assert_eq!(parse_value(&text).expect("valid"), serde_json::from_str::<Value>(&text).expect("valid"));
        }
    }
}
