use chrono::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::scope::Scope;
use crate::testing;
use crate::values::{ControlCharError, MAX_REASON_CHARS};

fn given(events: impl IntoIterator<Item = Event>) -> testing::Given<ApiKey> {
    testing::given(events)
}

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + seconds, 0).unwrap()
}

fn key_id() -> KeyId {
    KeyId::from_uuid(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0001,
    ))
}

fn successor() -> KeyId {
    KeyId::from_uuid(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0002,
    ))
}

fn create(expires_at: Option<DateTime<Utc>>) -> CreateKey {
    CreateKey {
        key_id: key_id(),
        org_id: OrgId::from_uuid(uuid::Uuid::from_u128(7)),
        name: KeyName::parse("ci").unwrap(),
        environment: Environment::Live,
        scopes: Scope::data_scopes(),
        allowed_ips: AllowedIps::any(),
        expires_at,
        rate_limit_per_minute: None,
        secret_hash: SecretHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
        prefix: token::prefix_of(Environment::Live, key_id()),
        rotated_from: None,
        now: t(0),
    }
}

fn created_expiring(expires_at: Option<DateTime<Utc>>) -> Event {
    let c = create(expires_at);
    KeyCreated {
        key_id: c.key_id,
        org_id: c.org_id,
        name: c.name,
        environment: c.environment,
        scopes: c.scopes,
        allowed_ips: c.allowed_ips,
        expires_at: c.expires_at,
        rate_limit_per_minute: c.rate_limit_per_minute,
        secret_hash: c.secret_hash,
        prefix: c.prefix,
        rotated_from: c.rotated_from,
        created_at: c.now,
    }
    .into()
}

fn created() -> Event {
    created_expiring(None)
}

fn revoked(at: i64) -> Event {
    KeyRevoked {
        reason: None,
        revoked_at: t(at),
    }
    .into()
}

fn revoke(at: i64) -> Command {
    Command::Revoke {
        reason: None,
        now: t(at),
    }
}

fn rotate(grace_seconds: i64, at: i64) -> Command {
    Command::Rotate {
        successor_id: successor(),
        grace_period: TimeDelta::seconds(grace_seconds),
        now: t(at),
    }
}

// ------------------------------------------------------------------ create

#[test]
fn it_should_create_a_key() {
    given([])
        .when(Command::CreateKey(Box::new(create(None))))
        .then([created()]);
}

#[test]
fn it_should_not_create_a_key_twice() {
    given([created()])
        .when(Command::CreateKey(Box::new(create(None))))
        .then_error(Error::AlreadyExists);
}

#[test]
fn it_should_not_create_a_key_that_has_already_expired() {
    given([])
        .when(Command::CreateKey(Box::new(create(Some(t(0))))))
        .then_error(Error::InvalidExpiry(ExpiryError));
}

#[test]
fn it_should_not_create_a_new_key_with_a_prefix_of_the_legacy_length() {
    // New keys get today's prefix; a short one would be a handler bug.
    let mut c = create(None);
    c.prefix = c.prefix[..token::ENV_PREFIX_LEN + token::LEGACY_PREFIX_ID_CHARS].to_owned();
    given([])
        .when(Command::CreateKey(Box::new(c)))
        .then_error(Error::PrefixMismatch);
}

#[test]
fn a_key_created_with_a_legacy_prefix_should_keep_it_and_still_be_managed() {
    // Given a KeyCreated of the first releases, with an 8-character id prefix
    let legacy = token::prefix_of(Environment::Live, key_id())
        [..token::ENV_PREFIX_LEN + token::LEGACY_PREFIX_ID_CHARS]
        .to_owned();
    let mut event = created();
    if let Event::KeyCreated(e) = &mut event {
        e.prefix = legacy.clone();
    }
    // When it is replayed, then the stored prefix is kept as is (never recomputed)
    let state = ApiKey::replay(std::slice::from_ref(&event)).unwrap();
    assert_eq!(state.prefix, legacy);
    // And its commands are decided as for any key (the prefix is checked only on create)
    given([event.clone()])
        .when(Command::Rename {
            name: KeyName::parse("renamed").unwrap(),
        })
        .then([KeyRenamed {
            name: KeyName::parse("renamed").unwrap(),
        }
        .into()]);
    let rotated = given([event]).when(rotate(60, 1)).outcome();
    assert!(
        matches!(rotated.as_deref(), Ok([Event::KeyRotated(_)])),
        "{rotated:?}"
    );
}

#[test]
fn it_should_not_create_a_key_with_a_foreign_prefix() {
    let mut c = create(None);
    c.prefix = token::prefix_of(Environment::Test, key_id());
    given([])
        .when(Command::CreateKey(Box::new(c)))
        .then_error(Error::PrefixMismatch);
}

#[test]
fn it_should_refuse_changes_to_a_missing_key() {
    given([])
        .when(Command::Rename {
            name: KeyName::parse("x").unwrap(),
        })
        .then_error(Error::NotFound);
    given([]).when(revoke(1)).then_error(Error::NotFound);
}

// ------------------------------------------------------------------ changes

#[test]
fn it_should_rename_a_key() {
    let name = KeyName::parse("deploy").unwrap();
    given([created()])
        .when(Command::Rename { name: name.clone() })
        .then([KeyRenamed { name }.into()]);
}

#[test]
fn it_should_do_nothing_when_renamed_to_its_own_name() {
    given([created()])
        .when(Command::Rename {
            name: KeyName::parse("ci").unwrap(),
        })
        .then_nothing();
}

#[test]
fn it_should_record_scopes_before_and_after() {
    let after = Scopes::parse(["assets:read"]).unwrap();
    given([created()])
        .when(Command::ChangeScopes {
            scopes: after.clone(),
        })
        .then([ScopesChanged {
            before: Scope::data_scopes(),
            after,
        }
        .into()]);
}

#[test]
fn it_should_do_nothing_when_the_scopes_are_the_same() {
    given([created()])
        .when(Command::ChangeScopes {
            scopes: Scope::data_scopes(),
        })
        .then_nothing();
}

#[test]
fn it_should_record_allowed_ips_before_and_after() {
    let after = AllowedIps::parse(["10.0.0.0/8"]).unwrap();
    given([created()])
        .when(Command::ChangeAllowedIps {
            allowed_ips: after.clone(),
        })
        .then([AllowedIpsChanged {
            before: AllowedIps::any(),
            after,
        }
        .into()]);
    given([created()])
        .when(Command::ChangeAllowedIps {
            allowed_ips: AllowedIps::any(),
        })
        .then_nothing();
}

#[test]
fn it_should_change_and_clear_the_expiry() {
    given([created()])
        .when(Command::ChangeExpiry {
            expires_at: Some(t(100)),
            now: t(10),
        })
        .then([ExpiryChanged {
            expires_at: Some(t(100)),
        }
        .into()]);
    given([created_expiring(Some(t(100)))])
        .when(Command::ChangeExpiry {
            expires_at: None,
            now: t(10),
        })
        .then([ExpiryChanged { expires_at: None }.into()]);
}

#[test]
fn it_should_not_set_an_expiry_in_the_past() {
    given([created()])
        .when(Command::ChangeExpiry {
            expires_at: Some(t(5)),
            now: t(10),
        })
        .then_error(Error::InvalidExpiry(ExpiryError));
}

#[test]
fn it_should_not_bring_an_expired_key_back() {
    given([created_expiring(Some(t(100)))])
        .when(Command::ChangeExpiry {
            expires_at: Some(t(1000)),
            now: t(200),
        })
        .then_error(Error::Expired);
}

// ------------------------------------------------------------------ revoke

#[test]
fn it_should_revoke_a_key_with_a_trimmed_reason() {
    given([created()])
        .when(Command::Revoke {
            reason: Some("  leaked in CI logs ".into()),
            now: t(5),
        })
        .then([KeyRevoked {
            reason: Some("leaked in CI logs".into()),
            revoked_at: t(5),
        }
        .into()]);
}

#[test]
fn it_should_treat_a_blank_reason_as_none() {
    given([created()])
        .when(Command::Revoke {
            reason: Some("   ".into()),
            now: t(5),
        })
        .then([revoked(5)]);
}

#[test]
fn it_should_refuse_an_overlong_reason() {
    given([created()])
        .when(Command::Revoke {
            reason: Some("x".repeat(MAX_REASON_CHARS + 1)),
            now: t(5),
        })
        .then_error(Error::InvalidReason(ReasonError::TooLong {
            max: MAX_REASON_CHARS,
        }));
}

#[test]
fn it_should_refuse_a_reason_with_a_nul_before_anything_is_written() {
    given([created()])
        .when(Command::Revoke {
            reason: Some("leaked\u{0}in CI".into()),
            now: t(5),
        })
        .then_error(Error::InvalidReason(ReasonError::ControlCharacter(
            ControlCharError { code: 0, index: 6 },
        )));
}

#[test]
fn it_should_keep_line_breaks_in_a_reason() {
    given([created()])
        .when(Command::Revoke {
            reason: Some("leaked:\nsee ticket 42".into()),
            now: t(5),
        })
        .then([KeyRevoked {
            reason: Some("leaked:\nsee ticket 42".into()),
            revoked_at: t(5),
        }
        .into()]);
}

#[test]
fn it_should_revoke_idempotently() {
    given([created(), revoked(5)])
        .when(revoke(9))
        .then_nothing();
}

#[test]
fn it_should_refuse_every_change_to_a_revoked_key() {
    let commands = [
        Command::Rename {
            name: KeyName::parse("other").unwrap(),
        },
        Command::ChangeScopes {
            scopes: Scopes::new(),
        },
        Command::ChangeAllowedIps {
            allowed_ips: AllowedIps::parse(["::1"]).unwrap(),
        },
        Command::ChangeExpiry {
            expires_at: None,
            now: t(9),
        },
        rotate(60, 9),
    ];
    for command in commands {
        given([created(), revoked(5)])
            .when(command)
            .then_error(Error::Revoked);
    }
}

#[test]
fn it_should_not_reactivate_a_revoked_key() {
    let state = ApiKey::replay(&[
        created_expiring(Some(t(100))),
        revoked(5),
        ExpiryChanged { expires_at: None }.into(),
    ])
    .unwrap();
    assert_eq!(state.status(t(6)), KeyStatus::Revoked);
    assert_eq!(state.status(t(1_000)), KeyStatus::Revoked);
}

#[test]
fn it_should_keep_the_first_revocation() {
    let state = ApiKey::replay(&[created(), revoked(5), revoked(9)]).unwrap();
    assert_eq!(state.revoked_at, Some(t(5)));
    assert_eq!(state.version, 3);
}

// ------------------------------------------------------------------ rotate

#[test]
fn it_should_rotate_with_a_grace_period() {
    given([created()]).when(rotate(3600, 10)).then([KeyRotated {
        successor_id: successor(),
        old_key_expires_at: t(3610),
        rotated_at: t(10),
    }
    .into()]);
}

#[test]
fn it_should_not_extend_a_key_life_by_rotating_it() {
    given([created_expiring(Some(t(100)))])
        .when(rotate(3600, 10))
        .then([KeyRotated {
            successor_id: successor(),
            old_key_expires_at: t(100),
            rotated_at: t(10),
        }
        .into()]);
}

#[test]
fn it_should_stop_the_old_key_after_the_grace_period() {
    let events = given([created()]).when(rotate(60, 10)).outcome().unwrap();
    let mut history = vec![created()];
    history.extend(events);
    let state = ApiKey::replay(&history).unwrap();
    assert_eq!(state.status(t(69)), KeyStatus::Active);
    assert_eq!(state.status(t(70)), KeyStatus::Expired);
    assert_eq!(state.rotated_to, Some(successor()));
}

#[test]
fn it_should_not_rotate_an_expired_key() {
    given([created_expiring(Some(t(100)))])
        .when(rotate(60, 100))
        .then_error(Error::Expired);
}

#[test]
fn it_should_not_rotate_a_key_twice() {
    let rotated: Event = KeyRotated {
        successor_id: successor(),
        old_key_expires_at: t(1000),
        rotated_at: t(10),
    }
    .into();
    given([created(), rotated.clone()])
        .when(rotate(60, 20))
        .then_error(Error::AlreadyRotated {
            successor: successor(),
        });
    given([created(), rotated])
        .when(Command::ChangeExpiry {
            expires_at: Some(t(5000)),
            now: t(20),
        })
        .then_error(Error::AlreadyRotated {
            successor: successor(),
        });
}

#[test]
fn it_should_refuse_a_bad_grace_period_or_successor() {
    given([created()])
        .when(rotate(-1, 10))
        .then_error(Error::InvalidGracePeriod(GracePeriodError));
    given([created()])
        .when(rotate(GracePeriod::MAX.num_seconds() + 1, 10))
        .then_error(Error::InvalidGracePeriod(GracePeriodError));
    given([created()])
        .when(Command::Rotate {
            successor_id: key_id(),
            grace_period: TimeDelta::zero(),
            now: t(10),
        })
        .then_error(Error::InvalidSuccessor);
}

// ------------------------------------------------------------------ state

#[test]
fn it_should_fold_a_history_into_state() {
    let state = ApiKey::replay(&[
        created(),
        KeyRenamed {
            name: KeyName::parse("deploy").unwrap(),
        }
        .into(),
        ScopesChanged {
            before: Scope::data_scopes(),
            after: Scope::all(),
        }
        .into(),
    ])
    .unwrap();
    assert_eq!(state.name.as_str(), "deploy");
    assert_eq!(state.scopes, Scope::all());
    assert_eq!(state.version, 3);
    assert_eq!(state.status(t(1)), KeyStatus::Active);
    assert_eq!(state.requests_per_minute(Plan::Professional), 100);
    assert!(!format!("{state:?}").contains("argon2id"));
    let json = serde_json::to_value(&state).unwrap();
    assert!(json.get("secret_hash").is_none());
    assert_eq!(json["name"], "deploy");
}

#[test]
fn a_keys_own_rate_limit_should_apply_only_below_its_plans() {
    let mut key = ApiKey::replay(&[created()]).unwrap();
    assert_eq!(key.requests_per_minute(Plan::Enterprise), 500);
    key.rate_limit_per_minute = Some(RateLimit::parse(42).unwrap());
    assert_eq!(key.requests_per_minute(Plan::Enterprise), 42);
    key.rate_limit_per_minute = Some(RateLimit::parse(5000).unwrap());
    assert_eq!(key.requests_per_minute(Plan::Enterprise), 500);
}

#[test]
fn it_should_serialize_statuses_in_lowercase() {
    assert_eq!(
        serde_json::to_string(&KeyStatus::Expired).unwrap(),
        "\"expired\""
    );
    assert_eq!("revoked".parse(), Ok(KeyStatus::Revoked));
    assert!("gone".parse::<KeyStatus>().is_err());
}

// ------------------------------------------------------------------ properties

fn any_command() -> impl Strategy<Value = Command> {
    let time = -10i64..10_000;
    prop_oneof![
        Just(Command::CreateKey(Box::new(create(None)))),
        "[a-z]{1,3}".prop_map(|n| Command::Rename {
            name: KeyName::parse(&n).unwrap()
        }),
        proptest::sample::subsequence(Scope::all().iter().collect::<Vec<_>>(), 0..4).prop_map(
            |s| Command::ChangeScopes {
                scopes: s.into_iter().collect()
            }
        ),
        prop_oneof![Just(vec![]), Just(vec!["10.0.0.0/8"]), Just(vec!["::1"])].prop_map(|ips| {
            Command::ChangeAllowedIps {
                allowed_ips: AllowedIps::parse(ips).unwrap(),
            }
        }),
        (proptest::option::of(time.clone()), time.clone()).prop_map(|(at, now)| {
            Command::ChangeExpiry {
                expires_at: at.map(t),
                now: t(now),
            }
        }),
        (proptest::option::of("[a-z ]{0,8}"), time.clone()).prop_map(|(reason, now)| {
            Command::Revoke {
                reason,
                now: t(now),
            }
        }),
        (-5i64..100_000, time).prop_map(|(grace, now)| rotate(grace, now)),
    ]
}

/// Runs commands in order, appending whatever each decides; returns the history.
fn run(initial: Vec<Event>, commands: Vec<Command>) -> Vec<Event> {
    let mut history = initial;
    let mut state = ApiKey::replay(&history);
    for command in commands {
        if let Ok(events) = decide(&state, command) {
            for event in events {
                state = evolve(state, &event);
                history.push(event);
            }
        }
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_revoked_key_never_becomes_active_again(
        before in proptest::collection::vec(any_command(), 0..6),
        revoked_at in 0i64..100,
        after in proptest::collection::vec(any_command(), 0..12),
        probe in -100i64..200_000,
    ) {
        let mut history = run(vec![created()], before);
        history = run(history, vec![revoke(revoked_at)]);
        let mut state = ApiKey::replay(&history);
        prop_assert_eq!(state.as_ref().map(|s| s.status(t(probe))), Some(KeyStatus::Revoked));
        for command in after {
            let was_revoke = matches!(command, Command::Revoke { .. });
            let result = decide(&state, command);
            match &result {
                Ok(events) => prop_assert!(events.is_empty(), "{:?}", result),
                Err(_) => prop_assert!(!was_revoke),
            }
            for event in result.unwrap_or_default() {
                state = evolve(state, &event);
            }
            prop_assert_eq!(state.as_ref().map(|s| s.status(t(probe))), Some(KeyStatus::Revoked));
        }
    }

    #[test]
    fn stream_versions_strictly_increase(
        commands in proptest::collection::vec(any_command(), 0..24),
    ) {
        let mut state: Option<State> = None;
        let mut last = 0u64;
        for command in commands {
            for event in decide(&state, command).unwrap_or_default() {
                state = evolve(state, &event);
                let version = state.as_ref().map_or(0, |s| s.version);
                prop_assert_eq!(version, last + 1);
                last = version;
            }
        }
    }

    #[test]
    fn every_decided_event_survives_the_store_format(
        commands in proptest::collection::vec(any_command(), 0..12),
    ) {
        let history = run(vec![], commands);
        for event in history {
            let new = event.to_new_event(crate::store::Metadata::default());
            let recorded = crate::store::RecordedEvent {
                event_id: new.event_id,
                stream: key_id().stream(),
                stream_version: 1,
                position: 1,
                event_type: new.event_type,
                schema_version: new.schema_version,
                recorded_at: t(0),
                metadata: new.metadata,
                data: new.data,
            };
            prop_assert_eq!(Event::from_recorded(&recorded), Ok(event));
        }
    }
}
