//! Identifiers of keys and organisations, and the names of their event streams.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::{NoContext, Timestamp, Uuid};

/// Stream name prefix of a key's lifecycle stream: `apikey-<key id>`.
pub const APIKEY_STREAM_PREFIX: &str = "apikey-";
/// Stream name prefix of a key's usage stream: `apikey-usage-<key id>`.
pub const APIKEY_USAGE_STREAM_PREFIX: &str = "apikey-usage-";
/// Stream name prefix of an organisation's stream: `org-<org id>`.
pub const ORG_STREAM_PREFIX: &str = "org-";

/// An identifier that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {input:?}: expected a UUID")]
pub struct IdError {
    /// `"key"` or `"organization"`.
    pub kind: &'static str,
    /// What was given.
    pub input: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUID v7): 48 bits of Unix milliseconds, then
            /// 74 bits from the OS CSPRNG.
            ///
            /// All 74 bits are random, on purpose: `Uuid::now_v7` fills the 42 bits after
            /// the clock with a per-process counter that moves by one per id within a
            /// millisecond, so ids made in the same millisecond would share their leading
            /// characters far beyond the clock, and a key's displayed prefix (the start of
            /// its token, see `token::PREFIX_ID_CHARS`) would not tell them apart. Ids are
            /// ordered by millisecond only; nothing relies on the order within one.
            pub fn new_v7() -> Self {
                Self(Uuid::new_v7(Timestamp::now(NoContext)))
            }

            /// An id of the same layout as [`Self::new_v7`] for the given Unix time in
            /// milliseconds (74 random bits): for tests of what ids made at one moment
            /// share.
            pub fn new_v7_at(unix_millis: u64) -> Self {
                let ts = Timestamp::from_unix(
                    NoContext,
                    unix_millis / 1000,
                    // Below 1e9: the remainder of a division by 1000, times 1e6.
                    ((unix_millis % 1000) as u32) * 1_000_000,
                );
                Self(Uuid::new_v7(ts))
            }

            /// Wraps an existing UUID (e.g. read from a database row).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdError {
                    kind: $kind,
                    input: s.to_owned(),
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

uuid_id!(
    /// An API key's id (UUID v7). Also encoded in the key's token.
    KeyId,
    "key"
);
uuid_id!(
    /// An organisation's (tenant's) id (UUID v7).
    OrgId,
    "organization"
);

impl KeyId {
    /// The key's lifecycle stream: `apikey-<id>`.
    pub fn stream(&self) -> String {
        format!("{APIKEY_STREAM_PREFIX}{self}")
    }

    /// The key's usage stream: `apikey-usage-<id>`.
    pub fn usage_stream(&self) -> String {
        format!("{APIKEY_USAGE_STREAM_PREFIX}{self}")
    }
}

impl OrgId {
    /// The organisation's stream: `org-<id>`.
    pub fn stream(&self) -> String {
        format!("{ORG_STREAM_PREFIX}{self}")
    }
}

/// What a stream name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// `apikey-<id>`: a key's lifecycle.
    ApiKey(KeyId),
    /// `apikey-usage-<id>`: a key's calls.
    ApiKeyUsage(KeyId),
    /// `org-<id>`: an organisation.
    Organization(OrgId),
}

impl StreamId {
    /// Recognises a stream name; `None` for names that are not keyledger streams.
    pub fn parse(stream: &str) -> Option<Self> {
        // The usage prefix also starts with `apikey-`, so it is tried first.
        if let Some(rest) = stream.strip_prefix(APIKEY_USAGE_STREAM_PREFIX) {
            rest.parse().ok().map(StreamId::ApiKeyUsage)
        } else if let Some(rest) = stream.strip_prefix(APIKEY_STREAM_PREFIX) {
            rest.parse().ok().map(StreamId::ApiKey)
        } else if let Some(rest) = stream.strip_prefix(ORG_STREAM_PREFIX) {
            rest.parse().ok().map(StreamId::Organization)
        } else {
            None
        }
    }

    /// The stream's name.
    pub fn name(&self) -> String {
        match self {
            StreamId::ApiKey(id) => id.stream(),
            StreamId::ApiKeyUsage(id) => id.usage_stream(),
            StreamId::Organization(id) => id.stream(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_create_version_7_ids() {
        assert_eq!(KeyId::new_v7().as_uuid().get_version_num(), 7);
        assert_eq!(OrgId::new_v7().as_uuid().get_version_num(), 7);
    }

    #[test]
    fn it_should_put_the_given_millisecond_first_and_random_bits_after() {
        let at = 1_764_633_600_123u64;
        let a = KeyId::new_v7_at(at).as_uuid();
        let b = KeyId::new_v7_at(at).as_uuid();
        assert_eq!(a.get_version_num(), 7);
        assert_eq!((a.as_u128() >> 80) as u64, at);
        assert_eq!((b.as_u128() >> 80) as u64, at);
        // 74 random bits: two ids of the same millisecond differ (p = 2^-74 otherwise).
        assert_ne!(a, b);
    }

    #[test]
    fn ids_of_one_millisecond_should_not_be_counter_neighbours() {
        // The uuid crate's `now_v7` counter would make consecutive ids of one millisecond
        // differ by 2^32 (its lowest counter bit) plus noise; random ids differ in their
        // top random bits. 64 ids at one instant spread over more than 2^60 of the 2^74
        // space, which a counter would never do (64 * 2^32 < 2^39).
        let at = 1_764_633_600_000u64;
        let mut ids: Vec<u128> = (0..64)
            .map(|_| KeyId::new_v7_at(at).as_uuid().as_u128())
            .collect();
        ids.sort_unstable();
        let spread = ids[63] - ids[0];
        assert!(spread > 1u128 << 60, "spread {spread:#x}");
    }

    #[test]
    fn it_should_round_trip_through_display_and_from_str() {
        let id = KeyId::new_v7();
        assert_eq!(id.to_string().parse::<KeyId>(), Ok(id));
    }

    #[test]
    fn it_should_serialize_as_a_bare_uuid_string() {
        let id = OrgId::new_v7();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<OrgId>(&json).unwrap(), id);
    }

    #[test]
    fn it_should_reject_a_non_uuid_id() {
        let err = "nope".parse::<KeyId>().unwrap_err();
        assert_eq!(err.kind, "key");
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn it_should_name_and_recognise_streams() {
        let key = KeyId::new_v7();
        let org = OrgId::new_v7();
        assert_eq!(key.stream(), format!("apikey-{key}"));
        assert_eq!(key.usage_stream(), format!("apikey-usage-{key}"));
        assert_eq!(org.stream(), format!("org-{org}"));
        assert_eq!(StreamId::parse(&key.stream()), Some(StreamId::ApiKey(key)));
        assert_eq!(
            StreamId::parse(&key.usage_stream()),
            Some(StreamId::ApiKeyUsage(key))
        );
        assert_eq!(
            StreamId::parse(&org.stream()),
            Some(StreamId::Organization(org))
        );
        assert_eq!(StreamId::parse("other-1"), None);
        assert_eq!(StreamId::Organization(org).name(), org.stream());
    }
}
