//! Reading input events from JSON: the writer's form (`order_id`, `type`, `data`, optional
//! metadata) and, for `import --preserve`, the stored envelope. Every error names the field.
//! NDJSON lines are read with a length limit, so a hostile file cannot exhaust memory.

use std::io::BufRead;

use serde::Deserialize;
use serde_json::Value;

use crate::domain::{
    Actor, EventData, EventId, EventType, FieldError, Hash, Label, OrderId, Position, Timestamp,
    Version,
};
use crate::error::{Error, Result};

/// The longest NDJSON line accepted, in bytes. An `order_placed` with 1000 lines is about
/// 80 KiB; 1 MiB leaves room while bounding memory.
pub const LINE_BYTES_MAX: usize = 1024 * 1024;

/// An event as a writer submits it; the sequencer assigns the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// The order stream.
    pub order_id: OrderId,
    /// What happened.
    pub data: EventData,
    /// When it happened; defaults to recorded_at.
    pub occurred_at: Option<Timestamp>,
    /// Idempotency key; assigned (UUID v7) when absent.
    pub event_id: Option<EventId>,
    /// Append only if the order's last version is this (0: the order must not exist).
    pub expected_version: Option<Version>,
    /// Who records it.
    pub actor: Option<Actor>,
    /// Correlation id.
    pub correlation_id: Option<Label>,
    /// Causation id.
    pub causation_id: Option<Label>,
    /// For `import --preserve`: the position, version, recorded_at and hash the event had in
    /// the ledger it was exported from. The sequencer checks them instead of assigning.
    pub preserved: Option<Preserved>,
}

/// The sequencing fields of an exported event, kept by `import --preserve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preserved {
    /// The original position.
    pub position: Position,
    /// The original version.
    pub version: Version,
    /// The original recorded_at.
    pub recorded_at: Timestamp,
    /// The original hash.
    pub hash: Hash,
}

impl NewEvent {
    /// An event with only the required fields.
    pub fn new(order_id: OrderId, data: EventData) -> NewEvent {
        NewEvent {
            order_id,
            data,
            occurred_at: None,
            event_id: None,
            expected_version: None,
            actor: None,
            correlation_id: None,
            causation_id: None,
            preserved: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    order_id: String,
    #[serde(rename = "type")]
    event_type: String,
    data: Value,
    occurred_at: Option<String>,
    event_id: Option<String>,
    expected_version: Option<u64>,
    actor: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    position: u64,
    order_id: String,
    version: u64,
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: u16,
    recorded_at: String,
    occurred_at: String,
    actor: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    data: Value,
    hash: String,
}

fn field<T>(path: &str, result: std::result::Result<T, String>) -> Result<T> {
    result.map_err(|message| FieldError::new(path, message).into())
}

fn optional<T>(
    path: &str,
    value: Option<String>,
    build: impl Fn(String) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    value.map(|v| field(path, build(v))).transpose()
}

fn parse_object<T: serde::de::DeserializeOwned>(text: &str, hint: &str) -> Result<T> {
    let value: Value = super::json::parse_value(text)
        .map_err(|e| Error::InvalidInput(format!("not valid JSON: {e}")))?;
    from_object(value, hint)
}

/// `T` from a JSON object already parsed (strictly), naming the field of any fault.
fn from_object<T: serde::de::DeserializeOwned>(value: Value, hint: &str) -> Result<T> {
    if !value.is_object() {
        return Err(Error::InvalidInput(
            "an event must be a JSON object".to_owned(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let mut message = e.into_inner().to_string();
        if message.starts_with("unknown field") {
            message.push_str(hint);
        }
        if path == "." {
            Error::InvalidInput(format!("event: {message}"))
        } else {
            FieldError::new(path, message).into()
        }
    })
}

/// The writer's form read in one pass from its text, `data` kept as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectInput<'a> {
    order_id: String,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    occurred_at: Option<&'a str>,
    event_id: Option<&'a str>,
    expected_version: Option<u64>,
    actor: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

/// `parse_event` for a line every field of which is present once and valid, without
/// building a JSON `Value` first. `None` otherwise: `parse_event`'s general path then gives
/// the same result or names the fault. A strict subset of what that path accepts, with
/// equal results (the tests below compare both on generated lines, edge cases and random
/// mutations). The HTTP server tries it first on a request body for the same reason.
pub fn parse_event_direct(text: &str) -> Option<NewEvent> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let raw: DirectInput = serde_json::from_str(text).ok()?;
    let event_type = EventType::parse(raw.event_type).ok()?;
    Some(NewEvent {
        order_id: OrderId::new(raw.order_id).ok()?,
        data: EventData::from_json_text(event_type, raw.data.get())?,
        occurred_at: match raw.occurred_at {
            Some(t) => Some(Timestamp::parse(t).ok()?),
            None => None,
        },
        event_id: match raw.event_id {
            Some(t) => Some(parse_event_id(t).ok()?),
            None => None,
        },
        expected_version: raw.expected_version.map(Version),
        actor: raw.actor.map(Actor::new).transpose().ok()?,
        correlation_id: raw.correlation_id.map(Label::new).transpose().ok()?,
        causation_id: raw.causation_id.map(Label::new).transpose().ok()?,
        preserved: None,
    })
}

/// Parses one input event (the writer's form).
pub fn parse_event(text: &str) -> Result<NewEvent> {
    if let Some(event) = parse_event_direct(text) {
        return Ok(event);
    }
    parse_event_via_value(text)
}

/// `parse_event` through a JSON `Value`: refuses duplicate keys and names the field of any
/// fault.
fn parse_event_via_value(text: &str) -> Result<NewEvent> {
    new_event(parse_object(text, ENVELOPE_HINT)?)
}

/// Said of an unknown field: the likeliest cause is an export given where input is asked.
const ENVELOPE_HINT: &str = " (an exported envelope is imported with `ordo import --preserve`)";

/// `parse_event` of a JSON value already parsed (strictly, as `json::parse_value` does): a
/// request body's element, without writing it back to text and parsing it again.
pub fn parse_event_value(value: Value) -> Result<NewEvent> {
    new_event(from_object(value, ENVELOPE_HINT)?)
}

fn new_event(raw: RawInput) -> Result<NewEvent> {
    let event_type = field("type", EventType::parse(&raw.event_type))?;
    Ok(NewEvent {
        order_id: field("order_id", OrderId::new(raw.order_id))?,
        data: EventData::from_json(event_type, raw.data)?,
        occurred_at: optional("occurred_at", raw.occurred_at, |t| Timestamp::parse(&t))?,
        event_id: optional("event_id", raw.event_id, |t| parse_event_id(&t))?,
        expected_version: raw.expected_version.map(Version),
        actor: optional("actor", raw.actor, Actor::new)?,
        correlation_id: optional("correlation_id", raw.correlation_id, Label::new)?,
        causation_id: optional("causation_id", raw.causation_id, Label::new)?,
        preserved: None,
    })
}

/// Parses one exported envelope, keeping its sequencing fields for `import --preserve`.
pub fn parse_envelope(text: &str) -> Result<NewEvent> {
    let raw: RawEnvelope = parse_object(text, "")?;
    if raw.schema_version != crate::domain::SCHEMA_VERSION {
        return Err(FieldError::new(
            "schema_version",
            format!(
                "version {} is not supported (this ordo reads {})",
                raw.schema_version,
                crate::domain::SCHEMA_VERSION
            ),
        )
        .into());
    }
    let event_type = field("type", EventType::parse(&raw.event_type))?;
    let recorded_at = field("recorded_at", Timestamp::parse(&raw.recorded_at))?;
    Ok(NewEvent {
        order_id: field("order_id", OrderId::new(raw.order_id))?,
        data: EventData::from_json(event_type, raw.data)?,
        occurred_at: Some(field("occurred_at", Timestamp::parse(&raw.occurred_at))?),
        event_id: Some(field("event_id", parse_event_id(&raw.event_id))?),
        expected_version: None,
        actor: optional("actor", raw.actor, Actor::new)?,
        correlation_id: optional("correlation_id", raw.correlation_id, Label::new)?,
        causation_id: optional("causation_id", raw.causation_id, Label::new)?,
        preserved: Some(Preserved {
            position: Position(raw.position),
            version: Version(raw.version),
            recorded_at,
            hash: field("hash", Hash::from_hex(&raw.hash))?,
        }),
    })
}

/// Parses an event id (a UUID in its usual text form).
pub fn parse_event_id(text: &str) -> std::result::Result<EventId, String> {
    uuid::Uuid::try_parse(text)
        .map(EventId)
        .map_err(|e| format!("{text:?} is not a UUID ({e})"))
}

/// Reads NDJSON lines with a length limit, skipping blank lines. Yields (line number, text).
pub struct Lines<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    /// Wraps a reader.
    pub fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// The next non-blank line, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<(u64, &str)>> {
        loop {
            self.buf.clear();
            self.line += 1;
            let line = self.line;
            let mut limited = std::io::Read::take(&mut self.reader, LINE_BYTES_MAX as u64 + 1);
            let read = limited
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::Storage(format!("reading input: {e}")).at_line(line))?;
            if read == 0 {
                return Ok(None);
            }
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            } else if self.buf.len() > LINE_BYTES_MAX {
                return Err(Error::InvalidInput(format!(
                    "line is longer than {LINE_BYTES_MAX} bytes"
                ))
                .at_line(line));
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = std::str::from_utf8(&self.buf)
                .map_err(|e| Error::InvalidInput(format!("not valid UTF-8 ({e})")).at_line(line))?;
            return Ok(Some((line, text)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn generated_lines() -> Vec<String> {
        let options = crate::generate::GenerateOptions {
            orders: 60,
            seed: 7,
            start: Timestamp::parse("2026-01-01").expect("date"),
            days: 10,
        };
        let mut out = Vec::new();
        crate::generate::generate(&options, &mut out).expect("generate");
        String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Whenever the direct path answers, the general path gives the same event.
    /// The direct path, the general path and the path from a parsed value (a request
    /// body's) give the same event, or the same error.
    fn agrees(text: &str) -> Option<NewEvent> {
        let direct = parse_event_direct(text);
        if let Some(event) = &direct {
            let general = parse_event_via_value(text).expect("the general path accepts it too");
            assert_eq!(&general, event, "{text}");
        }
        if let Ok(value) = crate::ledger::json::parse_value(text) {
            let answer = |r: Result<NewEvent>| r.map_err(|e| e.to_string());
            assert_eq!(
                answer(parse_event_value(value)),
                answer(parse_event_via_value(text)),
                "{text}"
            );
        }
        direct
    }

    #[test]
    fn generated_lines_take_the_direct_path_with_the_general_paths_result() {
        let lines = generated_lines();
        assert!(lines.len() > 200);
        for line in &lines {
            assert!(agrees(line).is_some(), "not direct: {line}");
        }
    }

    #[test]
    fn what_the_direct_path_leaves_gets_the_general_paths_answer() {
        let cases = [
            // duplicate keys: the general path keeps the last, the direct one declines
            r#"{"order_id":"O-1","type":"note_added","data":{"text":"a","text":"b"}}"#,
            r#"{"order_id":"O-1","order_id":"O-2","type":"note_added","data":{"text":"a"}}"#,
            // escapes in borrowed strings, nulls, numbers that are not integers
            r#"{"order_id":"O-1","type":"note_\u0061dded","data":{"text":"a\nb"}}"#,
            r#"{"order_id":"O-1","type":"note_added","data":{"text":"tab\there \"quoted\""}}"#,
            r#"{"order_id":"O-1","type":"note_added","data":{"text":"a"},"actor":null}"#,
            r#"{"order_id":"O-1","type":"note_added","data":{"text":"a"},"expected_version":1.0}"#,
            r#"{"order_id":"O-1","type":"note_added","data":{"text":"a"},"expected_version":2}"#,
            // not objects, bad types, unknown fields, invalid values
            r#"["O-1","note_added",{"text":"a"}]"#,
            r#"{"order_id":"O-1","type":"note_added","data":["a"]}"#,
            r#"{"order_id":"O-1","type":"note_added","data":{"text":"a"},"z":1}"#,
            r#"{"order_id":"","type":"note_added","data":{"text":"a"}}"#,
            r#"{"order_id":"O-1","type":"nope","data":{}}"#,
            r#"{"order_id":"O-1","type":"payment_captured","data":{"amount":-5}}"#,
            r#"{"order_id":"O-1","type":"note_added","data":{"text":"a"},"occurred_at":"x"}"#,
            r#" {"order_id":"O-1","type":"note_added","data":{"text":"a"}} "#,
        ];
        for text in cases {
            // The same event, or the same error message.
            let answer = |r: Result<NewEvent>| r.map_err(|e| e.to_string());
            assert_eq!(
                answer(parse_event(text)),
                answer(parse_event_via_value(text)),
                "{text}"
            );
            agrees(text);
        }
        let duplicate = r#"{"order_id":"O-1","type":"note_added","data":{"text":"a","text":"b"}}"#;
        assert!(parse_event_direct(duplicate).is_none());
        let refused = parse_event(duplicate)
            .expect_err("a key named twice")
            .to_string();
        assert!(refused.contains("duplicate key \"text\""), "{refused}");
    }

    proptest! {
        #[test]
        fn mutated_lines_never_get_a_different_answer_from_the_direct_path(
            pick in 0usize..1000,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0x20u8..0x7f), 1..4),
        ) {
            let lines = generated_lines();
            let mut bytes = lines[pick % lines.len()].clone().into_bytes();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if let Ok(text) = String::from_utf8(bytes) {
                agrees(&text);
            }
        }
    }

    #[test]
    fn a_minimal_event_parses_and_unknown_fields_are_named() {
        let ok = parse_event(r#"{"order_id":"O-1","type":"note_added","data":{"text":"hello"}}"#)
            .expect("valid");
        assert_eq!(ok.order_id.as_str(), "O-1");
        let err =
            parse_event(r#"{"order_id":"O-1","type":"note_added","data":{"text":"x","y":1}}"#)
                .expect_err("unknown data field");
        assert!(err.to_string().contains("unknown field `y`"), "{err}");
        let err = parse_event(r#"{"order_id":"O-1","type":"note_added","data":{},"z":1}"#)
            .expect_err("unknown top-level field");
        assert!(err.to_string().contains("unknown field `z`"), "{err}");
    }

    #[test]
    fn lines_skips_blank_lines_and_bounds_length() {
        let input = b"a\n\n  \nb\r\n".to_vec();
        let mut lines = Lines::new(&input[..]);
        assert_eq!(
            lines
                .next_line()
                .expect("ok")
                .map(|(n, t)| (n, t.to_owned())),
            Some((1, "a".to_owned()))
        );
        assert_eq!(
            lines
                .next_line()
                .expect("ok")
                .map(|(n, t)| (n, t.to_owned())),
            Some((4, "b".to_owned()))
        );
        assert_eq!(lines.next_line().expect("ok"), None);
        let long = vec![b'x'; LINE_BYTES_MAX + 10];
        let mut lines = Lines::new(&long[..]);
        assert!(lines.next_line().is_err());
    }
}
