//! Micro-benchmarks of the hot pieces of an append and a replay: reading a request body,
//! the record codec, one step of the hash chain, the rules plus the fold of one event, the
//! fold of a whole order stream, and key encoding. `cargo bench --bench micro`; `cargo
//! test` runs each once.
//!
//! The events are real: a small generated workload is imported into a temporary ledger and
//! the longest order stream is read back.

use std::hint::black_box;

use criterion::Criterion;

use ordo::domain::{Event, apply, decide};
use ordo::format::chain;
use ordo::format::codec::{decode_event, encode_event};
use ordo::format::keys::{event_key, order_index_key, order_state_key};
use ordo::generate::{GenerateOptions, generate};
use ordo::ledger::{Filter, ImportOptions, Ledger, NoProgress, import};
use ordo::store::{Access, Durability};

// The binary's allocator (src/main.rs), so that in-process figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The longest order stream of a 200-order generated workload.
fn sample_stream() -> Vec<Event> {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let workload = tmp.path().join("workload.ndjson");
    let options = GenerateOptions {
        orders: 200,
        seed: 3,
        start: ordo::domain::Timestamp::parse("2026-01-01").expect("a valid date"),
        days: 30,
    };
    let mut file = std::fs::File::create(&workload).expect("a writable temp dir");
    generate(&options, &mut file).expect("generation succeeds");
    let ledger = Ledger::open_with(
        &tmp.path().join("ledger"),
        Access::ReadWrite,
        Durability::NoSync,
    )
    .expect("a new ledger");
    import(&ledger, &workload, &ImportOptions::default(), &NoProgress).expect("import");
    let orders = ledger.query_orders(&Default::default(), &Filter::default());
    orders
        .expect("orders")
        .iter()
        .map(|o| {
            ledger
                .history(&o.order_id, &Filter::default())
                .expect("history")
        })
        .max_by_key(Vec::len)
        .expect("at least one order")
}

fn benches(c: &mut Criterion) {
    let stream = sample_stream();
    let placed = &stream[0];
    let record = encode_event(placed);

    // An HTTP request body as the macro benchmark's clients send it, read into the writer's
    // form as `POST /v1/events` did (a strict `Value` first) and does (in one pass).
    let body = concat!(
        r#"{"order_id":"BENCH-128-0-0","type":"order_placed","data":{"customer_id":"CUST-BENCH","#,
        r#""currency":"EUR","lines":[{"sku":"SKU-1","quantity":1,"unit_price":1250}]}}"#,
    );
    c.bench_function("input/request_body_via_value", |b| {
        b.iter(|| {
            let value = ordo::ledger::json::parse_value_bytes(black_box(body.as_bytes()));
            ordo::ledger::parse_event_value(value.expect("valid JSON")).expect("a valid event")
        })
    });
    c.bench_function("input/request_body_direct", |b| {
        b.iter(|| ordo::ledger::parse_event_direct(black_box(body)).expect("a valid event"))
    });
    // The answer to that request, written as JSON through a `Value` (as it was) and
    // straight from the result (as it is).
    let answer = ordo::ledger::AppendResult {
        position: ordo::domain::Position(400_001),
        order_id: ordo::domain::OrderId::new("BENCH-128-0-0").expect("a valid id"),
        version: ordo::domain::Version(1),
        event_id: ordo::domain::EventId(uuid::Uuid::now_v7()),
        recorded_at: ordo::domain::Timestamp::parse("2026-12-03T12:00:00Z").expect("a time"),
        duplicate: false,
    };
    c.bench_function("http/answer_via_value", |b| {
        b.iter(|| {
            let value = serde_json::to_value(black_box(&answer)).expect("encodable");
            serde_json::to_vec(&value).expect("encodable")
        })
    });
    c.bench_function("http/answer_direct", |b| {
        b.iter(|| serde_json::to_vec(black_box(&answer)).expect("encodable"))
    });
    c.bench_function("codec/encode_event", |b| {
        b.iter(|| encode_event(black_box(placed)))
    });
    c.bench_function("codec/decode_event", |b| {
        b.iter(|| decode_event(black_box(&record)).expect("valid record"))
    });
    c.bench_function("chain/step", |b| {
        b.iter(|| chain::chain(black_box(&chain::GENESIS), black_box(placed)))
    });

    // The rules and the fold for the last event of the stream, given the state before it.
    let (last, earlier) = stream.split_last().expect("a non-empty stream");
    let before = earlier.iter().fold(None, apply);
    c.bench_function("rules/decide_and_apply", |b| {
        b.iter(|| {
            decide(&last.order_id, before.as_ref(), black_box(&last.data)).expect("accepted");
            apply(before.clone(), black_box(last))
        })
    });
    c.bench_function(&format!("fold/order_stream_{}_events", stream.len()), |b| {
        b.iter(|| black_box(&stream).iter().fold(None, apply))
    });

    c.bench_function("keys/event_order_index_state", |b| {
        b.iter(|| {
            (
                event_key(black_box(placed.position)),
                order_index_key(black_box(&placed.order_id), placed.version),
                order_state_key(black_box(&placed.order_id)).len(),
            )
        })
    });
}

// What `criterion_group!` and `criterion_main!` expand to, written out: the macros'
// `pub fn`s have no docs, which our lints refuse.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
}
