//! Steps 1 and 2 of the auth order ([`crate::auth`]): authentication of bearer keys: token format and checksum (no I/O), then the key's
//! state from an in-memory cache filled from the event store (never from a lagging
//! projection, so a key works on every node the moment its create call returns), then
//! argon2 once per node and key, and `sha256(token)` in constant time afterwards.
//!
//! Cache entries carry the key's stream version: a fill with an older version never
//! replaces a newer entry, so a slow fill that started before a revocation cannot bring
//! the revoked key back.
//!
//! **The cache rule.** A cached key state is used only while it is younger than its
//! *max age*, counted from when it was read from the store:
//! - while the revocation bus is connected: `KEYLEDGER_CACHE_HEALTHY_TTL_SECONDS`
//!   (300 s by default): every change is announced on the bus within milliseconds, by the
//!   node that made it and again by the relay, and each node reloads the key on the
//!   notice, so an entry stays right for as long as the bus is up;
//! - while it is not (NATS unreachable, or not yet connected):
//!   `KEYLEDGER_CACHE_TTL_SECONDS` (30 s by default), so a change nobody could announce
//!   takes effect everywhere within that TTL of being made (plus the time NATS takes to
//!   notice a dead connection, a few pings; a killed server is noticed at once);
//! - on every reset of the bus (a reconnect, or a receiver that fell behind), the node drops
//!   its whole cache: it may have missed notices.
//!
//! An older entry is reloaded from the store (one stream read) on its next use. A token
//! proven by argon2 is remembered apart from the state (`sha256(token)` per key id; a
//! key's secret never changes), so reloads and resets never cost argon2 again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::Utc;
use commands::hashing;
use commands::keys::{CommandError, KeyService};
use domain::apikey::{self, KeyStatus};
use domain::bus::{Notice, PlanNotice, RevocationNotice};
use domain::ids::{KeyId, OrgId};
use domain::scope::Scopes;
use domain::token::{Environment, Token};
use futures::StreamExt;
use moka::future::Cache;
use moka::ops::compute::Op;

use crate::app::AppState;
use crate::auth::proof::{ProofConfig, ProofLimits, Refusal};
use crate::auth::rate_limit::RateLimits;
use crate::bus::Bus;
use crate::http::error::ApiError;

/// A key's state as this node last read it from the store, and when.
#[derive(Clone)]
struct CachedKey {
    state: Arc<apikey::State>,
    loaded_at: Instant,
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
    /// The key id's failure budget is spent (429 `too_many_failed_attempts`).
    TooManyFailures {
        /// Seconds until the budget's window ends.
        retry_after_secs: u64,
    },
    /// Too many unproven tokens wait for argon2 (429 `verification_busy`).
    Busy,
    /// The key's lifecycle stream fails its hash-chain check (401 `key_integrity`).
    Integrity,
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
            AuthFailure::TooManyFailures { .. } => "too_many_failures",
            AuthFailure::Busy => "verification_busy",
            AuthFailure::Integrity => "key_integrity",
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
            AuthFailure::TooManyFailures { .. } => {
                "too many failed attempts for this key; retry later".into()
            }
            AuthFailure::Busy => "too many keys are being verified; retry shortly".into(),
            AuthFailure::Integrity => "the key's stored history failed its integrity check".into(),
        }
    }

    /// The error answered for this failure: 401 `key_integrity` for a broken chain, 429
    /// for the bounds on unproven tokens, else 401 `invalid_token` (401s carry
    /// `WWW-Authenticate`).
    pub fn to_error(self, server: Environment) -> ApiError {
        match self {
            AuthFailure::Integrity => {
                ApiError::Integrity(crate::http::error::Integrity::Authentication)
            }
            AuthFailure::TooManyFailures { retry_after_secs } => {
                ApiError::TooManyFailedAttempts { retry_after_secs }
            }
            AuthFailure::Busy => ApiError::VerificationBusy,
            other => ApiError::Unauthenticated(other.detail(server)),
        }
    }
}

/// How long cached key states are trusted (see the module's cache rule).
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// The most keys held.
    pub capacity: u64,
    /// Max age of an entry while the bus is not connected.
    pub ttl: Duration,
    /// Max age of an entry while the bus is connected.
    pub healthy_ttl: Duration,
}

/// Verifies tokens for one node.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<KeyService>,
    cache: Cache<KeyId, CachedKey>,
    /// `sha256(token)` of the token argon2 accepted, per key.
    verified: Cache<KeyId, [u8; 32]>,
    unknown: Cache<KeyId, ()>,
    /// Bounds on argon2 work for tokens not yet proven here.
    proof: ProofLimits,
    /// Per-key rate limits and the plans they follow (plan notices update them).
    limits: RateLimits,
    /// Keys whose lifecycle stream failed its hash-chain check, refused for a while
    /// (the unconnected cache TTL) without a store read.
    broken: Cache<KeyId, ()>,
    environment: Environment,
    bus: Bus,
    config: CacheConfig,
}

impl Authenticator {
    /// An authenticator following `bus` (start [`Authenticator::listen`] too).
    pub fn new(
        keys: Arc<KeyService>,
        environment: Environment,
        config: CacheConfig,
        proof: ProofConfig,
        limits: RateLimits,
        bus: Bus,
    ) -> Self {
        Self {
            keys,
            // Moka's own TTL is only the outer bound (the longest any entry is trusted);
            // the max age in force is checked on every read.
            cache: Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.healthy_ttl.max(config.ttl))
                .build(),
            verified: Cache::builder().max_capacity(config.capacity).build(),
            unknown: Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(Duration::from_secs(300))
                .build(),
            proof: ProofLimits::new(proof),
            limits,
            broken: Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build(),
            environment,
            bus,
            config,
        }
    }

    /// The environment of keys this server accepts.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The revocation bus this node follows.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The max age of a cached state right now (the cache rule).
    fn max_age(&self) -> Duration {
        if self.bus.is_connected() {
            self.config.healthy_ttl
        } else {
            self.config.ttl
        }
    }

    /// Checks a bearer token: format and checksum, environment, known key, secret,
    /// status. Returns the key's current state.
    pub async fn authenticate(&self, bearer: &str) -> Result<Arc<apikey::State>, AuthFailure> {
        let state = self.identify(bearer).await?;
        match state.status(Utc::now()) {
            KeyStatus::Active => Ok(state),
            KeyStatus::Revoked => Err(AuthFailure::Revoked),
            KeyStatus::Expired => Err(AuthFailure::Expired),
        }
    }

    /// Steps 1 and 2 but the status: format and checksum, environment, known key, secret.
    /// Returns the key's current state whatever its status (for `POST /v1/keys/verify`,
    /// which tells a revoked key of the caller's organisation from one of another).
    pub async fn identify(&self, bearer: &str) -> Result<Arc<apikey::State>, AuthFailure> {
        let parsed = Token::parse(bearer).map_err(|_| AuthFailure::Malformed)?;
        if parsed.environment != self.environment {
            return Err(AuthFailure::WrongEnvironment);
        }
        let fingerprint = hashing::fingerprint(bearer);
        let state = match self.cache.get(&parsed.key_id).await {
            Some(entry) if entry.loaded_at.elapsed() <= self.max_age() => {
                metrics::counter!("keyledger_key_cache_hits_total").increment(1);
                entry.state
            }
            cached => {
                metrics::counter!("keyledger_key_cache_misses_total").increment(1);
                // An id nobody has created is remembered for a while, so a flood of
                // well-formed tokens with made-up ids costs no store reads. This cannot
                // hide a new key: its id is random and first known to its creator, so no
                // one can present it before the create call has appended it (and its
                // creation notice clears the entry on every node).
                if cached.is_none() && self.unknown.contains_key(&parsed.key_id) {
                    return Err(AuthFailure::UnknownKey);
                }
                // A key whose chain was found broken is refused without reading it again
                // for a while (like an unknown id), so presenting it costs no store reads.
                if cached.is_none() && self.broken.contains_key(&parsed.key_id) {
                    return Err(AuthFailure::Integrity);
                }
                let state = match self.keys.load_key(parsed.key_id).await {
                    Ok(Some(state)) => state,
                    Ok(None) => {
                        self.unknown.insert(parsed.key_id, ()).await;
                        return Err(AuthFailure::UnknownKey);
                    }
                    Err(CommandError::Integrity(_)) => {
                        // Already logged and counted by the load (once per break).
                        self.broken.insert(parsed.key_id, ()).await;
                        return Err(AuthFailure::Integrity);
                    }
                    Err(e) => {
                        // Fail closed: a state too old to trust is not used.
                        tracing::warn!(error = %e, "cannot load a key to authenticate");
                        return Err(AuthFailure::UnknownKey);
                    }
                };
                self.fill(Arc::new(state)).await.state
            }
        };
        match self.verified.get(&parsed.key_id).await {
            Some(known) => {
                if !hashing::fingerprints_equal(&known, &fingerprint) {
                    return Err(AuthFailure::BadSecret);
                }
            }
            None => {
                self.prove(parsed.key_id, &state, bearer, fingerprint)
                    .await?
            }
        }
        Ok(state)
    }

    /// First verification of a key's token on this node: argon2, off the async threads,
    /// within the bounds of [`crate::auth::proof`]. Later requests compare `sha256(token)` in
    /// constant time.
    async fn prove(
        &self,
        key: KeyId,
        state: &apikey::State,
        bearer: &str,
        fingerprint: [u8; 32],
    ) -> Result<(), AuthFailure> {
        let refused = |r: Refusal| match r {
            Refusal::KnownBad => AuthFailure::BadSecret,
            Refusal::BudgetSpent { retry_after_secs } => {
                AuthFailure::TooManyFailures { retry_after_secs }
            }
            Refusal::Busy => AuthFailure::Busy,
        };
        self.proof
            .precheck(key, &fingerprint)
            .await
            .map_err(refused)?;
        let _slot = self.proof.slot().await.map_err(refused)?;
        // While this request waited, another may have proven the key, or refused this
        // very token: decide from that, without argon2.
        if let Some(known) = self.verified.get(&key).await {
            return if hashing::fingerprints_equal(&known, &fingerprint) {
                Ok(())
            } else {
                Err(AuthFailure::BadSecret)
            };
        }
        self.proof
            .precheck(key, &fingerprint)
            .await
            .map_err(refused)?;
        metrics::counter!("keyledger_argon2_verifications_total").increment(1);
        let hash = state.secret_hash.clone();
        let token = bearer.to_owned();
        let ok = tokio::task::spawn_blocking(move || hashing::verify_token(&token, &hash))
            .await
            .unwrap_or(false);
        if !ok {
            self.proof.failed(key, fingerprint).await;
            return Err(AuthFailure::BadSecret);
        }
        self.verified.insert(key, fingerprint).await;
        Ok(())
    }

    /// Puts a state into the cache unless the cache already holds a newer version (the
    /// same version is put again, as freshly read). Returns the entry in the cache
    /// afterwards.
    async fn fill(&self, state: Arc<apikey::State>) -> CachedKey {
        let id = state.id;
        let new = CachedKey {
            state,
            loaded_at: Instant::now(),
        };
        let result = self
            .cache
            .entry(id)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(e) if e.value().state.version > new.state.version => Op::Nop,
                    _ => Op::Put(new.clone()),
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

    /// Reads a key from the store into the cache; on a failure the entry is dropped, so
    /// the next request reads the store (fail closed). Returns the version read.
    async fn reload(&self, id: KeyId) -> Option<u64> {
        match self.keys.load_key(id).await {
            Ok(Some(state)) => {
                let version = state.version;
                self.fill(Arc::new(state)).await;
                Some(version)
            }
            Ok(None) => {
                self.cache.invalidate(&id).await;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, key_id = %id, "cannot reload a cached key");
                self.cache.invalidate(&id).await;
                None
            }
        }
    }

    /// Called after this node changed a key: the cache takes the new state at once, so a
    /// revocation or scope narrowing is in force here before the command's response
    /// returns, and the change is announced to every other node (which the relay repeats
    /// from the store, in case this node dies before it gets here).
    pub async fn refresh(&self, id: KeyId) {
        if let Some(version) = self.reload(id).await {
            self.bus
                .publish(RevocationNotice {
                    key_id: id,
                    stream_version: version,
                })
                .await;
        }
    }

    /// A notice from the bus: ignored if this node already holds that version or a newer
    /// one; otherwise the key is read again from the store. A key not cached here is read
    /// too, so that a fill that started before the change and ends after this notice finds
    /// a newer entry in place and cannot put the stale state back.
    pub async fn on_notice(&self, notice: Notice) {
        match notice {
            Notice::Key(n) => self.on_key_notice(n).await,
            Notice::Plan(n) => self.on_plan_notice(n).await,
        }
    }

    /// A plan change: the plan is read again from the store (unless this node already
    /// holds that version), so the new plan's rate limit is in force here at once.
    async fn on_plan_notice(&self, notice: PlanNotice) {
        metrics::counter!("keyledger_bus_notices_received_total").increment(1);
        if self
            .limits
            .plan_version(notice.org_id)
            .await
            .is_some_and(|v| v >= notice.stream_version)
        {
            return;
        }
        match self.keys.load_org(notice.org_id).await {
            Ok(Some(org)) => self.limits.fill_plan(org.id, org.plan, org.version).await,
            Ok(None) => self.limits.forget_plan(notice.org_id).await,
            Err(e) => {
                tracing::warn!(error = %e, org_id = %notice.org_id, "cannot reload a plan");
                self.limits.forget_plan(notice.org_id).await;
            }
        }
    }

    async fn on_key_notice(&self, notice: RevocationNotice) {
        metrics::counter!("keyledger_bus_notices_received_total").increment(1);
        self.unknown.invalidate(&notice.key_id).await;
        self.broken.invalidate(&notice.key_id).await;
        if let Some(entry) = self.cache.get(&notice.key_id).await
            && entry.state.version >= notice.stream_version
        {
            return;
        }
        self.reload(notice.key_id).await;
    }

    /// Drops every cached state and plan (kept: the argon2-proven fingerprints).
    pub fn reset(&self) {
        metrics::counter!("keyledger_key_cache_resets_total").increment(1);
        self.cache.invalidate_all();
        self.unknown.invalidate_all();
        self.limits.forget_all_plans();
        self.broken.invalidate_all();
    }

    /// The rate limits this node enforces (plans follow the bus with the keys).
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Follows the bus for ever: notices update the cache, resets drop it.
    pub fn listen(&self) -> tokio::task::JoinHandle<()> {
        let auth = self.clone();
        tokio::spawn(async move {
            let mut health = auth.bus.health();
            let mut resets = health.borrow_and_update().resets;
            loop {
                let mut notices = auth.bus.port().subscribe();
                loop {
                    tokio::select! {
                        notice = notices.next() => match notice {
                            Some(n) => {
                                // Each reload is a store read: do them side by side.
                                let auth = auth.clone();
                                tokio::spawn(async move { auth.on_notice(n).await });
                            }
                            None => break,
                        },
                        changed = health.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            let now = health.borrow_and_update().resets;
                            if now != resets {
                                resets = now;
                                tracing::info!("revocation bus reset: dropping the key cache");
                                auth.reset();
                            }
                        }
                    }
                }
                tracing::warn!("revocation bus subscription ended; subscribing again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
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

    /// 404 unless the path's organisation is the key's own: another tenant's resources
    /// are indistinguishable from missing ones.
    pub fn require_org(&self, org: &str) -> Result<OrgId, ApiError> {
        match org.parse::<OrgId>() {
            Ok(id) if id == self.key.org_id => Ok(id),
            _ => Err(ApiError::NotFound),
        }
    }

    /// The actor recorded in events this key causes.
    pub fn actor(&self) -> String {
        self.key.id.to_string()
    }
}

/// The principal is put in the request by the auth layer ([`crate::auth::authenticate`]),
/// which has also checked the IP, the route's scope and the rate limit. A handler that
/// asks for it on a route outside the layer gets a 500, never an unchecked key.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::Internal("a route that needs a key is not behind the auth layer".into())
        })
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
