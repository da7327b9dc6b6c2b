//! The bodies of ordo's fuzz targets: what each target feeds the library and what must hold
//! for every input. Each is a plain function so that `tests/fuzz_regressions.rs` replays the
//! seeds and every saved crash under `cargo test` with the same assertions.
//!
//! The invariant common to all: input from outside (stored bytes, NDJSON lines, times typed
//! by a user) yields a value or an error, never a panic, an abort or an unbounded allocation.

use ordo::domain::{Timestamp, apply};
use ordo::format::codec;
use ordo::ledger::{Lines, params, parse_envelope, parse_event};
use ordo::store::{Head, Settings, SnapshotHeader};

/// Stored-record decoding. Random bytes almost never carry a valid CRC-32, so the input is
/// decoded twice: as the stored bytes it is (which exercises the frame checks), and framed as
/// a version-1 record with a correct checksum (which hands the payload to bincode itself:
/// what a tampered record with a recomputed CRC would reach).
pub fn record_decoder(data: &[u8]) {
    decode_every_kind(data);
    let mut framed = Vec::with_capacity(data.len() + 5);
    framed.push(codec::RECORD_FORMAT_V1);
    framed.extend_from_slice(data);
    let crc = crc32fast::hash(&framed);
    framed.extend_from_slice(&crc.to_be_bytes());
    decode_every_kind(&framed);
}

fn decode_every_kind(bytes: &[u8]) {
    if let Ok(event) = codec::decode_event(bytes) {
        // What readers do with a decoded event: render it, chain it, fold it.
        let envelope = event.envelope_json().to_string();
        assert!(
            envelope.starts_with('{'),
            "an envelope renders as an object"
        );
        let _ = event.hash.to_hex();
        let folded = apply(None, &event);
        if let Some(mut state) = folded {
            ordo::domain::apply_to(&mut state, &event);
        }
        let again = codec::decode_event(&codec::encode_event(&event))
            .expect("a decoded event re-encodes to a record that decodes");
        assert_eq!(again, event, "re-encoding a decoded event changed it");
    }
    if let Ok(state) = codec::decode_state(bytes) {
        let again = codec::decode_state(&codec::encode_state(&state))
            .expect("a decoded state re-encodes to a record that decodes");
        assert_eq!(again, state, "re-encoding a decoded state changed it");
    }
    if let Ok(head) = codec::decode_head(bytes) {
        let again = codec::decode_head(&codec::encode_head(&head))
            .expect("a decoded head re-encodes to a record that decodes");
        assert_eq!(again, head, "re-encoding a decoded head changed it");
    }
    let _ = codec::decode_record::<Settings>(bytes);
    let _ = codec::decode_record::<SnapshotHeader>(bytes);
    let _ = codec::decode_record::<Head>(bytes);
}

/// The NDJSON input path of `ordo append --file` and `ordo import`: the length-limited line
/// reader, then each line as a writer's event and as an exported envelope (`--preserve`).
pub fn ndjson_parser(data: &[u8]) {
    let mut lines = Lines::new(data);
    // An error ends the file (as it does for import); blank lines are skipped.
    while let Ok(Some((line, text))) = lines.next_line() {
        assert!(line >= 1, "line numbers start at 1");
        if let Ok(event) = parse_event(text) {
            assert!(
                event.preserved.is_none(),
                "a writer's event never carries sequencing fields"
            );
        }
        if let Ok(event) = parse_envelope(text) {
            assert!(
                event.preserved.is_some() && event.event_id.is_some(),
                "an envelope keeps its position, version, hash and event id"
            );
        }
    }
}

/// The time parser behind `--as-of`, `--valid-at`, `occurred_at` and the HTTP `as_of`: a
/// time it accepts prints as RFC 3339 that parses back to the same microsecond.
pub fn time_parser(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(time) = Timestamp::parse(text) {
        let shown = time.to_string();
        assert_eq!(
            Timestamp::parse(&shown),
            Ok(time),
            "{text:?} parsed, but its rendering {shown:?} does not parse back to it"
        );
        assert_eq!(Timestamp::from_micros(time.micros()), Some(time));
    }
    let flag = params::time(params::Naming::Flags, "as_of", text);
    let field = params::time(params::Naming::Fields, "as_of", text);
    assert_eq!(
        flag.is_ok(),
        field.is_ok(),
        "the CLI flag and the HTTP field accept the same times"
    );
}
