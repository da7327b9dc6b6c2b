//! Canonical JSON written straight from serde, for the hash chain: object keys sorted by
//! their bytes, no whitespace, integers in decimal, strings escaped as serde_json escapes
//! them. The same bytes as `write_canonical` of the `serde_json::Value`, without
//! building the value (a map, a `String` per key and per string) for every event.
//!
//! It takes what event data are made of: structs, strings, integers, booleans, options,
//! lists and unit variants. Anything else (maps, floats, bytes, data-carrying enum variants)
//! is refused with `Unsupported`, never written differently.

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;

/// A JSON string, escaped as serde_json escapes it.
pub(crate) fn string(out: &mut Vec<u8>, text: &str) {
    // serde_json escapes only `"`, `\` and control characters; identifiers, times and ids
    // (most strings here) have none, and copying them is a fraction of its escaping loop.
    // A fold without early exit: the compiler vectorizes it.
    let plain = !text.bytes().fold(false, |escape, b| {
        escape | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
    }
}

/// A shape the canonical writer does not take.
#[derive(Debug)]
pub struct Unsupported(String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no canonical JSON for {}", self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Unsupported(msg.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Unsupported> {
    Err(Unsupported(what.to_owned()))
}

/// A serde serializer appending canonical JSON to a buffer.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { out }
    }

    fn integer(self, v: impl itoa::Integer) -> Result<(), Unsupported> {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    }
}

/// The serializer's integer methods: each writes the number in decimal.
macro_rules! integers {
    ($($method:ident: $int:ty,)*) => {
        $(fn $method(self, v: $int) -> Result<(), Unsupported> {
            self.integer(v)
        })*
    };
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = List<'a>;
    type SerializeTuple = List<'a>;
    type SerializeTupleStruct = List<'a>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers! {
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128,
    }
    fn serialize_f32(self, _: f32) -> Result<(), Unsupported> {
        unsupported("a float")
    }
    fn serialize_f64(self, _: f64) -> Result<(), Unsupported> {
        unsupported("a float")
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        string(self.out, v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Unsupported> {
        unsupported("bytes")
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        unsupported("an enum variant with data")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<List<'a>, Unsupported> {
        self.out.push(b'[');
        Ok(List {
            out: self.out,
            first: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<List<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<List<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("an enum variant with data")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        unsupported("a map")
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, Unsupported> {
        let start = self.out.len();
        self.out.push(b'{');
        Ok(Object {
            out: self.out,
            start,
            fields: Vec::with_capacity(len),
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("an enum variant with data")
    }
}

/// A list being written.
pub struct List<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl List<'_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        value.serialize(Writer::new(self.out))
    }

    fn close(self) -> Result<(), Unsupported> {
        self.out.push(b']');
        Ok(())
    }
}

/// Lists, tuples and tuple structs are all JSON arrays.
macro_rules! list_impls {
    ($($trait:ident::$method:ident,)*) => {
        $(impl ser::$trait for List<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
                self.item(value)
            }
            fn end(self) -> Result<(), Unsupported> {
                self.close()
            }
        })*
    };
}

list_impls! {
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
}

/// A struct being written as an object. Its fields are written as they come, `"key":value`
/// after `{` (each but the first behind a comma); at the end, if their keys came out of byte
/// order, the members are copied out and written back sorted.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Where the object's `{` is.
    start: usize,
    /// Each member's key and where its `"key":value` bytes are in `out`.
    fields: Vec<(&'static str, std::ops::Range<usize>)>,
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        if !self.fields.is_empty() {
            self.out.push(b',');
        }
        let member = self.out.len();
        string(self.out, key);
        self.out.push(b':');
        value.serialize(Writer::new(self.out))?;
        self.fields.push((key, member..self.out.len()));
        Ok(())
    }

    fn end(mut self) -> Result<(), Unsupported> {
        let sorted = self
            .fields
            .windows(2)
            .all(|pair| pair[0].0.as_bytes() < pair[1].0.as_bytes());
        if !sorted {
            self.fields
                .sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            if self.fields.windows(2).any(|pair| pair[0].0 == pair[1].0) {
                return unsupported("a struct with a key twice");
            }
            let members = self.out.split_off(self.start + 1);
            let base = self.start + 1;
            for (i, (_, range)) in self.fields.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.out
                    .extend_from_slice(&members[range.start - base..range.end - base]);
            }
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Writes `value` as canonical JSON: keys sorted, no whitespace.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(text) => string(out, text),
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec cannot fail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Unsupported> {
        value.serialize(Writer::new(out))
    }

    fn both<T: Serialize>(value: &T) -> (String, String) {
        let mut direct = Vec::new();
        write(value, &mut direct).expect("a supported shape");
        let mut reference = Vec::new();
        write_canonical(
            &serde_json::to_value(value).expect("serializes"),
            &mut reference,
        );
        (
            String::from_utf8(direct).expect("utf-8"),
            String::from_utf8(reference).expect("utf-8"),
        )
    }

    #[derive(Serialize)]
    struct Inner {
        zeta: Option<String>,
        alpha: Vec<u32>,
    }

    #[derive(Serialize)]
    struct Outer {
        b: i64,
        a_long_name: Vec<Inner>,
        a: bool,
        unit: (),
        c: char,
        empty: Option<Inner>,
    }

    #[test]
    fn nested_structs_are_written_with_sorted_keys_like_the_sorted_value() {
        let value = Outer {
            b: i64::MIN,
            a_long_name: vec![
                Inner {
                    zeta: Some("q\"\n".to_owned()),
                    alpha: vec![1, u32::MAX],
                },
                Inner {
                    zeta: None,
                    alpha: vec![],
                },
            ],
            a: true,
            unit: (),
            c: '\u{1}',
            empty: None,
        };
        let (direct, reference) = both(&value);
        assert_eq!(direct, reference);
        assert!(direct.starts_with(r#"{"a":true,"a_long_name":[{"alpha":[1,4294967295],"#));
    }

    #[test]
    fn shapes_without_a_canonical_form_here_are_refused() {
        let mut out = Vec::new();
        assert!(write(&1.5f64, &mut out).is_err());
        let map: std::collections::BTreeMap<String, u8> = [("k".to_owned(), 1)].into();
        assert!(write(&map, &mut out).is_err());
        assert!(write(&Some(Ok::<u8, u8>(1)), &mut out).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_strings_and_integers_give_the_bytes_of_the_sorted_value(
            zeta in proptest::option::of(".*"),
            alpha in proptest::collection::vec(proptest::num::u32::ANY, 0..4),
            b in proptest::num::i64::ANY,
            c in proptest::char::any(),
        ) {
            let value = Outer {
                b,
                a_long_name: vec![Inner { zeta, alpha }],
                a: false,
                unit: (),
                c,
                empty: None,
            };
            let (direct, reference) = both(&value);
            proptest::prop_assert_eq!(direct, reference);
        }
    }
}
