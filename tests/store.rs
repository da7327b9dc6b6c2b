//! Store tests: the record codec round-trips every record kind, rejects damage, and never
//! panics on garbage; a ledger closed and reopened keeps every event, state and its head.

use std::sync::OnceLock;

use ordo::domain::{
    Actor, Event, EventData, EventId, Hash, Label, OrderId, OrderState, Position, Timestamp,
    Version, apply,
};
use ordo::format::codec;
use ordo::generate::{GenerateOptions, generate};
use ordo::ledger::{Filter, ImportOptions, Ledger, NewEvent, NoProgress, import, parse_event};
use ordo::store::{Access, Head};
use proptest::prelude::*;

/// A generated workload (every event type, realistic data) to draw event data from.
fn workload() -> &'static [NewEvent] {
    static EVENTS: OnceLock<Vec<NewEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let mut out = Vec::new();
        let options = GenerateOptions {
            orders: 80,
            seed: 11,
            start: Timestamp::parse("2026-01-01").expect("valid date"),
            days: 30,
        };
        generate(&options, &mut out).expect("generate");
        String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|line| parse_event(line).expect("generated events parse"))
            .collect()
    })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // Year 1970 to 9999, the range RFC 3339 output can show.
    (0i64..253_402_300_799_999_999)
        .prop_map(|micros| Timestamp::from_micros(micros).expect("in range"))
}

fn label() -> impl Strategy<Value = Label> {
    "\\PC{1,64}".prop_map(|s| Label::new(s).expect("1 to 64 printable characters"))
}

fn event() -> impl Strategy<Value = Event> {
    (
        0..workload().len(),
        1u64..u64::MAX,
        1u64..u64::MAX,
        any::<u128>(),
        timestamp(),
        timestamp(),
        prop::option::of("[A-Za-z0-9._:-]{1,128}"),
        prop::option::of(label()),
        prop::option::of(label()),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(
                i,
                position,
                version,
                id,
                recorded_at,
                occurred_at,
                actor,
                correlation,
                causation,
                hash,
            )| {
                let new = &workload()[i];
                Event {
                    position: Position(position),
                    order_id: new.order_id.clone(),
                    version: Version(version),
                    event_id: EventId(uuid::Uuid::from_u128(id)),
                    schema_version: 1,
                    recorded_at,
                    occurred_at,
                    actor: actor.map(|a| Actor::new(a).expect("valid actor")),
                    correlation_id: correlation,
                    causation_id: causation,
                    data: new.data.clone(),
                    hash: Hash(hash),
                }
            },
        )
}

/// Sequenced events of the workload's first orders folded into order states.
fn states() -> &'static [OrderState] {
    static STATES: OnceLock<Vec<OrderState>> = OnceLock::new();
    STATES.get_or_init(|| {
        let mut states = std::collections::HashMap::<OrderId, OrderState>::new();
        for (i, new) in workload().iter().enumerate() {
            let previous = states.get(&new.order_id).cloned();
            let event = Event {
                position: Position(i as u64 + 1),
                order_id: new.order_id.clone(),
                version: Version(previous.as_ref().map_or(1, |s| s.version.0 + 1)),
                event_id: EventId(uuid::Uuid::from_u128(i as u128)),
                schema_version: 1,
                recorded_at: Timestamp::from_micros(i as i64).expect("in range"),
                occurred_at: new
                    .occurred_at
                    .unwrap_or(Timestamp::from_micros(0).expect("epoch")),
                actor: new.actor.clone(),
                correlation_id: None,
                causation_id: None,
                data: new.data.clone(),
                hash: Hash::default(),
            };
            if let Some(next) = apply(previous, &event) {
                states.insert(next.order_id.clone(), next);
            }
        }
        states.into_values().collect()
    })
}

proptest! {
    #[test]
    fn event_records_round_trip(event in event()) {
        let bytes = codec::encode_event(&event);
        prop_assert_eq!(bytes[0], codec::RECORD_FORMAT_V1);
        prop_assert_eq!(codec::decode_event(&bytes), Ok(event));
    }

    #[test]
    fn event_records_keep_the_documented_frame(event in event()) {
        // docs/format.md: [version 1][bincode 2 payload, standard config][CRC-32 of the two
        // before, big-endian]. Stored history depends on these exact bytes.
        let payload = bincode::serde::encode_to_vec(&event, bincode::config::standard())
            .expect("an event encodes");
        let mut expected = vec![codec::RECORD_FORMAT_V1];
        expected.extend_from_slice(&payload);
        expected.extend_from_slice(&crc32fast::hash(&expected).to_be_bytes());
        prop_assert_eq!(codec::encode_event(&event), expected);
    }

    #[test]
    fn order_state_records_round_trip(i in 0..states().len()) {
        let state = &states()[i];
        prop_assert_eq!(&codec::decode_state(&codec::encode_state(state)).expect("decodes"), state);
    }

    #[test]
    fn head_records_round_trip(position: u64, hash: [u8; 32], recorded_at in prop::option::of(timestamp()), orders: u64) {
        let head = Head { position: Position(position), hash: Hash(hash), recorded_at, orders };
        prop_assert_eq!(codec::decode_head(&codec::encode_head(&head)), Ok(head));
    }

    #[test]
    fn hashes_decode_as_serdes_own_byte_arrays_do(bytes: [u8; 32], cut in 0usize..32) {
        // `Hash` has a hand-written decoder (a plain loop, for speed); stored history needs it
        // to read exactly what `[u8; 32]` reads, in bincode and in JSON, and to refuse less.
        let config = bincode::config::standard();
        let stored = bincode::serde::encode_to_vec(bytes, config).expect("bytes encode");
        prop_assert_eq!(&stored, &bincode::serde::encode_to_vec(Hash(bytes), config).expect("a hash encodes"));
        let (hash, used): (Hash, usize) = bincode::serde::decode_from_slice(&stored, config).expect("decodes");
        prop_assert_eq!((hash, used), (Hash(bytes), 32));
        prop_assert!(bincode::serde::decode_from_slice::<Hash, _>(&stored[..cut], config).is_err());
        let json = serde_json::to_string(&bytes).expect("json");
        prop_assert_eq!(serde_json::from_str::<Hash>(&json).expect("json decodes"), Hash(bytes));
        let short = serde_json::to_string(&bytes[..cut]).expect("json");
        prop_assert!(serde_json::from_str::<Hash>(&short).is_err());
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        // Random bytes almost never carry a valid checksum: they must be refused.
        prop_assert!(codec::decode_event(&bytes).is_err());
        prop_assert!(codec::decode_state(&bytes).is_err());
        prop_assert!(codec::decode_head(&bytes).is_err());
    }

    #[test]
    fn decoding_garbage_with_a_valid_frame_never_panics(payload in prop::collection::vec(any::<u8>(), 0..600)) {
        // The checksum is right, so the bincode decoder itself sees the garbage.
        let mut bytes = vec![codec::RECORD_FORMAT_V1];
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_be_bytes());
        let _ = codec::decode_event(&bytes);
        let _ = codec::decode_state(&bytes);
        let _ = codec::decode_head(&bytes);
    }

    #[test]
    fn any_flipped_bit_is_detected(event in event(), bit in any::<prop::sample::Index>()) {
        let mut bytes = codec::encode_event(&event);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(codec::decode_event(&bytes).is_err());
    }

    #[test]
    fn truncated_records_are_refused(event in event(), cut in any::<prop::sample::Index>()) {
        let bytes = codec::encode_event(&event);
        let cut = cut.index(bytes.len());
        prop_assert!(codec::decode_event(&bytes[..cut]).is_err());
    }
}

#[test]
fn an_unknown_format_version_is_refused_by_name() {
    let event = event_at(0);
    let mut bytes = codec::encode_event(&event);
    bytes[0] = 2;
    let len = bytes.len();
    let crc = crc32fast::hash(&bytes[..len - 4]).to_be_bytes();
    bytes[len - 4..].copy_from_slice(&crc);
    let err = codec::decode_event(&bytes).expect_err("version 2 is unknown");
    assert!(err.contains("unknown record format version 2"), "{err}");
}

fn event_at(i: usize) -> Event {
    let new = &workload()[i];
    Event {
        position: Position(1),
        order_id: new.order_id.clone(),
        version: Version(1),
        event_id: EventId(uuid::Uuid::from_u128(1)),
        schema_version: 1,
        recorded_at: Timestamp::from_micros(1).expect("in range"),
        occurred_at: Timestamp::from_micros(1).expect("in range"),
        actor: None,
        correlation_id: None,
        causation_id: None,
        data: new.data.clone(),
        hash: Hash::default(),
    }
}

/// Everything a reader can see of a ledger: head, every event, every order's state.
fn snapshot(ledger: &Ledger) -> (Head, Vec<Event>, Vec<OrderState>) {
    let head = ledger.head().expect("head");
    let events: Vec<Event> = ledger
        .store()
        .events_from(Position(1))
        .collect::<Result<_, _>>()
        .expect("events read");
    let mut orders: Vec<OrderId> = events.iter().map(|e| e.order_id.clone()).collect();
    orders.sort();
    orders.dedup();
    let states = orders
        .iter()
        .map(|o| ledger.state(o, &Filter::default()).expect("state"))
        .collect();
    (head, events, states)
}

#[test]
fn reopening_a_ledger_keeps_every_event_state_and_the_head() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("ledger");
    let input = tmp.path().join("events.ndjson");
    let mut out = Vec::new();
    let options = GenerateOptions {
        orders: 150,
        seed: 5,
        start: Timestamp::parse("2026-02-01").expect("valid date"),
        days: 20,
    };
    let generated = generate(&options, &mut out).expect("generate");
    std::fs::write(&input, out).expect("write workload");

    let before = {
        let ledger = Ledger::open(&path, Access::ReadWrite).expect("create");
        let result =
            import(&ledger, &input, &ImportOptions::default(), &NoProgress).expect("import");
        assert_eq!(result.appended, generated);
        snapshot(&ledger)
    };
    assert_eq!(before.1.len() as u64, generated);
    assert_eq!(before.0.position, Position(generated));

    let ledger = Ledger::open(&path, Access::ReadWrite).expect("reopen");
    let after = snapshot(&ledger);
    assert_eq!(after, before, "reopening changed what the ledger holds");
    assert!(ledger.verify(&NoProgress).expect("verify").ok);

    // The reopened ledger chains new events to the old head, and remembers event ids.
    let again = import(&ledger, &input, &ImportOptions::default(), &NoProgress).expect("re-import");
    assert_eq!((again.appended, again.duplicates), (0, generated));
    let placed = workload()
        .iter()
        .find(|e| matches!(e.data, EventData::OrderPlaced(_)))
        .expect("the workload places orders");
    let mut new = NewEvent::new(
        OrderId::new("NEW-1").expect("valid id"),
        placed.data.clone(),
    );
    new.expected_version = Some(Version(0));
    let appended = ledger.append(new).expect("append after reopen");
    assert_eq!(appended.position, Position(generated + 1));
    drop(ledger);

    let read_only = Ledger::open(&path, Access::ReadOnly).expect("open read-only");
    let report = read_only.verify(&NoProgress).expect("verify");
    assert!(report.ok, "{:?}", report.reason);
    assert_eq!(report.head_position, Position(generated + 1));
    // Writing through a reader is one error, whichever write: the caller's mistake.
    let refused = read_only
        .snapshot_create()
        .expect_err("a reader cannot snapshot");
    assert_eq!(refused.kind(), "invalid_input", "{refused}");
    let refused = read_only
        .append(NewEvent::new(
            OrderId::new("NEW-2").expect("valid id"),
            placed.data.clone(),
        ))
        .expect_err("a reader cannot append");
    assert_eq!(refused.kind(), "invalid_input", "{refused}");
}
