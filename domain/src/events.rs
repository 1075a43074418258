//! The events of every stream, with stable wire names and schema versions.
//!
//! A Rust name may change; a wire name ([`wire`]) never does. Data is JSON (the store is
//! untyped); decoding goes through [`upcast`], which brings data written by an older
//! release to the current schema version before it is deserialized.
//!
//! Streams: [`ApiKeyEvent`] on `apikey-<id>`, [`UsageEvent`] on `apikey-usage-<id>`,
//! [`OrganizationEvent`] on `org-<id>`.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::ids::{KeyId, OrgId};
use crate::plan::Plan;
use crate::scope::{Scope, Scopes};
use crate::store::{Metadata, NewEvent, RecordedEvent};
use crate::token::Environment;
use crate::values::{AllowedIps, KeyName, OrgName, RateLimit};

/// The stable wire names of every event type. Never change one: stored events use them.
pub mod wire {
    /// An organisation was created.
    pub const ORGANIZATION_CREATED: &str = "OrganizationCreated";
    /// An organisation's plan changed.
    pub const PLAN_CHANGED: &str = "PlanChanged";
    /// An organisation issued a key (counted against the plan's key limit).
    pub const KEY_ISSUED: &str = "KeyIssued";
    /// An organisation declared a custom scope.
    pub const SCOPE_DECLARED: &str = "ScopeDeclared";
    /// An organisation deleted a custom scope.
    pub const SCOPE_DELETED: &str = "ScopeDeleted";
    /// A key was created.
    pub const KEY_CREATED: &str = "KeyCreated";
    /// A key was renamed.
    pub const KEY_RENAMED: &str = "KeyRenamed";
    /// A key's scopes changed.
    pub const SCOPES_CHANGED: &str = "ScopesChanged";
    /// A key's allowed networks changed.
    pub const ALLOWED_IPS_CHANGED: &str = "AllowedIpsChanged";
    /// A key's expiry changed.
    pub const EXPIRY_CHANGED: &str = "ExpiryChanged";
    /// A key was rotated: a successor was made and this key expires after a grace period.
    pub const KEY_ROTATED: &str = "KeyRotated";
    /// A key was revoked.
    pub const KEY_REVOKED: &str = "KeyRevoked";
    /// A key made an authenticated call.
    pub const API_CALL_RECORDED: &str = "ApiCallRecorded";
}

/// The current schema version of an event type; `None` for an unknown type.
///
/// `KeyCreated` is at version 2 (see [`key_created_v1_to_v2`]); every other type is at
/// version 1. When a type's data changes shape, bump its version here and teach
/// [`upcast_step`] to turn the previous version into the new one.
pub fn current_schema_version(event_type: &str) -> Option<u32> {
    match event_type {
        wire::KEY_CREATED => Some(2),
        wire::ORGANIZATION_CREATED
        | wire::PLAN_CHANGED
        | wire::KEY_ISSUED
        | wire::SCOPE_DECLARED
        | wire::SCOPE_DELETED
        | wire::KEY_RENAMED
        | wire::SCOPES_CHANGED
        | wire::ALLOWED_IPS_CHANGED
        | wire::EXPIRY_CHANGED
        | wire::KEY_ROTATED
        | wire::KEY_REVOKED
        | wire::API_CALL_RECORDED => Some(1),
        _ => None,
    }
}

/// Brings `data` written at `schema_version` to the current version of `event_type`.
///
/// An upcaster for version n is one step `n -> n + 1` ([`upcast_step`]), applied
/// repeatedly, so old events replay without rewriting the store (events are never
/// rewritten: the hash chain covers the data as written).
pub fn upcast(
    event_type: &str,
    schema_version: u32,
    data: Value,
) -> Result<Value, DecodeErrorKind> {
    let current = current_schema_version(event_type).ok_or(DecodeErrorKind::UnknownType)?;
    let unsupported = DecodeErrorKind::UnsupportedVersion {
        version: schema_version,
        current,
    };
    if schema_version > current {
        // Written by a newer release than this one: refuse rather than misread it.
        return Err(unsupported);
    }
    let mut version = schema_version;
    let mut data = data;
    while version < current {
        data = upcast_step(event_type, version, data).ok_or_else(|| unsupported.clone())?;
        version += 1;
    }
    Ok(data)
}

/// One upcaster step: data of `event_type` at `version` to `version + 1`; `None` when
/// no such step exists. Add arms here as schemas evolve.
fn upcast_step(event_type: &str, version: u32, data: Value) -> Option<Value> {
    match (event_type, version) {
        (wire::KEY_CREATED, 1) => key_created_v1_to_v2(data),
        _ => None,
    }
}

/// `KeyCreated` v1 -> v2. Version 1 (the first releases, before test keys) had no
/// `environment`: every key was live. Version 2 requires it. The upcaster fills a
/// missing `environment` from the key's displayed prefix (`kl_test_...` is `test`,
/// anything else `live`) and leaves a present one alone, so v1 events that already
/// carry it replay unchanged. `None` (refuse) when the data is not an object.
pub fn key_created_v1_to_v2(mut data: Value) -> Option<Value> {
    let map = data.as_object_mut()?;
    if !map.contains_key("environment") {
        let test = map
            .get("prefix")
            .and_then(Value::as_str)
            .is_some_and(|prefix| prefix.starts_with("kl_test_"));
        map.insert(
            "environment".into(),
            Value::String(if test { "test" } else { "live" }.into()),
        );
    }
    Some(data)
}

/// Why a recorded event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The type is not one this stream (or this release) knows.
    #[error("unknown event type")]
    UnknownType,
    /// No upcaster leads from this schema version to the current one.
    #[error("unsupported schema version {version} (current is {current})")]
    UnsupportedVersion {
        /// The version the event was written at.
        version: u32,
        /// The version this release reads.
        current: u32,
    },
    /// The data does not match the schema.
    #[error("invalid data: {0}")]
    InvalidData(String),
}

/// A recorded event that could not be decoded, with where it sits in the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot decode event {event_type} v{schema_version} at position {position} \
     (stream {stream}, version {stream_version}): {kind}"
)]
pub struct DecodeError {
    /// The event's stream.
    pub stream: String,
    /// Its version within the stream.
    pub stream_version: u64,
    /// Its global position.
    pub position: u64,
    /// Its wire name.
    pub event_type: String,
    /// Its schema version as written.
    pub schema_version: u32,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    fn new(event: &RecordedEvent, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            stream: event.stream.clone(),
            stream_version: event.stream_version,
            position: event.position,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            kind,
        }
    }
}

/// The name of the one field that must never leave the write side.
pub const SECRET_HASH_FIELD: &str = "secret_hash";

/// Event data with the secret hash removed: what audit views and exports may show.
/// Works on raw stored data of any type, so views need not decode events first.
pub fn redact_data(data: &Value) -> Value {
    let mut data = data.clone();
    if let Value::Object(map) = &mut data {
        map.remove(SECRET_HASH_FIELD);
    }
    data
}

/// An argon2id PHC string (`$argon2id$v=19$...`) of a key's token.
///
/// `Debug` never shows it; read it with [`SecretHash::expose`] to verify a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHash(String);

impl SecretHash {
    /// Wraps a PHC string produced by the hasher.
    pub fn new(phc: impl Into<String>) -> SecretHash {
        SecretHash(phc.into())
    }

    /// The PHC string, for verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(***)")
    }
}

fn to_json<T: Serialize>(payload: &T) -> Value {
    // Every payload is a struct of strings, numbers, ids and timestamps, which always
    // serialize to a JSON object: this cannot fail.
    #[allow(clippy::expect_used)]
    serde_json::to_value(payload).expect("event payloads always serialize to JSON")
}

fn invalid_data(event: &RecordedEvent, err: &serde_json::Error) -> DecodeError {
    let mut message = err.to_string();
    // serde quotes offending values in its messages; keep the hash out of logs.
    if let Some(hash) = event.data.get(SECRET_HASH_FIELD).and_then(Value::as_str)
        && !hash.is_empty()
    {
        message = message.replace(hash, "***");
    }
    DecodeError::new(event, DecodeErrorKind::InvalidData(message))
}

/// Encoding and decoding shared by the event enums, for code generic over streams.
pub trait DomainEvent: Sized {
    /// The stable wire name.
    fn event_type(&self) -> &'static str;
    /// The schema version this release writes.
    fn schema_version(&self) -> u32;
    /// The payload as JSON.
    fn data(&self) -> Value;
    /// Encodes the event for appending, with a fresh UUID v7 event id.
    fn to_new_event(&self, metadata: Metadata) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: self.event_type().to_owned(),
            schema_version: self.schema_version(),
            data: self.data(),
            metadata,
        }
    }
    /// Decodes a stored event (through [`upcast`]); never panics.
    fn from_recorded(event: &RecordedEvent) -> Result<Self, DecodeError>;
}

macro_rules! event_enum {
    (
        $(#[$doc:meta])*
        $enum:ident {
            $( $(#[$vdoc:meta])* $variant:ident($payload:ident) = $wire:path ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $enum {
            $( $(#[$vdoc])* $variant($payload), )+
        }

        impl $enum {
            /// The wire names of this enum's event types.
            pub const EVENT_TYPES: &'static [&'static str] = &[$($wire),+];

            /// The stable wire name.
            pub fn event_type(&self) -> &'static str {
                match self { $( $enum::$variant(_) => $wire, )+ }
            }

            /// The schema version this release writes.
            pub fn schema_version(&self) -> u32 {
                current_schema_version(self.event_type()).unwrap_or(1)
            }

            /// The payload as JSON (the store's `data`).
            pub fn data(&self) -> Value {
                match self { $( $enum::$variant(p) => to_json(p), )+ }
            }

            /// Encodes the event for appending, with a fresh UUID v7 event id.
            pub fn to_new_event(&self, metadata: Metadata) -> NewEvent {
                DomainEvent::to_new_event(self, metadata)
            }

            /// Encodes a batch, each with the same metadata.
            pub fn to_new_events(events: &[Self], metadata: &Metadata) -> Vec<NewEvent> {
                events.iter().map(|e| e.to_new_event(metadata.clone())).collect()
            }

            /// Decodes a stored event: an unknown type or bad data is a [`DecodeError`]
            /// naming its position and stream, never a panic.
            pub fn from_recorded(event: &RecordedEvent) -> Result<Self, DecodeError> {
                if !Self::EVENT_TYPES.contains(&event.event_type.as_str()) {
                    return Err(DecodeError::new(event, DecodeErrorKind::UnknownType));
                }
                // Current data (every usage event) is read in place; only older schema
                // versions are copied to be upcast.
                let upcasted;
                let data: &Value = if current_schema_version(&event.event_type)
                    == Some(event.schema_version)
                {
                    &event.data
                } else {
                    upcasted = upcast(&event.event_type, event.schema_version, event.data.clone())
                        .map_err(|kind| DecodeError::new(event, kind))?;
                    &upcasted
                };
                match event.event_type.as_str() {
                    $( $wire => <$payload as serde::Deserialize>::deserialize(data)
                        .map($enum::$variant)
                        .map_err(|err| invalid_data(event, &err)), )+
                    _ => Err(DecodeError::new(event, DecodeErrorKind::UnknownType)),
                }
            }
        }

        impl DomainEvent for $enum {
            fn event_type(&self) -> &'static str { $enum::event_type(self) }
            fn schema_version(&self) -> u32 { $enum::schema_version(self) }
            fn data(&self) -> Value { $enum::data(self) }
            fn from_recorded(event: &RecordedEvent) -> Result<Self, DecodeError> {
                $enum::from_recorded(event)
            }
        }

        $(
            impl From<$payload> for $enum {
                fn from(payload: $payload) -> Self {
                    $enum::$variant(payload)
                }
            }
        )+
    };
}

// ---------------------------------------------------------------- organisation stream

/// `OrganizationCreated`: a tenant exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationCreated {
    /// The organisation's id (also in the stream name).
    pub org_id: OrgId,
    /// Its name.
    pub name: OrgName,
    /// Its plan.
    pub plan: Plan,
}

/// `PlanChanged`: the organisation moved to another plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChanged {
    /// The new plan.
    pub plan: Plan,
}

/// `KeyIssued`: the organisation issued a key. Appended to the org stream with an exact
/// expected version, atomically with the key's `KeyCreated`, so that concurrent creates
/// cannot both pass the plan's key limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIssued {
    /// The new key.
    pub key_id: KeyId,
    /// Its name when issued.
    pub name: KeyName,
    /// The key it replaces, when issued by a rotation.
    #[serde(default)]
    pub rotated_from: Option<KeyId>,
}

/// `ScopeDeclared`: the organisation declared a custom scope its keys may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeDeclared {
    /// The scope, e.g. `billing:read`.
    pub scope: Scope,
    /// What it allows, shown in the catalogue.
    pub description: String,
}

/// `ScopeDeleted`: the organisation deleted a custom scope. No key may be given it
/// afterwards; keys that hold it keep the name (it no longer guards anything the
/// organisation declares).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeDeleted {
    /// The scope.
    pub scope: Scope,
}

event_enum!(
    /// Events of an organisation stream, `org-<id>`.
    OrganizationEvent {
        /// See [`OrganizationCreated`].
        OrganizationCreated(OrganizationCreated) = wire::ORGANIZATION_CREATED,
        /// See [`PlanChanged`].
        PlanChanged(PlanChanged) = wire::PLAN_CHANGED,
        /// See [`KeyIssued`].
        KeyIssued(KeyIssued) = wire::KEY_ISSUED,
        /// See [`ScopeDeclared`].
        ScopeDeclared(ScopeDeclared) = wire::SCOPE_DECLARED,
        /// See [`ScopeDeleted`].
        ScopeDeleted(ScopeDeleted) = wire::SCOPE_DELETED,
    }
);

// ---------------------------------------------------------------- key stream

/// `KeyCreated`: a key exists. The only event that holds the secret hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCreated {
    /// The key's id (also in the stream name and the token).
    pub key_id: KeyId,
    /// The organisation that owns it.
    pub org_id: OrgId,
    /// Its name.
    pub name: KeyName,
    /// `live` or `test`.
    pub environment: Environment,
    /// What it may do.
    pub scopes: Scopes,
    /// Where it may be used from (empty: anywhere).
    #[serde(default)]
    pub allowed_ips: AllowedIps,
    /// When it stops working, if ever.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own rate limit, replacing the plan's.
    #[serde(default)]
    pub rate_limit_per_minute: Option<RateLimit>,
    /// argon2id PHC string of the token. Redacted from `Debug` and public views.
    pub secret_hash: SecretHash,
    /// The displayed prefix: the token's first characters, `kl_live_<18 id chars>` (keys of
    /// the first releases: 8).
    pub prefix: String,
    /// The key this one replaces, when made by a rotation.
    #[serde(default)]
    pub rotated_from: Option<KeyId>,
    /// When it was created (the command's clock).
    pub created_at: DateTime<Utc>,
}

/// `KeyRenamed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRenamed {
    /// The new name.
    pub name: KeyName,
}

/// `ScopesChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopesChanged {
    /// The scopes before.
    pub before: Scopes,
    /// The scopes after.
    pub after: Scopes,
}

impl ScopesChanged {
    /// Whether the key lost a scope: caches must drop it at once.
    pub fn narrows(&self) -> bool {
        !self.before.is_subset_of(&self.after)
    }
}

/// `AllowedIpsChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedIpsChanged {
    /// The networks before (empty: anywhere).
    pub before: AllowedIps,
    /// The networks after (empty: anywhere).
    pub after: AllowedIps,
}

/// `ExpiryChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryChanged {
    /// The new expiry; `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// `KeyRotated`, on the old key's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotated {
    /// The new key.
    pub successor_id: KeyId,
    /// When this (old) key stops working: the end of the grace period.
    pub old_key_expires_at: DateTime<Utc>,
    /// When the rotation happened.
    pub rotated_at: DateTime<Utc>,
}

/// `KeyRevoked`: the key stops working for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRevoked {
    /// Why, if given.
    #[serde(default)]
    pub reason: Option<String>,
    /// When.
    pub revoked_at: DateTime<Utc>,
}

event_enum!(
    /// Events of a key's lifecycle stream, `apikey-<id>`.
    ApiKeyEvent {
        /// See [`KeyCreated`].
        KeyCreated(KeyCreated) = wire::KEY_CREATED,
        /// See [`KeyRenamed`].
        KeyRenamed(KeyRenamed) = wire::KEY_RENAMED,
        /// See [`ScopesChanged`].
        ScopesChanged(ScopesChanged) = wire::SCOPES_CHANGED,
        /// See [`AllowedIpsChanged`].
        AllowedIpsChanged(AllowedIpsChanged) = wire::ALLOWED_IPS_CHANGED,
        /// See [`ExpiryChanged`].
        ExpiryChanged(ExpiryChanged) = wire::EXPIRY_CHANGED,
        /// See [`KeyRotated`].
        KeyRotated(KeyRotated) = wire::KEY_ROTATED,
        /// See [`KeyRevoked`].
        KeyRevoked(KeyRevoked) = wire::KEY_REVOKED,
    }
);

impl ApiKeyEvent {
    /// Whether this event can make a previously accepted call be refused (revocation,
    /// scope narrowing, IP or expiry change): such events must reach every node's cache
    /// at once.
    pub fn restricts_access(&self) -> bool {
        match self {
            ApiKeyEvent::KeyRevoked(_)
            | ApiKeyEvent::AllowedIpsChanged(_)
            | ApiKeyEvent::ExpiryChanged(_)
            | ApiKeyEvent::KeyRotated(_) => true,
            ApiKeyEvent::ScopesChanged(change) => change.narrows(),
            ApiKeyEvent::KeyCreated(_) | ApiKeyEvent::KeyRenamed(_) => false,
        }
    }
}

// ---------------------------------------------------------------- usage stream

/// `ApiCallRecorded`: one authenticated call (from auth step 3 on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCallRecorded {
    /// The calling key's organisation (so organisation-wide usage needs no join).
    pub org_id: OrgId,
    /// When the call arrived.
    pub at: DateTime<Utc>,
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// The route template, e.g. `/organizations/{org}/work-orders` (never the raw path).
    pub route: String,
    /// The response status.
    pub status: u16,
    /// Time to respond, in microseconds.
    pub latency_us: u64,
    /// The client's address, as the auth layer determined it.
    #[serde(default)]
    pub client_ip: Option<IpAddr>,
    /// The request id.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// How a call ended, for usage counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// 1xx, 2xx or 3xx.
    Success,
    /// 429.
    RateLimited,
    /// Any other 4xx.
    ClientError,
    /// 5xx (or anything above).
    ServerError,
}

impl ApiCallRecorded {
    /// Classifies the status.
    pub fn outcome(&self) -> CallOutcome {
        match self.status {
            429 => CallOutcome::RateLimited,
            0..=399 => CallOutcome::Success,
            400..=499 => CallOutcome::ClientError,
            _ => CallOutcome::ServerError,
        }
    }
}

event_enum!(
    /// Events of a key's usage stream, `apikey-usage-<id>`.
    UsageEvent {
        /// See [`ApiCallRecorded`].
        ApiCallRecorded(ApiCallRecorded) = wire::API_CALL_RECORDED,
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;

    fn recorded(stream: &str, event: NewEvent) -> RecordedEvent {
        RecordedEvent {
            event_id: event.event_id,
            stream: stream.to_owned(),
            stream_version: 3,
            position: 42,
            event_type: event.event_type,
            schema_version: event.schema_version,
            recorded_at: Utc::now(),
            metadata: event.metadata,
            data: event.data,
        }
    }

    fn key_created() -> KeyCreated {
        KeyCreated {
            key_id: KeyId::new_v7(),
            org_id: OrgId::new_v7(),
            name: KeyName::parse("ci").unwrap(),
            environment: Environment::Live,
            scopes: Scope::data_scopes(),
            allowed_ips: AllowedIps::parse(["10.0.0.0/8"]).unwrap(),
            expires_at: None,
            rate_limit_per_minute: Some(RateLimit::parse(42).unwrap()),
            secret_hash: SecretHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            prefix: "kl_live_0123abcd".into(),
            rotated_from: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn it_should_round_trip_every_key_event_through_the_store_format() {
        let now = Utc::now();
        let events: Vec<ApiKeyEvent> = vec![
            key_created().into(),
            KeyRenamed {
                name: KeyName::parse("deploy").unwrap(),
            }
            .into(),
            ScopesChanged {
                before: Scope::data_scopes(),
                after: Scopes::new(),
            }
            .into(),
            AllowedIpsChanged {
                before: AllowedIps::any(),
                after: AllowedIps::parse(["::1"]).unwrap(),
            }
            .into(),
            ExpiryChanged {
                expires_at: Some(now),
            }
            .into(),
            KeyRotated {
                successor_id: KeyId::new_v7(),
                old_key_expires_at: now,
                rotated_at: now,
            }
            .into(),
            KeyRevoked {
                reason: Some("leaked".into()),
                revoked_at: now,
            }
            .into(),
        ];
        let metadata = Metadata {
            actor: "cli:test".into(),
            ..Metadata::default()
        };
        for event in events {
            let new = event.to_new_event(metadata.clone());
            assert_eq!(new.event_id.get_version_num(), 7);
            let want = if matches!(event, ApiKeyEvent::KeyCreated(_)) {
                2
            } else {
                1
            };
            assert_eq!(new.schema_version, want);
            assert_eq!(new.event_type, event.event_type());
            let back = ApiKeyEvent::from_recorded(&recorded("apikey-x", new)).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn it_should_round_trip_org_and_usage_events() {
        let org: Vec<OrganizationEvent> = vec![
            OrganizationCreated {
                org_id: OrgId::new_v7(),
                name: OrgName::parse("default").unwrap(),
                plan: Plan::Enterprise,
            }
            .into(),
            PlanChanged {
                plan: Plan::Starter,
            }
            .into(),
            KeyIssued {
                key_id: KeyId::new_v7(),
                name: KeyName::parse("k").unwrap(),
                rotated_from: None,
            }
            .into(),
        ];
        for event in org {
            let new = event.to_new_event(Metadata::default());
            assert_eq!(
                OrganizationEvent::from_recorded(&recorded("org-x", new)).unwrap(),
                event
            );
        }
        let call: UsageEvent = ApiCallRecorded {
            org_id: OrgId::from_uuid(uuid::Uuid::nil()),
            at: Utc::now(),
            method: "GET".into(),
            route: "/whoami".into(),
            status: 200,
            latency_us: 1234,
            client_ip: Some("127.0.0.1".parse().unwrap()),
            request_id: Some("req-1".into()),
        }
        .into();
        let new = call.to_new_event(Metadata::default());
        assert_eq!(new.event_type, "ApiCallRecorded");
        assert_eq!(
            UsageEvent::from_recorded(&recorded("apikey-usage-x", new)).unwrap(),
            call
        );
    }

    #[test]
    fn it_should_use_stable_wire_names() {
        assert_eq!(
            ApiKeyEvent::EVENT_TYPES,
            [
                "KeyCreated",
                "KeyRenamed",
                "ScopesChanged",
                "AllowedIpsChanged",
                "ExpiryChanged",
                "KeyRotated",
                "KeyRevoked"
            ]
        );
        assert_eq!(
            OrganizationEvent::EVENT_TYPES,
            [
                "OrganizationCreated",
                "PlanChanged",
                "KeyIssued",
                "ScopeDeclared",
                "ScopeDeleted"
            ]
        );
        assert_eq!(UsageEvent::EVENT_TYPES, ["ApiCallRecorded"]);
    }

    #[test]
    fn it_should_name_position_and_stream_of_an_unknown_event() {
        let mut new = ApiKeyEvent::from(key_created()).to_new_event(Metadata::default());
        new.event_type = "KeyExploded".into();
        let err = ApiKeyEvent::from_recorded(&recorded("apikey-1", new)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownType);
        let message = err.to_string();
        assert!(message.contains("position 42"), "{message}");
        assert!(message.contains("apikey-1"), "{message}");
        assert!(message.contains("KeyExploded"), "{message}");
    }

    #[test]
    fn it_should_refuse_an_event_of_another_stream_kind() {
        let new = UsageEvent::ApiCallRecorded(ApiCallRecorded {
            org_id: OrgId::from_uuid(uuid::Uuid::nil()),
            at: Utc::now(),
            method: "GET".into(),
            route: "/".into(),
            status: 200,
            latency_us: 1,
            client_ip: None,
            request_id: None,
        })
        .to_new_event(Metadata::default());
        let err = ApiKeyEvent::from_recorded(&recorded("apikey-1", new)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownType);
    }

    #[test]
    fn it_should_report_undecodable_data_without_the_hash() {
        let mut new = ApiKeyEvent::from(key_created()).to_new_event(Metadata::default());
        let hash = new.data["secret_hash"].as_str().unwrap().to_owned();
        new.data["scopes"] = Value::String(hash.clone());
        let err = ApiKeyEvent::from_recorded(&recorded("apikey-1", new)).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::InvalidData(_)));
        assert!(!err.to_string().contains(&hash), "{err}");
    }

    #[test]
    fn it_should_refuse_a_schema_version_from_the_future() {
        let mut new = ApiKeyEvent::from(key_created()).to_new_event(Metadata::default());
        new.schema_version = 3;
        let err = ApiKeyEvent::from_recorded(&recorded("apikey-1", new)).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::UnsupportedVersion {
                version: 3,
                current: 2
            }
        );
    }

    #[test]
    fn it_should_upcast_current_data_unchanged() {
        let data = serde_json::json!({"plan": "starter"});
        assert_eq!(upcast("PlanChanged", 1, data.clone()), Ok(data.clone()));
        assert_eq!(
            upcast("Nope", 1, data.clone()),
            Err(DecodeErrorKind::UnknownType)
        );
        assert!(upcast("PlanChanged", 0, data).is_err());
    }

    #[test]
    fn it_should_upcast_a_v1_key_created_without_environment() {
        let mut v1 = ApiKeyEvent::from(key_created()).to_new_event(Metadata::default());
        v1.schema_version = 1;
        v1.data.as_object_mut().unwrap().remove("environment");
        let live = ApiKeyEvent::from_recorded(&recorded("apikey-1", v1.clone())).unwrap();
        let ApiKeyEvent::KeyCreated(live) = live else {
            panic!("not KeyCreated")
        };
        assert_eq!(live.environment, Environment::Live);
        v1.data["prefix"] = "kl_test_0123abcd".into();
        let test = ApiKeyEvent::from_recorded(&recorded("apikey-1", v1.clone())).unwrap();
        assert!(matches!(test, ApiKeyEvent::KeyCreated(k) if k.environment == Environment::Test));
        // A v1 event that carries an environment keeps it.
        v1.data["environment"] = "live".into();
        let kept = ApiKeyEvent::from_recorded(&recorded("apikey-1", v1)).unwrap();
        assert!(matches!(kept, ApiKeyEvent::KeyCreated(k) if k.environment == Environment::Live));
        // Data that is not an object cannot be upcast.
        assert!(matches!(
            upcast("KeyCreated", 1, Value::Null),
            Err(DecodeErrorKind::UnsupportedVersion {
                version: 1,
                current: 2
            })
        ));
    }

    #[test]
    fn it_should_never_show_the_secret_hash_in_debug_or_redacted_data() {
        let created = key_created();
        let hash = created.secret_hash.expose().to_owned();
        let event = ApiKeyEvent::from(created);
        assert!(!format!("{event:?}").contains(&hash));
        assert!(format!("{event:?}").contains("SecretHash(***)"));
        let redacted = redact_data(&event.data());
        assert!(redacted.get("secret_hash").is_none());
        assert!(!redacted.to_string().contains(&hash));
        assert_eq!(redacted["prefix"], "kl_live_0123abcd");
        // ... but the store does keep it.
        assert_eq!(event.data()["secret_hash"], hash.as_str());
    }

    #[test]
    fn it_should_classify_call_outcomes() {
        let mut call = ApiCallRecorded {
            org_id: OrgId::from_uuid(uuid::Uuid::nil()),
            at: Utc::now(),
            method: "GET".into(),
            route: "/".into(),
            status: 204,
            latency_us: 1,
            client_ip: None,
            request_id: None,
        };
        assert_eq!(call.outcome(), CallOutcome::Success);
        call.status = 302;
        assert_eq!(call.outcome(), CallOutcome::Success);
        call.status = 429;
        assert_eq!(call.outcome(), CallOutcome::RateLimited);
        call.status = 403;
        assert_eq!(call.outcome(), CallOutcome::ClientError);
        call.status = 503;
        assert_eq!(call.outcome(), CallOutcome::ServerError);
    }

    #[test]
    fn it_should_tell_which_events_restrict_access() {
        let narrowing = ScopesChanged {
            before: Scope::all(),
            after: Scope::data_scopes(),
        };
        assert!(ApiKeyEvent::from(narrowing.clone()).restricts_access());
        let widening = ScopesChanged {
            before: narrowing.after,
            after: narrowing.before,
        };
        assert!(!ApiKeyEvent::from(widening).restricts_access());
    }
}
