//! The adapter's own unit tests: mappings, envelope, settings and start-up errors.

use std::time::Duration;

use ::kurrentdb::{CurrentRevision, Position, StreamPosition, StreamState};
use chrono::{DateTime, SubsecRound, Utc};
use domain::chain::{self, HashInput};
use domain::store::{AppendRequest, ExpectedVersion, Metadata, NewEvent, StoreError};
use uuid::Uuid;

use super::envelope::{
    RawParts, StoredMetadata, decode_parts, encode_event, seal_events, validate,
};
use super::mapping::{
    accept, actual_version, expected_to_state, from_position, our_position, revision_to_version,
    valid_position, version_to_revision,
};
use super::settings::{
    describe_error, describe_target, is_transient, parse_settings, redact, scrub,
};
use super::subscription::{MAX_RESUBSCRIBE_DELAY, resubscribe_delay};
use super::{KurrentDbEventStore, KurrentDbOptions, is_kurrentdb_url};

fn new_event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "KeyRenamed".into(),
        schema_version: 2,
        data: serde_json::json!({ "n": n, "name": "ünïcødé \"quoted\"" }),
        metadata: Metadata {
            actor: "cli:test".into(),
            request_id: Some(format!("req-{n}")),
            correlation_id: Some("corr".into()),
            ..Metadata::default()
        },
    }
}

#[test]
fn it_should_map_expected_versions_to_revisions_from_zero() {
    assert_eq!(expected_to_state(ExpectedVersion::Any), StreamState::Any);
    assert_eq!(
        expected_to_state(ExpectedVersion::NoStream),
        StreamState::NoStream
    );
    assert_eq!(
        expected_to_state(ExpectedVersion::Exact(0)),
        StreamState::NoStream
    );
    assert_eq!(
        expected_to_state(ExpectedVersion::Exact(1)),
        StreamState::StreamRevision(0)
    );
    assert_eq!(
        expected_to_state(ExpectedVersion::Exact(42)),
        StreamState::StreamRevision(41)
    );
    assert_eq!(revision_to_version(0), 1);
    assert_eq!(version_to_revision(1), Some(0));
    assert_eq!(version_to_revision(0), None);
    assert_eq!(revision_to_version(u64::MAX), u64::MAX);
}

#[test]
fn it_should_report_the_actual_version_of_a_conflict_from_one() {
    assert_eq!(actual_version(CurrentRevision::NoStream), 0);
    assert_eq!(actual_version(CurrentRevision::Current(0)), 1);
    assert_eq!(actual_version(CurrentRevision::Current(2)), 3);
}

#[test]
fn it_should_use_the_commit_position_and_accept_it_back() {
    let at = |p: u64| Position {
        commit: p,
        prepare: p,
    };
    assert_eq!(our_position(at(4_711)).unwrap(), 4_711);
    assert_eq!(from_position(0), StreamPosition::Start);
    assert_eq!(from_position(4_711), StreamPosition::Position(at(4_711)));
    assert!(our_position(at(10)).unwrap() < our_position(at(11)).unwrap());
}

#[test]
fn it_should_refuse_positions_it_cannot_map() {
    let legacy = Position {
        commit: 900,
        prepare: 800,
    };
    assert!(matches!(
        our_position(legacy),
        Err(StoreError::Corrupt { position: 900, .. })
    ));
    let none = Position {
        commit: u64::MAX,
        prepare: u64::MAX,
    };
    match our_position(none) {
        Err(StoreError::Unavailable(reason)) => assert!(reason.contains("22.6"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(our_position(Position::start()).is_err());
    assert_eq!(valid_position(Position::start()), None);
}

#[test]
fn it_should_keep_system_events_and_other_prefixes_out() {
    assert_eq!(accept("apikey-1", "KeyCreated", ""), Some("apikey-1"));
    assert_eq!(accept("$stats-127.0.0.1:2113", "StatsCollected", ""), None);
    assert_eq!(accept("$ce-apikey", "$>", ""), None);
    assert_eq!(accept("apikey-1", "$metadata", ""), None);
    assert_eq!(accept("t1-apikey-1", "KeyCreated", "t1-"), Some("apikey-1"));
    assert_eq!(accept("t2-apikey-1", "KeyCreated", "t1-"), None);
    assert_eq!(accept("t1-", "KeyCreated", "t1-"), None);
}

#[test]
fn it_should_round_trip_the_envelope_through_custom_metadata() {
    let event = new_event(7);
    let at = Utc::now().trunc_subsecs(6);
    let stored = StoredMetadata {
        metadata: event.metadata.clone(),
        schema_version: event.schema_version,
        recorded_at: Some(chain::timestamp_text(&at)),
    };
    let metadata = serde_json::to_vec(&stored).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&metadata).unwrap();
    assert_eq!(json["actor"], "cli:test");
    assert_eq!(json["request_id"], "req-7");
    assert_eq!(json["schema_version"], 2);
    assert!(json.get("hash").is_none());
    let data = serde_json::to_vec(&event.data).unwrap();
    let decoded = decode_parts(RawParts {
        stream: "apikey-1".into(),
        revision: 4,
        position: 1_234,
        event_type: event.event_type.clone(),
        event_id: event.event_id,
        data: &data,
        custom_metadata: &metadata,
        created: DateTime::UNIX_EPOCH,
    })
    .unwrap();
    assert_eq!(decoded.stream_version, 5);
    assert_eq!(decoded.position, 1_234);
    assert_eq!(decoded.event_id, event.event_id);
    assert_eq!(decoded.schema_version, 2);
    assert_eq!(decoded.recorded_at, at);
    assert_eq!(decoded.metadata, event.metadata);
    assert_eq!(decoded.data, event.data);
    // Encoding the same event goes through the client's EventData unharmed.
    assert!(encode_event(&event, event.metadata.clone(), &at).is_ok());
}

#[test]
fn it_should_seal_a_chained_stream_on_its_head() {
    let at = Utc::now().trunc_subsecs(6);
    let request = AppendRequest {
        stream: "apikey-0190".into(),
        expected: ExpectedVersion::Exact(3),
        events: vec![new_event(1), new_event(2)],
    };
    assert_eq!(
        seal_events(&request, 3, Some("head".into()), &at)
            .unwrap()
            .len(),
        2
    );
    // The same sealing as the SQL adapters: a recorded event with the stored fields
    // verifies against the hash this adapter computes.
    let mut sealed = request.events[0].metadata.clone();
    let hash = chain::seal(
        HashInput {
            stream: &request.stream,
            stream_version: 4,
            event_id: request.events[0].event_id,
            event_type: &request.events[0].event_type,
            schema_version: 2,
            recorded_at: &at,
            data: &request.events[0].data,
            metadata: &request.events[0].metadata,
            prev_hash: Some("head"),
        },
        &mut sealed,
    );
    let stored = serde_json::to_vec(&StoredMetadata {
        metadata: sealed,
        schema_version: 2,
        recorded_at: Some(chain::timestamp_text(&at)),
    })
    .unwrap();
    let data = serde_json::to_vec(&request.events[0].data).unwrap();
    let recorded = decode_parts(RawParts {
        stream: request.stream.clone(),
        revision: 3,
        position: 99,
        event_type: "KeyRenamed".into(),
        event_id: request.events[0].event_id,
        data: &data,
        custom_metadata: &stored,
        created: DateTime::UNIX_EPOCH,
    })
    .unwrap();
    assert_eq!(recorded.metadata.prev_hash.as_deref(), Some("head"));
    assert_eq!(recorded.metadata.hash, hash);
    assert_eq!(Some(HashInput::of(&recorded).hash()), hash);
}

#[test]
fn it_should_report_corrupt_events_at_their_position() {
    let decode = |data: &[u8], metadata: &[u8]| {
        decode_parts(RawParts {
            stream: "s".into(),
            revision: 0,
            position: 77,
            event_type: "T".into(),
            event_id: Uuid::now_v7(),
            data,
            custom_metadata: metadata,
            created: DateTime::UNIX_EPOCH,
        })
    };
    let good = br#"{"actor":"x","schema_version":1}"#;
    assert!(decode(b"{}", good).is_ok());
    assert_eq!(
        decode(b"{}", good).unwrap().recorded_at,
        DateTime::<Utc>::UNIX_EPOCH,
        "without recorded_at, the server's timestamp"
    );
    for (data, metadata) in [
        (&b"not json"[..], &good[..]),
        (b"{}", br#"{"schema_version":1}"#),
        (b"{}", br#"{"actor":"x"}"#),
        (b"{}", br#"{"actor":5,"schema_version":1}"#),
        (
            b"{}",
            br#"{"actor":"x","schema_version":1,"recorded_at":"yesterday"}"#,
        ),
        (b"{}", b""),
    ] {
        assert!(
            matches!(
                decode(data, metadata),
                Err(StoreError::Corrupt { position: 77, .. })
            ),
            "{:?} / {:?}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(metadata)
        );
    }
}

#[test]
fn it_should_refuse_appends_kurrentdb_would_misread() {
    let request = |stream: &str, events: Vec<NewEvent>| AppendRequest {
        stream: stream.into(),
        expected: ExpectedVersion::Any,
        events,
    };
    assert!(validate(&[request("apikey-1", vec![new_event(1)])]).is_ok());
    let system = validate(&[request("$apikey-1", vec![new_event(1)])]);
    assert!(matches!(system, Err(StoreError::InvalidAppend(_))));
    let mut typed = new_event(1);
    typed.event_type = "$metadata".into();
    assert!(validate(&[request("s", vec![typed])]).is_err());
    let twice = new_event(1);
    assert!(validate(&[request("a", vec![twice.clone()]), request("b", vec![twice])]).is_err());
    assert!(validate(&[]).is_err());
}

#[test]
fn it_should_recognise_kurrentdb_urls() {
    for url in [
        "esdb://localhost:2113?tls=false",
        "esdb+discover://cluster.example:2113",
        "kurrentdb://admin:changeit@localhost:2113",
        "kurrentdb+discover://a:1,b:2",
        "KurrentDB://localhost",
        "kdb://localhost",
    ] {
        assert!(is_kurrentdb_url(url), "{url}");
    }
    for url in [
        "postgres://x",
        "sqlite://x.db",
        "esdb",
        "http://localhost:2113",
    ] {
        assert!(!is_kurrentdb_url(url), "{url}");
    }
}

#[test]
fn it_should_parse_settings_and_name_the_nodes() {
    let settings = parse_settings("esdb://admin:changeit@db.example:2113?tls=false").unwrap();
    assert_eq!(describe_target(&settings), "db.example:2113");
    assert!(!settings.is_secure_mode_enabled());
    let cluster = parse_settings("kurrentdb://n1:2113,n2:2114,n3:2115").unwrap();
    assert_eq!(describe_target(&cluster), "n1:2113,n2:2114,n3:2115");
    let discover = parse_settings("esdb+discover://cluster.example").unwrap();
    assert_eq!(describe_target(&discover), "discover cluster.example:2113");
}

#[test]
fn it_should_reject_a_bad_url_without_showing_the_password() {
    for url in [
        "esdb://admin:hunter2@db.example:2113/some/path",
        "esdb://admin:hunter2@db.example:notaport",
        "esdb://admin:hunter2@db.example:2113?nodePreference=sideways",
        "esdb://admin:hunter2@db.example:2113?tls=maybe",
        "esdb://admin:hunter2@:2113",
        "mysql://admin:hunter2@db.example",
    ] {
        match parse_settings(url) {
            Err(StoreError::Unavailable(message)) => {
                assert!(!message.contains("hunter2"), "{message}");
                assert!(message.contains("admin:***@"), "{message}");
            }
            other => panic!("{url}: expected Unavailable, got {other:?}"),
        }
    }
}

#[test]
fn it_should_redact_and_scrub_passwords() {
    assert_eq!(
        redact("esdb://admin:changeit@h:2113?tls=false"),
        "esdb://admin:***@h:2113?tls=false"
    );
    assert_eq!(redact("esdb://h:2113"), "esdb://h:2113");
    assert_eq!(redact("esdb://admin@h:2113"), "esdb://admin@h:2113");
    assert_eq!(
        scrub("failed for changeit", "esdb://admin:changeit@h"),
        "failed for ***"
    );
    assert_eq!(scrub("text", "esdb://h"), "text");
}

#[test]
fn it_should_explain_client_errors() {
    use ::kurrentdb::Error as E;
    assert!(describe_error(&E::AccessDenied).contains("$all"));
    assert!(describe_error(&E::DeadlineExceeded).contains("in time"));
    let leader = ::kurrentdb::Endpoint {
        host: "n2".into(),
        port: 2113,
    };
    assert!(describe_error(&E::NotLeaderException(leader)).contains("n2:2113"));
    assert!(is_transient(&E::ConnectionClosed));
    assert!(is_transient(&E::ServerError("unavailable".into())));
    assert!(is_transient(&E::DeadlineExceeded));
    assert!(!is_transient(&E::AccessDenied));
    assert!(!is_transient(&E::UnsupportedFeature));
}

#[test]
fn it_should_back_off_up_to_five_seconds() {
    assert_eq!(resubscribe_delay(1), Duration::from_millis(100));
    assert_eq!(resubscribe_delay(2), Duration::from_millis(200));
    assert_eq!(resubscribe_delay(4), Duration::from_millis(800));
    assert_eq!(resubscribe_delay(10), MAX_RESUBSCRIBE_DELAY);
    assert_eq!(resubscribe_delay(u32::MAX), MAX_RESUBSCRIBE_DELAY);
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn assert_unreachable(url: &str, port: u16) {
    let options = KurrentDbOptions {
        connect_timeout: Duration::from_secs(3),
        ..KurrentDbOptions::default()
    };
    let started = std::time::Instant::now();
    match KurrentDbEventStore::connect_with(url, options).await {
        Err(StoreError::Unavailable(message)) => {
            eprintln!("start-up error: {message}");
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(!message.contains("s3cr3t"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn it_should_fail_start_up_on_an_unreachable_server() {
    let port = closed_port();
    assert_unreachable(
        &format!("esdb://admin:s3cr3t@127.0.0.1:{port}?tls=false"),
        port,
    )
    .await;
}

#[tokio::test]
async fn it_should_fail_start_up_over_tls_without_panicking() {
    // TLS on (the default): the client builds a rustls config, which panics unless
    // one crypto provider is installed.
    let port = closed_port();
    assert_unreachable(&format!("kurrentdb://admin:s3cr3t@127.0.0.1:{port}"), port).await;
}

#[tokio::test]
async fn it_should_refuse_a_system_stream_prefix() {
    let options = KurrentDbOptions {
        stream_prefix: "$x-".into(),
        ..KurrentDbOptions::default()
    };
    assert!(
        KurrentDbEventStore::connect_with("esdb://127.0.0.1:1?tls=false", options)
            .await
            .is_err()
    );
}
