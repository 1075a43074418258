//! Events written by an older release still replay: the fixtures hold the same key
//! histories at the old schema (`v1_events.json`: `KeyCreated` v1, without
//! `environment`) and at the current one (`current_events.json`), as stored data.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::apikey::{self, ApiKey};
use domain::events::{ApiKeyEvent, current_schema_version};
use domain::store::RecordedEvent;
use domain::{Aggregate, Environment};

fn fixture(name: &str) -> Vec<RecordedEvent> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn decode(events: &[RecordedEvent]) -> Vec<ApiKeyEvent> {
    events
        .iter()
        .map(|e| ApiKeyEvent::from_recorded(e).unwrap())
        .collect()
}

fn replay(
    events: &[ApiKeyEvent],
    stream: &str,
    recorded: &[RecordedEvent],
) -> Option<apikey::State> {
    let of_stream: Vec<&ApiKeyEvent> = events
        .iter()
        .zip(recorded)
        .filter(|(_, r)| r.stream == stream)
        .map(|(e, _)| e)
        .collect();
    ApiKey::replay(of_stream)
}

#[test]
fn v1_events_replay_to_the_same_state_as_current_events() {
    let old = fixture("v1_events.json");
    let current = fixture("current_events.json");
    assert!(
        old.iter()
            .any(|e| e.event_type == "KeyCreated" && e.schema_version == 1)
    );
    assert!(old.iter().all(|e| e.data.get("environment").is_none()));
    assert!(
        current
            .iter()
            .all(|e| Some(e.schema_version) == current_schema_version(&e.event_type))
    );

    let old_events = decode(&old);
    let current_events = decode(&current);
    assert_eq!(old_events, current_events);

    for stream in [
        "apikey-01953c2a-5b00-7000-8000-00000000000a",
        "apikey-01953c2a-5b00-7000-8000-00000000000b",
    ] {
        let from_old = replay(&old_events, stream, &old).unwrap();
        let from_current = replay(&current_events, stream, &current).unwrap();
        assert_eq!(from_old, from_current, "{stream}");
    }
    let live = replay(
        &old_events,
        "apikey-01953c2a-5b00-7000-8000-00000000000a",
        &old,
    )
    .unwrap();
    assert_eq!(live.environment, Environment::Live);
    assert_eq!(live.name.as_str(), "SAP ERP");
    assert!(live.is_revoked());
    let test = replay(
        &old_events,
        "apikey-01953c2a-5b00-7000-8000-00000000000b",
        &old,
    )
    .unwrap();
    assert_eq!(test.environment, Environment::Test);
}
