//! Token hashing: the argon2id PHC hash stored in `KeyCreated`, and the sha256
//! fingerprint that the auth layer keeps in memory so that argon2 runs once per key and
//! node, not once per request (DESIGN.md section 3).
//!
//! argon2 is slow on purpose (about 20 ms here): call [`hash_token`] and [`verify_token`]
//! from `tokio::task::spawn_blocking`, never directly on an async worker.

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use domain::SecretHash;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token could not be hashed. The message never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not hash the token: {0}")]
pub struct HashError(pub String);

/// The argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of the full token, with
/// a fresh 16-byte salt from the OS CSPRNG.
pub fn hash_token(token: &str) -> Result<SecretHash, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map(|hash| SecretHash::new(hash.to_string()))
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `token` matches `hash`. The parameters are read from the PHC string, so hashes
/// written with other costs still verify. A malformed hash verifies nothing.
pub fn verify_token(token: &str, hash: &SecretHash) -> bool {
    PasswordHash::new(hash.expose()).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(token.as_bytes(), &parsed)
            .is_ok()
    })
}

/// `sha256(token)`: what a node keeps in memory after the first successful argon2
/// verification of a key, to compare later requests against with
/// [`fingerprints_equal`].
pub fn fingerprint(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two fingerprints in constant time.
pub fn fingerprints_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_hash_with_argon2id_default_parameters() {
        let hash = hash_token("kl_test_abc").unwrap();
        assert!(
            hash.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "unexpected PHC prefix"
        );
        assert!(verify_token("kl_test_abc", &hash));
        assert!(!verify_token("kl_test_abd", &hash));
    }

    #[test]
    fn it_should_salt_every_hash() {
        assert_ne!(hash_token("same").unwrap(), hash_token("same").unwrap());
    }

    #[test]
    fn it_should_verify_nothing_against_a_malformed_hash() {
        assert!(!verify_token("x", &SecretHash::new("not a phc string")));
    }

    #[test]
    fn it_should_compare_fingerprints() {
        let a = fingerprint("token");
        assert!(fingerprints_equal(&a, &fingerprint("token")));
        assert!(!fingerprints_equal(&a, &fingerprint("tokem")));
    }
}
