//! `Idempotency-Key`: the same key with the same request gives the same response; the
//! same key with another request is a 422; a request still in flight is a 409.
//!
//! A stored response may hold a new key's secret (create, rotate). It is kept encrypted
//! (XChaCha20-Poly1305) under `sha256(caller's token || Idempotency-Key)`, neither of which
//! is stored: only the caller who sent the original request can read it back.

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use chrono::{SecondsFormat, Utc};
use projections::ReadDb;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;

/// The most characters an `Idempotency-Key` may have.
pub const MAX_KEY_LEN: usize = 255;

/// What to do with a request that carries an `Idempotency-Key`.
pub enum Begin {
    /// First time: run it, then `complete` the guard.
    New(Guard),
    /// Seen before: answer this.
    Replay {
        /// The original status.
        status: StatusCode,
        /// The original JSON body.
        body: serde_json::Value,
    },
}

/// A claimed idempotency key, to complete with the response (or abandon on a 5xx).
pub struct Guard {
    db: ReadDb,
    scope: String,
    key_hash: String,
    cipher_key: [u8; 32],
}

/// The `Idempotency-Key` header, if present and usable.
pub fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?
        .trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Claims `idem_key` for `scope` (the calling key's id), or finds its earlier response.
/// `request` identifies the request (method, path, canonical body).
pub async fn begin(
    db: &ReadDb,
    scope: &str,
    token: &str,
    idem_key: &str,
    request: &[u8],
) -> Result<Begin, ApiError> {
    let key_hash = hex(&Sha256::digest(idem_key.as_bytes()));
    let request_hash = hex(&Sha256::digest(request));
    let mut k = Sha256::new();
    k.update(b"keyledger/idempotency/v1\0");
    k.update(token.as_bytes());
    k.update(b"\0");
    k.update(idem_key.as_bytes());
    let cipher_key: [u8; 32] = k.finalize().into();

    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key_hash, request_hash, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key_hash) DO NOTHING",
    )
    .bind(scope.to_owned())
    .bind(key_hash.clone())
    .bind(request_hash.clone())
    .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true))
    .execute(db.pool())
    .await
    .map_err(internal)?;
    if inserted.rows_affected() == 1 {
        return Ok(Begin::New(Guard {
            db: db.clone(),
            scope: scope.to_owned(),
            key_hash,
            cipher_key,
        }));
    }
    let row: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT request_hash, status, response FROM idempotency_keys \
         WHERE scope = $1 AND key_hash = $2",
    )
    .bind(scope.to_owned())
    .bind(key_hash)
    .fetch_optional(db.pool())
    .await
    .map_err(internal)?;
    let Some((stored_hash, status, response)) = row else {
        // Abandoned between our insert and our read: ask the client to retry.
        return Err(ApiError::Conflict(
            "a request with this Idempotency-Key was abandoned; retry".into(),
        ));
    };
    if stored_hash != request_hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let (Some(status), Some(response)) = (status, response) else {
        return Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still in progress".into(),
        ));
    };
    let body = decrypt(&cipher_key, &response).ok_or_else(|| {
        ApiError::Internal("a stored idempotent response cannot be decrypted".into())
    })?;
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    Ok(Begin::Replay { status, body })
}

impl Guard {
    /// Stores the response. A 5xx is not stored: the key is released so a retry runs.
    pub async fn complete(self, status: StatusCode, body: &serde_json::Value) {
        if status.is_server_error() {
            self.abandon().await;
            return;
        }
        let stored = match encrypt(&self.cipher_key, body) {
            Some(s) => s,
            None => {
                self.abandon().await;
                return;
            }
        };
        let result = sqlx::query(
            "UPDATE idempotency_keys SET status = $1, response = $2 \
             WHERE scope = $3 AND key_hash = $4",
        )
        .bind(i64::from(status.as_u16()))
        .bind(stored)
        .bind(self.scope.clone())
        .bind(self.key_hash.clone())
        .execute(self.db.pool())
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot store an idempotent response");
        }
    }

    /// Releases the key without a response.
    pub async fn abandon(self) {
        let result = sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key_hash = $2")
            .bind(self.scope.clone())
            .bind(self.key_hash.clone())
            .execute(self.db.pool())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot release an idempotency key");
        }
    }
}

fn encrypt(key: &[u8; 32], body: &serde_json::Value) -> Option<String> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let plain = serde_json::to_vec(body).ok()?;
    let sealed = cipher.encrypt(&nonce, plain.as_slice()).ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Some(STANDARD.encode(out))
}

fn decrypt(key: &[u8; 32], stored: &str) -> Option<serde_json::Value> {
    let raw = STANDARD.decode(stored).ok()?;
    if raw.len() < 24 {
        return None;
    }
    let (nonce, sealed) = raw.split_at(24);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let plain = cipher.decrypt(XNonce::from_slice(nonce), sealed).ok()?;
    serde_json::from_slice(&plain).ok()
}

fn internal(e: sqlx::Error) -> ApiError {
    ApiError::Internal(format!("idempotency store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_read_back_only_with_the_same_key() {
        let body = serde_json::json!({"secret": "kl_test_x"});
        let sealed = encrypt(&[7; 32], &body).unwrap();
        assert!(!sealed.contains("kl_test_x"));
        assert_eq!(decrypt(&[7; 32], &sealed).unwrap(), body);
        assert!(decrypt(&[8; 32], &sealed).is_none());
    }
}
