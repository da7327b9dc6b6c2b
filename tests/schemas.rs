//! Proves that `schemas/*.v1.json` are exactly what the Rust event types generate, so the
//! published schemas cannot drift from what the ledger accepts. Regenerate them with
//! `ORDO_UPDATE_SCHEMAS=1 cargo test --test schemas`.

use std::path::PathBuf;

use ordo::domain::{EventType, SCHEMA_VERSION};

fn schema_path(t: EventType) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{}.v{SCHEMA_VERSION}.json", t.as_str()))
}

#[test]
fn every_event_type_has_a_checked_in_schema_equal_to_the_generated_one() {
    let update = std::env::var_os("ORDO_UPDATE_SCHEMAS").is_some();
    let mut drifted = Vec::new();
    for &t in EventType::ALL {
        let generated =
            serde_json::to_string_pretty(&t.data_schema()).expect("a schema is JSON") + "\n";
        let path = schema_path(t);
        if update {
            std::fs::write(&path, &generated).expect("schemas/ is writable");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(stored) if stored == generated => {}
            _ => drifted.push(path.display().to_string()),
        }
    }
    assert!(
        drifted.is_empty(),
        "schemas differ from the Rust types (run ORDO_UPDATE_SCHEMAS=1 cargo test --test schemas): {drifted:?}"
    );
}

#[test]
fn schemas_refuse_unknown_fields_and_state_the_documented_limits() {
    let placed = EventType::OrderPlaced.data_schema().to_value();
    assert_eq!(placed["additionalProperties"], false);
    assert_eq!(placed["properties"]["lines"]["minItems"], 1);
    assert_eq!(placed["properties"]["lines"]["maxItems"], 1000);
    assert_eq!(placed["properties"]["currency"]["pattern"], "^[A-Z]{3}$");
    let note = EventType::NoteAdded.data_schema().to_value();
    assert_eq!(note["properties"]["text"]["maxLength"], 4096);
    let captured = EventType::PaymentCaptured.data_schema().to_value();
    assert_eq!(captured["properties"]["amount"]["minimum"], 1);
}
