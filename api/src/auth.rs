//! Authentication of bearer keys: token format and checksum (no I/O), then the key's
//! state from an in-memory cache filled from the event store (never from a lagging
//! projection, so a key works on every node the moment its create call returns), then
//! argon2 once per node and key, and `sha256(token)` in constant time afterwards.
//!
//! Cache entries carry the key's stream version: a fill with an older version never
//! replaces a newer entry, so a slow fill that started before a revocation cannot bring
//! the revoked key back.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::Utc;
use commands::hashing;
use commands::keys::KeyService;
use domain::apikey::{self, KeyStatus};
use domain::ids::{KeyId, OrgId};
use domain::scope::{Scope, Scopes};
use domain::token::{Environment, Token};
use moka::future::Cache;
use moka::ops::compute::Op;

use crate::app::AppState;
use crate::error::ApiError;

/// A key's state as this node last saw it, and the fingerprint of its token once argon2
/// has accepted it here.
#[derive(Clone)]
struct CachedKey {
    state: Arc<apikey::State>,
    fingerprint: Option<[u8; 32]>,
}

/// Why a token was refused (for metrics and the 401's detail; never the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a keyledger token, or its checksum is wrong.
    Malformed,
    /// A `kl_test_` key on a live server, or the reverse.
    WrongEnvironment,
    /// No key has this id.
    UnknownKey,
    /// The secret does not match.
    BadSecret,
    /// The key is revoked.
    Revoked,
    /// The key has expired.
    Expired,
}

impl AuthFailure {
    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::WrongEnvironment => "wrong_environment",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::BadSecret => "bad_secret",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
        }
    }

    /// The 401's detail.
    pub fn detail(self, server: Environment) -> String {
        match self {
            AuthFailure::Missing => "an Authorization: Bearer <key> header is required".into(),
            AuthFailure::Malformed => "the bearer token is not a valid keyledger key".into(),
            AuthFailure::WrongEnvironment => {
                let other = match server {
                    Environment::Live => "test",
                    Environment::Test => "live",
                };
                format!(
                    "this is a {other} key; this server accepts {} keys only",
                    server.as_str()
                )
            }
            AuthFailure::UnknownKey | AuthFailure::BadSecret => "the key is not valid".into(),
            AuthFailure::Revoked => "the key has been revoked".into(),
            AuthFailure::Expired => "the key has expired".into(),
        }
    }
}

/// Verifies tokens for one node.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<KeyService>,
    cache: Cache<KeyId, CachedKey>,
    unknown: Cache<KeyId, ()>,
    environment: Environment,
}

impl Authenticator {
    /// An authenticator whose cache holds at most `capacity` keys, each for at most `ttl`.
    pub fn new(
        keys: Arc<KeyService>,
        environment: Environment,
        capacity: u64,
        ttl: Duration,
    ) -> Self {
        Self {
            keys,
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            unknown: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(Duration::from_secs(300))
                .build(),
            environment,
        }
    }

    /// The environment of keys this server accepts.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// Checks a bearer token: format and checksum, environment, known key, secret,
    /// status. Returns the key's current state.
    pub async fn authenticate(&self, bearer: &str) -> Result<Arc<apikey::State>, AuthFailure> {
        let parsed = Token::parse(bearer).map_err(|_| AuthFailure::Malformed)?;
        if parsed.environment != self.environment {
            return Err(AuthFailure::WrongEnvironment);
        }
        let fingerprint = hashing::fingerprint(bearer);
        let entry = match self.cache.get(&parsed.key_id).await {
            Some(entry) => {
                metrics::counter!("keyledger_key_cache_hits_total").increment(1);
                entry
            }
            None => {
                metrics::counter!("keyledger_key_cache_misses_total").increment(1);
                // An id nobody has created is remembered for a while, so a flood of
                // well-formed tokens with made-up ids costs no store reads. This cannot
                // hide a new key: its id is random and first known to its creator, so no
                // one can present it before the create call has appended it.
                if self.unknown.contains_key(&parsed.key_id) {
                    return Err(AuthFailure::UnknownKey);
                }
                let state = match self.keys.load_key(parsed.key_id).await {
                    Ok(Some(state)) => state,
                    Ok(None) => {
                        self.unknown.insert(parsed.key_id, ()).await;
                        return Err(AuthFailure::UnknownKey);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot load a key to authenticate");
                        return Err(AuthFailure::UnknownKey);
                    }
                };
                self.fill(Arc::new(state), None).await
            }
        };
        match entry.fingerprint {
            Some(known) => {
                if !hashing::fingerprints_equal(&known, &fingerprint) {
                    return Err(AuthFailure::BadSecret);
                }
            }
            None => {
                // First verification of this key on this node: argon2, off the async
                // threads. Later requests compare sha256(token) in constant time.
                metrics::counter!("keyledger_argon2_verifications_total").increment(1);
                let hash = entry.state.secret_hash.clone();
                let token = bearer.to_owned();
                let ok = tokio::task::spawn_blocking(move || hashing::verify_token(&token, &hash))
                    .await
                    .unwrap_or(false);
                if !ok {
                    return Err(AuthFailure::BadSecret);
                }
                self.remember_fingerprint(parsed.key_id, entry.state.version, fingerprint)
                    .await;
            }
        }
        match entry.state.status(Utc::now()) {
            KeyStatus::Active => Ok(entry.state),
            KeyStatus::Revoked => Err(AuthFailure::Revoked),
            KeyStatus::Expired => Err(AuthFailure::Expired),
        }
    }

    /// Puts a state into the cache unless the cache already holds a newer version.
    /// Returns the entry that is in the cache afterwards.
    async fn fill(&self, state: Arc<apikey::State>, fingerprint: Option<[u8; 32]>) -> CachedKey {
        let id = state.id;
        let new = CachedKey { state, fingerprint };
        let result = self
            .cache
            .entry(id)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(e) if e.value().state.version > new.state.version => Op::Nop,
                    Some(e) => Op::Put(CachedKey {
                        // The secret never changes: keep what argon2 already proved.
                        fingerprint: new.fingerprint.or(e.value().fingerprint),
                        state: new.state.clone(),
                    }),
                    None => Op::Put(new.clone()),
                };
                std::future::ready(op)
            })
            .await;
        match result {
            moka::ops::compute::CompResult::Inserted(e)
            | moka::ops::compute::CompResult::ReplacedWith(e)
            | moka::ops::compute::CompResult::Unchanged(e) => e.into_value(),
            _ => new,
        }
    }

    async fn remember_fingerprint(&self, id: KeyId, version: u64, fingerprint: [u8; 32]) {
        self.cache
            .entry(id)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(e) if e.value().state.version >= version => Op::Put(CachedKey {
                        state: e.value().state.clone(),
                        fingerprint: Some(fingerprint),
                    }),
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }

    /// Called after this node changed a key: the cache takes the new state at once, so a
    /// revocation or scope narrowing is in force before the command's response returns.
    pub async fn refresh(&self, id: KeyId) {
        match self.keys.load_key(id).await {
            Ok(Some(state)) => {
                self.fill(Arc::new(state), None).await;
            }
            Ok(None) => self.cache.invalidate(&id).await,
            Err(e) => {
                // Fail closed: without a fresh state, drop the entry so the next request
                // reads the store.
                tracing::warn!(error = %e, key_id = %id, "cannot refresh a cached key");
                self.cache.invalidate(&id).await;
            }
        }
    }
}

/// The authenticated key behind a request.
#[derive(Clone)]
pub struct Principal {
    /// The key's state when the request was authenticated.
    pub key: Arc<apikey::State>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("key_id", &self.key.id)
            .field("org_id", &self.key.org_id)
            .finish()
    }
}

impl Principal {
    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.key.id
    }

    /// The key's organisation.
    pub fn org_id(&self) -> OrgId {
        self.key.org_id
    }

    /// The key's scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.key.scopes
    }

    /// 403 `insufficient_scope` unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope.as_str().to_owned()))
        }
    }

    /// 404 unless the path's organisation is the key's own: another tenant's resources
    /// are indistinguishable from missing ones.
    pub fn require_org(&self, org: &str) -> Result<OrgId, ApiError> {
        match org.parse::<OrgId>() {
            Ok(id) if id == self.key.org_id => Ok(id),
            _ => Err(ApiError::NotFound),
        }
    }

    /// 403 `ip_not_allowed` unless the client IP is within the key's allowed CIDRs.
    pub fn require_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        if self.key.allowed_ips.permits(ip) {
            Ok(())
        } else {
            Err(ApiError::IpNotAllowed)
        }
    }

    /// The actor recorded in events this key causes.
    pub fn actor(&self) -> String {
        self.key.id.to_string()
    }
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let auth = &state.0.auth;
        let Some(token) = bearer(parts) else {
            return Err(ApiError::Unauthenticated(
                AuthFailure::Missing.detail(auth.environment()),
            ));
        };
        let key = auth
            .authenticate(token)
            .await
            .map_err(|f| ApiError::Unauthenticated(f.detail(auth.environment())))?;
        let principal = Principal { key };
        if let Some(ip) = crate::client_ip::client_ip(parts, &state.0.trusted_proxies) {
            principal.require_ip(ip)?;
        }
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// The bearer token in a header map, if any.
pub fn bearer_from_headers(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The rate-limit state of the key behind a request, put in the request's extensions by
/// the auth layer (and shown by `GET /whoami` and the `RateLimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RateLimitState {
    /// Requests per minute allowed to this key (its override or its plan's).
    pub limit: u32,
    /// Requests it may still make right now (its burst capacity left).
    pub remaining: u32,
    /// Seconds until its allowance is whole again.
    pub reset_seconds: u64,
}
