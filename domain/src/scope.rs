//! The scope catalogue and sets of scopes.
//!
//! Data scopes guard the data API; management scopes guard the key management API.
//! A key cannot grant a scope it does not hold itself ([`ensure_can_grant`]).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One permission: from the catalogue, or a custom scope an organisation declared
/// ([`Scope::declare`], e.g. `billing:read`). Both are a `&'static str`: custom names are
/// interned, so a scope stays as cheap to copy and compare as a constant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(&'static str);

impl Scope {
    /// Read work orders.
    pub const WORK_ORDERS_READ: Scope = Scope("work-orders:read");
    /// Create and update work orders, and submit forms on them.
    pub const WORK_ORDERS_WRITE: Scope = Scope("work-orders:write");
    /// Read assets.
    pub const ASSETS_READ: Scope = Scope("assets:read");
    /// Create and update assets, register their IoT devices and ingest sensor readings.
    pub const ASSETS_WRITE: Scope = Scope("assets:write");
    /// Read locations.
    pub const LOCATIONS_READ: Scope = Scope("locations:read");
    /// Read form submissions on work orders.
    pub const FORMS_READ: Scope = Scope("forms:read");
    /// Read IoT devices and their sensor readings.
    pub const IOT_READ: Scope = Scope("iot:read");
    /// Read the organisation's users (technicians).
    pub const USERS_READ: Scope = Scope("users:read");
    /// Create the organisation's users (technicians).
    pub const USERS_WRITE: Scope = Scope("users:write");
    /// List and show keys, their usage and history.
    pub const API_KEYS_READ: Scope = Scope("api-keys:read");
    /// Create keys.
    pub const API_KEYS_CREATE: Scope = Scope("api-keys:create");
    /// Rename keys, change their scopes, IPs and expiry, rotate them.
    pub const API_KEYS_WRITE: Scope = Scope("api-keys:write");
    /// Revoke keys.
    pub const API_KEYS_REVOKE: Scope = Scope("api-keys:revoke");
    /// Verify other keys of the organisation for a service of its own
    /// (`POST /v1/keys/verify`).
    pub const KEYS_VERIFY: Scope = Scope("keys:verify");

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

    /// The scopes of services that protect their own APIs with keyledger's keys.
    pub const SERVICE: &'static [Scope] = &[Scope::KEYS_VERIFY];

    /// What each catalogue scope allows, in catalogue order: what `GET /scopes` lists.
    const DESCRIPTIONS: &'static [(Scope, &'static str)] = &[
        (Scope::WORK_ORDERS_READ, "Read work orders"),
        (
            Scope::WORK_ORDERS_WRITE,
            "Create and update work orders, and submit forms on them",
        ),
        (Scope::ASSETS_READ, "Read assets"),
        (
            Scope::ASSETS_WRITE,
            "Create and update assets, register their IoT devices and ingest sensor readings",
        ),
        (Scope::LOCATIONS_READ, "Read locations"),
        (Scope::FORMS_READ, "Read form submissions on work orders"),
        (
            Scope::IOT_READ,
            "Read IoT devices and their sensor readings",
        ),
        (
            Scope::USERS_READ,
            "Read the organisation's users (technicians)",
        ),
        (
            Scope::USERS_WRITE,
            "Create the organisation's users (technicians)",
        ),
        (
            Scope::API_KEYS_READ,
            "List and show API keys, their usage and history",
        ),
        (Scope::API_KEYS_CREATE, "Create API keys"),
        (
            Scope::API_KEYS_WRITE,
            "Rename API keys, change their scopes, IPs and expiry, rotate them",
        ),
        (Scope::API_KEYS_REVOKE, "Revoke API keys"),
        (
            Scope::KEYS_VERIFY,
            "Verify other keys of the organisation for a service of its own",
        ),
    ];

    /// Every catalogue scope with what it allows, in catalogue order (data, management,
    /// service scopes); custom scopes are not in it.
    pub fn catalogue() -> impl Iterator<Item = (Scope, &'static str)> {
        Scope::DESCRIPTIONS.iter().copied()
    }

    /// What a catalogue scope allows; `None` for a custom scope.
    pub fn description(&self) -> Option<&'static str> {
        Scope::DESCRIPTIONS
            .iter()
            .find(|(scope, _)| scope == self)
            .map(|(_, description)| *description)
    }

    /// Looks a scope up in the catalogue.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        Scope::DATA
            .iter()
            .chain(Scope::MANAGEMENT)
            .chain(Scope::SERVICE)
            .copied()
            .find(|scope| scope.0 == s)
            .ok_or_else(|| ScopeError::Unknown(s.to_owned()))
    }

    /// A custom scope: `resource:action`, each part a lowercase letter then lowercase
    /// letters, digits or `-`, at most 64 characters in all, and not a catalogue name.
    /// The name is interned for the life of the process, so only names that are declared
    /// (an organisation's `ScopeDeclared` events, the gateway's rules) come here; a name
    /// from a request is looked up with [`Scope::lookup`], which never interns.
    pub fn declare(name: &str) -> Result<Scope, ScopeError> {
        if let Ok(builtin) = Scope::parse(name) {
            return Err(ScopeError::Shadows(builtin));
        }
        check_custom_name(name)?;
        let mut interned = custom_names()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = interned.get(name) {
            return Ok(Scope(known));
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        interned.insert(leaked);
        Ok(Scope(leaked))
    }

    /// A catalogue scope, or a custom one this process already knows (declared in an
    /// organisation it has loaded); `None` otherwise. Never interns.
    pub fn lookup(name: &str) -> Option<Scope> {
        Scope::parse(name).ok().or_else(|| {
            custom_names()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(name)
                .map(|known| Scope(known))
        })
    }

    /// Whether this is a custom scope (not in the catalogue).
    pub fn is_custom(&self) -> bool {
        Scope::parse(self.0).is_err()
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
            .chain(Scope::SERVICE)
            .copied()
            .collect()
    }
}

/// Custom scope names known to this process.
fn custom_names() -> &'static Mutex<BTreeSet<&'static str>> {
    static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(|| Mutex::new(BTreeSet::new()))
}

/// The form of a custom scope's name (see [`Scope::declare`]).
pub fn check_custom_name(name: &str) -> Result<(), ScopeError> {
    let part = |p: &str| {
        let mut chars = p.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match name.split_once(':') {
        Some((resource, action)) if name.len() <= 64 && part(resource) && part(action) => Ok(()),
        _ => Err(ScopeError::Invalid(name.to_owned())),
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
        // Stored events and read models hold catalogue names and the custom names their
        // organisations declared.
        let s = String::deserialize(deserializer)?;
        Scope::parse(&s)
            .or_else(|_| Scope::declare(&s))
            .map_err(serde::de::Error::custom)
    }
}

/// What is wrong with a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The name is not in the catalogue.
    #[error("unknown scope {0:?}")]
    Unknown(String),
    /// Not of the form of a custom scope (`resource:action`, lowercase).
    #[error(
        "{0:?} is not a scope name: `resource:action`, lowercase letters, digits and '-', at most 64 characters"
    )]
    Invalid(String),
    /// A custom scope may not take a catalogue scope's name.
    #[error("{0} is a built-in scope")]
    Shadows(Scope),
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

    /// The first scope (in sorted order) of `self` that `holder` lacks, for granting and
    /// managing keys. A holder of every built-in scope (a root key) counts as holding every
    /// custom scope: someone must be able to hand out a scope the organisation just
    /// declared (the domain checks that it is declared).
    pub fn first_missing_from(&self, holder: &Scopes) -> Option<Scope> {
        let root = Scope::all().is_subset_of(holder);
        self.0
            .difference(&holder.0)
            .find(|s| !(root && s.is_custom()))
            .copied()
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
    fn it_should_declare_custom_scopes_of_the_right_form_and_never_a_builtin_name() {
        let billing = Scope::declare("billing:read").unwrap();
        assert_eq!(billing.as_str(), "billing:read");
        assert!(billing.is_custom() && !Scope::ASSETS_READ.is_custom());
        assert_eq!(Scope::declare("billing:read").unwrap(), billing);
        assert_eq!(Scope::lookup("billing:read"), Some(billing));
        assert_eq!(Scope::lookup("assets:read"), Some(Scope::ASSETS_READ));
        assert_eq!(
            Scope::declare("assets:read"),
            Err(ScopeError::Shadows(Scope::ASSETS_READ))
        );
        for bad in [
            "billing",
            "Billing:read",
            "billing:",
            ":read",
            "a:b:c",
            "bil ling:read",
            "1x:read",
        ] {
            assert_eq!(
                Scope::declare(bad),
                Err(ScopeError::Invalid(bad.into())),
                "{bad}"
            );
        }
        assert!(Scope::declare(&format!("{}:read", "a".repeat(60))).is_err());
    }

    #[test]
    fn it_should_let_a_root_key_grant_custom_scopes_and_no_other_key() {
        let custom: Scopes = [Scope::declare("ledger:write").unwrap()]
            .into_iter()
            .collect();
        assert!(ensure_can_grant(&Scope::all(), &custom).is_ok());
        assert!(ensure_can_grant(&Scope::data_scopes(), &custom).is_err());
    }

    #[test]
    fn it_should_not_intern_a_name_it_only_looks_up() {
        assert_eq!(Scope::lookup("never-declared:read"), None);
        assert_eq!(Scope::lookup("never-declared:read"), None);
    }

    #[test]
    fn it_should_read_a_stored_custom_scope() {
        let scopes: Scopes = serde_json::from_str(r#"["stored:write", "assets:read"]"#).unwrap();
        assert_eq!(scopes.names(), vec!["assets:read", "stored:write"]);
    }

    #[test]
    fn it_should_parse_every_catalogue_scope() {
        for scope in Scope::all().iter() {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        }
        assert_eq!(Scope::all().len(), 14);
        assert_eq!(Scope::data_scopes().len(), 9);
    }

    #[test]
    fn it_should_describe_every_catalogue_scope_in_catalogue_order() {
        let described: Vec<Scope> = Scope::catalogue().map(|(scope, _)| scope).collect();
        let order: Vec<Scope> = Scope::DATA
            .iter()
            .chain(Scope::MANAGEMENT)
            .chain(Scope::SERVICE)
            .copied()
            .collect();
        assert_eq!(described, order);
        assert_eq!(
            Scope::WORK_ORDERS_READ.description(),
            Some("Read work orders")
        );
        assert!(Scope::catalogue().all(|(_, d)| !d.is_empty()));
        assert_eq!(Scope::declare("billing:read").unwrap().description(), None);
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
    fn it_should_reject_a_name_that_is_no_scope_in_json() {
        let err = serde_json::from_str::<Scopes>(r#"["Bogus read"]"#).unwrap_err();
        assert!(err.to_string().contains("Bogus read"));
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
