//! The scope catalogue and sets of scopes.
//!
//! Data scopes guard the data API; management scopes guard the key management API.
//! A key cannot grant a scope it does not hold itself ([`ensure_can_grant`]).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One permission from the catalogue: its name and its description (compared, ordered
/// and hashed by name first; names are unique). Only catalogue scopes can be constructed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(&'static str, &'static str);

impl Scope {
    /// Read work orders.
    pub const WORK_ORDERS_READ: Scope = Scope("work-orders:read", "Read work orders");
    /// Create and update work orders.
    pub const WORK_ORDERS_WRITE: Scope = Scope(
        "work-orders:write",
        "Create and update work orders, and submit forms on them",
    );
    /// Read assets.
    pub const ASSETS_READ: Scope = Scope("assets:read", "Read assets");
    /// Create and update assets, and ingest their IoT devices' readings.
    pub const ASSETS_WRITE: Scope = Scope(
        "assets:write",
        "Create and update assets, register their IoT devices and ingest sensor readings",
    );
    /// Read locations.
    pub const LOCATIONS_READ: Scope = Scope("locations:read", "Read locations");
    /// Read form submissions on work orders.
    pub const FORMS_READ: Scope = Scope("forms:read", "Read form submissions on work orders");
    /// Read IoT devices and their sensor readings.
    pub const IOT_READ: Scope = Scope("iot:read", "Read IoT devices and their sensor readings");
    /// Read the organisation's users (technicians).
    pub const USERS_READ: Scope =
        Scope("users:read", "Read the organisation's users (technicians)");
    /// Create and update the organisation's users (technicians).
    pub const USERS_WRITE: Scope = Scope(
        "users:write",
        "Create and update the organisation's users (technicians)",
    );
    /// List and show keys, their usage and history.
    pub const API_KEYS_READ: Scope = Scope(
        "api-keys:read",
        "List and show API keys, their usage and history",
    );
    /// Create keys.
    pub const API_KEYS_CREATE: Scope = Scope("api-keys:create", "Create API keys");
    /// Rename keys, change their scopes, IPs and expiry, rotate them.
    pub const API_KEYS_WRITE: Scope = Scope(
        "api-keys:write",
        "Rename API keys, change their scopes, IPs and expiry, rotate them",
    );
    /// Revoke keys.
    pub const API_KEYS_REVOKE: Scope = Scope("api-keys:revoke", "Revoke API keys");

    /// The data scopes, in catalogue order.
    pub const DATA: &'static [Scope] = &[
        Scope::WORK_ORDERS_READ,
        Scope::WORK_ORDERS_WRITE,
        Scope::ASSETS_READ,
        Scope::ASSETS_WRITE,
        Scope::LOCATIONS_READ,
        Scope::FORMS_READ,
        Scope::IOT_READ,
        Scope::USERS_READ,
        Scope::USERS_WRITE,
    ];

    /// The management scopes, in catalogue order.
    pub const MANAGEMENT: &'static [Scope] = &[
        Scope::API_KEYS_READ,
        Scope::API_KEYS_CREATE,
        Scope::API_KEYS_WRITE,
        Scope::API_KEYS_REVOKE,
    ];

    /// Looks a scope up in the catalogue.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        Scope::DATA
            .iter()
            .chain(Scope::MANAGEMENT)
            .copied()
            .find(|scope| scope.0 == s)
            .ok_or_else(|| ScopeError::Unknown(s.to_owned()))
    }

    /// What the scope allows, as the catalogue (`GET /scopes`) describes it.
    pub const fn description(&self) -> &'static str {
        self.1
    }

    /// Every scope of the catalogue, in catalogue order (data scopes first).
    pub fn catalogue() -> impl Iterator<Item = Scope> {
        Scope::DATA.iter().chain(Scope::MANAGEMENT).copied()
    }

    /// The scope's name, e.g. `work-orders:read`.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }

    /// Every data scope: what a key gets when its scopes are omitted.
    pub fn data_scopes() -> Scopes {
        Scope::DATA.iter().copied().collect()
    }

    /// Every scope of the catalogue (a root key's scopes).
    pub fn all() -> Scopes {
        Scope::DATA
            .iter()
            .chain(Scope::MANAGEMENT)
            .copied()
            .collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.0)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Scope::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What is wrong with a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The name is not in the catalogue.
    #[error("unknown scope {0:?}")]
    Unknown(String),
    /// A key tried to grant a scope it does not hold itself.
    #[error("cannot grant scope {0} that the acting key does not hold")]
    NotHeld(Scope),
}

/// A sorted, deduplicated set of scopes. Serialized as a JSON array of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// The empty set.
    pub fn new() -> Scopes {
        Scopes(BTreeSet::new())
    }

    /// Parses every name; the first unknown one is the error.
    pub fn parse<I, S>(names: I) -> Result<Scopes, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        names
            .into_iter()
            .map(|name| Scope::parse(name.as_ref()))
            .collect()
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// Adds a scope; `false` if it was already there.
    pub fn insert(&mut self, scope: Scope) -> bool {
        self.0.insert(scope)
    }

    /// Whether every scope of `self` is also in `other`.
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The first scope (in sorted order) of `self` that `holder` lacks.
    pub fn first_missing_from(&self, holder: &Scopes) -> Option<Scope> {
        self.0.difference(&holder.0).next().copied()
    }

    /// The scopes in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// The scope names in sorted order.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(|s| s.as_str()).collect()
    }

    /// How many scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        Scopes(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = std::collections::btree_set::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A key cannot grant a scope it does not hold itself: `Err(NotHeld(first missing))`
/// unless every scope in `requested` is in `granter`.
pub fn ensure_can_grant(granter: &Scopes, requested: &Scopes) -> Result<(), ScopeError> {
    match requested.first_missing_from(granter) {
        Some(missing) => Err(ScopeError::NotHeld(missing)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_parse_every_catalogue_scope() {
        for scope in Scope::all().iter() {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        }
        assert_eq!(Scope::all().len(), 13);
        assert_eq!(Scope::data_scopes().len(), 9);
    }

    #[test]
    fn it_should_describe_every_catalogue_scope() {
        assert_eq!(Scope::catalogue().count(), 13);
        for scope in Scope::catalogue() {
            assert!(!scope.description().is_empty(), "{scope}");
        }
        assert_eq!(Scope::WORK_ORDERS_READ.description(), "Read work orders");
    }

    #[test]
    fn it_should_name_an_unknown_scope() {
        let err = Scope::parse("work-orders:delete").unwrap_err();
        assert_eq!(err, ScopeError::Unknown("work-orders:delete".into()));
        assert!(err.to_string().contains("work-orders:delete"));
        assert!(Scopes::parse(["assets:read", "nope"]).is_err());
    }

    #[test]
    fn it_should_sort_and_deduplicate() {
        let scopes = Scopes::parse(["iot:read", "assets:read", "iot:read"]).unwrap();
        assert_eq!(scopes.names(), ["assets:read", "iot:read"]);
        let json = serde_json::to_string(&scopes).unwrap();
        assert_eq!(json, r#"["assets:read","iot:read"]"#);
        let back: Scopes =
            serde_json::from_str(r#"["iot:read","assets:read","iot:read"]"#).unwrap();
        assert_eq!(back, scopes);
    }

    #[test]
    fn it_should_reject_an_unknown_scope_in_json() {
        let err = serde_json::from_str::<Scopes>(r#"["bogus:read"]"#).unwrap_err();
        assert!(err.to_string().contains("bogus:read"));
    }

    #[test]
    fn it_should_only_let_a_key_grant_scopes_it_holds() {
        let holder = Scope::data_scopes();
        assert!(ensure_can_grant(&holder, &Scopes::parse(["assets:read"]).unwrap()).is_ok());
        let wanted = Scopes::parse(["assets:read", "api-keys:revoke", "api-keys:create"]).unwrap();
        assert_eq!(
            ensure_can_grant(&holder, &wanted),
            Err(ScopeError::NotHeld(Scope::API_KEYS_CREATE))
        );
        assert!(!wanted.is_subset_of(&holder));
        assert!(wanted.is_subset_of(&Scope::all()));
    }
}
