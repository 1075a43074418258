//! API key tokens: `kl_live_<id>_<secret><checksum>` (or `kl_test_...`).
//!
//! - `<id>`: the key's UUID as a 128-bit big-endian number in 22 base62 digits, so that
//!   a lookup never scans;
//! - `<secret>`: 32 bytes (256 bits) from the OS CSPRNG in 43 base62 digits;
//! - `<checksum>`: CRC32 of everything before it in 6 base62 digits (GitHub-style), so a
//!   mistyped token is rejected with no I/O and secret scanners can recognise tokens.
//!
//! Every part has a fixed width, so a token is always [`TOKEN_LEN`] bytes long.
//!
//! The displayed **prefix** is the token's first [`PREFIX_LEN`] characters:
//! `kl_live_` and the first [`PREFIX_ID_CHARS`] (18) characters of the id. The id part is
//! the UUID v7 as one big-endian number, so its first characters are the clock: 48 bits of
//! milliseconds fill about 8 base62 characters (8 characters are a ~10 ms clock, which is
//! why the first releases' 8-character prefixes collided). Each further character adds
//! log2(62) = 5.95 bits; 18 characters keep 128 - 4 x 5.95 = 104.2 bits of the id, that is
//! the 48 clock bits, the 6 fixed version and variant bits, and 50.2 of the id's 74 random
//! bits (`KeyId::new_v7` fills all 74 from the OS CSPRNG, with no counter). Keys of
//! different milliseconds never share a prefix; `n` keys of one millisecond share one with
//! probability about `n^2 / 2^51.2`: for 10,000 keys in one second, 3.5e-11 when they are
//! spread over the second (10 per millisecond) and 3.9e-8 in the worst case of all 10,000
//! in one millisecond. Keys created before this length keep the 8-character prefix their
//! `KeyCreated` event recorded (it is data, never recomputed): it is still the start of
//! their token, and of the prefix the current length would give them.
//! [`Token`] holds the full secret and never shows it in `Debug`; the only way to read
//! it is [`Token::expose_secret`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::base62;
use crate::ids::KeyId;

/// Width of the id part (a `u128` in base62).
pub const ID_LEN: usize = 22;
/// Width of the secret part (256 bits in base62).
pub const SECRET_LEN: usize = 43;
/// Width of the checksum part (a CRC32 in base62).
pub const CHECKSUM_LEN: usize = 6;
/// Bytes of randomness in a secret.
pub const SECRET_BYTES: usize = 32;
/// Length of `kl_live_` and `kl_test_`.
pub const ENV_PREFIX_LEN: usize = 8;
/// The total length of every token.
pub const TOKEN_LEN: usize = ENV_PREFIX_LEN + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;
/// How many characters of the id part the displayed prefix keeps: enough to reach 50 of
/// the id's random bits (see the module's documentation for the collision probability).
pub const PREFIX_ID_CHARS: usize = 18;
/// The displayed prefix's length: `kl_live_` plus [`PREFIX_ID_CHARS`] (26).
pub const PREFIX_LEN: usize = ENV_PREFIX_LEN + PREFIX_ID_CHARS;
/// How many id characters the first releases' prefixes kept. Their keys keep the prefix
/// their `KeyCreated` event recorded; new keys get [`PREFIX_ID_CHARS`].
pub const LEGACY_PREFIX_ID_CHARS: usize = 8;

/// Which environment a key belongs to; a server only accepts keys of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production keys: `kl_live_...`.
    Live,
    /// Test keys: `kl_test_...`.
    Test,
}

impl Environment {
    /// `"live"` or `"test"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    /// The token prefix of this environment: `kl_live_` or `kl_test_`.
    pub const fn token_prefix(self) -> &'static str {
        match self {
            Environment::Live => "kl_live_",
            Environment::Test => "kl_test_",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown environment name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment {0:?}: expected \"live\" or \"test\"")]
pub struct EnvironmentError(pub String);

impl FromStr for Environment {
    type Err = EnvironmentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Environment::Live),
            "test" => Ok(Environment::Test),
            other => Err(EnvironmentError(other.to_owned())),
        }
    }
}

/// Why a string is not a well-formed token. None of these needs any I/O to detect.
///
/// The variants never carry the token itself, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It does not start with `kl_live_` or `kl_test_`.
    #[error("token does not start with kl_live_ or kl_test_")]
    BadPrefix,
    /// It has the right prefix but not [`TOKEN_LEN`] bytes.
    #[error("token has length {actual}, expected {expected}")]
    BadLength {
        /// The length given, in bytes.
        actual: usize,
        /// [`TOKEN_LEN`].
        expected: usize,
    },
    /// The `_` between the id and the secret is missing.
    #[error("token has no separator between id and secret")]
    BadSeparator,
    /// A character of the id, secret or checksum is not base62 (`0-9A-Za-z`).
    #[error("token contains a character outside 0-9A-Za-z at byte {position}")]
    BadCharset {
        /// The byte offset of the first bad character.
        position: usize,
    },
    /// The CRC32 does not match: a typo, a truncated copy or a forgery.
    #[error("token checksum does not match")]
    ChecksumMismatch,
    /// The checksum is right but the id part is larger than any UUID.
    #[error("token id is out of range")]
    InvalidId,
    /// The OS random number generator failed (only when generating).
    #[error("OS random number generator failed: {0}")]
    Rng(String),
}

/// The public facts of a well-formed token: no secret in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParsedToken {
    /// `live` or `test`, from the token's prefix.
    pub environment: Environment,
    /// The key's id, decoded from the token.
    pub key_id: KeyId,
}

impl ParsedToken {
    /// The displayed prefix a key made today gets: `kl_live_<first 18 chars of id>`.
    pub fn prefix(&self) -> String {
        prefix_of(self.environment, self.key_id)
    }
}

/// The displayed prefix of a key created today: the first [`PREFIX_LEN`] characters of
/// its token, `kl_live_<first 18 chars of id part>`.
pub fn prefix_of(environment: Environment, key_id: KeyId) -> String {
    let id = encode_id(key_id);
    format!("{}{}", environment.token_prefix(), &id[..PREFIX_ID_CHARS])
}

fn encode_id(key_id: KeyId) -> String {
    base62::encode_fixed(&key_id.as_uuid().as_u128().to_be_bytes(), ID_LEN)
}

fn checksum(body: &str) -> String {
    base62::encode_fixed(
        &crc32fast::hash(body.as_bytes()).to_be_bytes(),
        CHECKSUM_LEN,
    )
}

/// A full API key token, secret included.
///
/// `Debug` shows only the prefix; there is no `Display`. Read the token with
/// [`Token::expose_secret`], once, to hand it to its owner. The string is overwritten
/// when the value is dropped (best effort: copies made by callers are theirs to manage).
#[derive(Clone)]
pub struct Token {
    full: String,
    environment: Environment,
    key_id: KeyId,
}

impl Token {
    /// Generates a token for `key_id` with a fresh secret from the OS CSPRNG.
    ///
    /// # Panics
    /// If the OS random number generator fails, which on supported platforms happens
    /// only when the system is broken; see [`Token::try_generate`] to handle it.
    #[allow(clippy::expect_used)] // no token can be made safely without randomness
    pub fn generate(environment: Environment, key_id: KeyId) -> Token {
        Self::try_generate(environment, key_id).expect("the OS CSPRNG must be available")
    }

    /// Generates a token, reporting a failure of the OS random number generator.
    pub fn try_generate(environment: Environment, key_id: KeyId) -> Result<Token, TokenError> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|e| TokenError::Rng(e.to_string()))?;
        let token = Self::from_parts(environment, key_id, &secret);
        secret.fill(0);
        Ok(token)
    }

    /// Builds a token from explicit secret bytes: for tests and reproducible fixtures.
    pub fn from_parts(
        environment: Environment,
        key_id: KeyId,
        secret: &[u8; SECRET_BYTES],
    ) -> Token {
        let mut full = String::with_capacity(TOKEN_LEN);
        full.push_str(environment.token_prefix());
        full.push_str(&encode_id(key_id));
        full.push('_');
        full.push_str(&base62::encode_fixed(secret, SECRET_LEN));
        let sum = checksum(&full);
        full.push_str(&sum);
        Token {
            full,
            environment,
            key_id,
        }
    }

    /// Checks a presented token's format and checksum and reads its environment and key
    /// id, with no I/O. Whether the secret is right is the verifier's business.
    pub fn parse(token: &str) -> Result<ParsedToken, TokenError> {
        let bytes = token.as_bytes();
        let environment = if token.starts_with(Environment::Live.token_prefix()) {
            Environment::Live
        } else if token.starts_with(Environment::Test.token_prefix()) {
            Environment::Test
        } else {
            return Err(TokenError::BadPrefix);
        };
        if bytes.len() != TOKEN_LEN {
            return Err(TokenError::BadLength {
                actual: bytes.len(),
                expected: TOKEN_LEN,
            });
        }
        let sep = ENV_PREFIX_LEN + ID_LEN;
        if bytes[sep] != b'_' {
            return Err(TokenError::BadSeparator);
        }
        if let Some(position) = bytes
            .iter()
            .enumerate()
            .skip(ENV_PREFIX_LEN)
            .find(|&(i, &b)| i != sep && base62::digit_value(b).is_none())
            .map(|(i, _)| i)
        {
            return Err(TokenError::BadCharset { position });
        }
        // All bytes are ASCII from here on, so slicing by byte offsets is safe.
        let checksum_at = TOKEN_LEN - CHECKSUM_LEN;
        let expected = crc32fast::hash(&bytes[..checksum_at]);
        let actual = base62::decode_u128(&bytes[checksum_at..]);
        if actual != Some(u128::from(expected)) {
            return Err(TokenError::ChecksumMismatch);
        }
        let id = base62::decode_u128(&bytes[ENV_PREFIX_LEN..sep]).ok_or(TokenError::InvalidId)?;
        Ok(ParsedToken {
            environment,
            key_id: KeyId::from_uuid(Uuid::from_u128(id)),
        })
    }

    /// The full token, secret included. Show it to its owner once; never log it.
    pub fn expose_secret(&self) -> &str {
        &self.full
    }

    /// The displayed prefix, the token's first [`PREFIX_LEN`] characters.
    pub fn prefix(&self) -> String {
        self.full[..PREFIX_LEN].to_owned()
    }

    /// The token's environment.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The key the token belongs to.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}***)", self.prefix())
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.full).into_bytes();
        bytes.fill(0);
        // Keeps the optimiser from treating the wipe as a dead store.
        std::hint::black_box(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture() -> Token {
        Token::from_parts(Environment::Live, KeyId::new_v7(), &[7u8; SECRET_BYTES])
    }

    #[test]
    fn it_should_generate_a_token_of_fixed_layout() {
        let id = KeyId::new_v7();
        let token = Token::generate(Environment::Test, id);
        let s = token.expose_secret();
        assert_eq!(s.len(), TOKEN_LEN);
        assert!(s.starts_with("kl_test_"));
        assert_eq!(&s[30..31], "_");
        assert_eq!(token.key_id(), id);
        assert_eq!(token.environment(), Environment::Test);
    }

    #[test]
    fn it_should_generate_different_secrets_each_time() {
        let id = KeyId::new_v7();
        let a = Token::generate(Environment::Live, id);
        let b = Token::generate(Environment::Live, id);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.prefix(), b.prefix());
    }

    #[test]
    fn it_should_not_show_the_secret_in_debug() {
        let token = fixture();
        let debug = format!("{token:?}");
        assert_eq!(debug, format!("Token({}***)", token.prefix()));
        assert!(!debug.contains(&token.expose_secret()[31..]));
    }

    #[test]
    fn it_should_show_the_tokens_first_26_characters_as_prefix() {
        let token = fixture();
        let prefix = token.prefix();
        assert_eq!(prefix.len(), 26);
        assert_eq!(PREFIX_LEN, 26);
        assert_eq!(prefix, token.expose_secret()[..26]);
        let parsed = Token::parse(token.expose_secret()).unwrap();
        assert_eq!(parsed.prefix(), prefix);
        assert_eq!(prefix_of(Environment::Live, token.key_id()), prefix);
    }

    #[test]
    fn a_legacy_prefix_should_still_be_the_start_of_its_token_and_of_the_new_prefix() {
        // Keys of the first releases recorded `kl_live_<8 id chars>` in their KeyCreated
        // event; that stored prefix is shown as is and never recomputed.
        let token = fixture();
        let legacy = &token.expose_secret()[..ENV_PREFIX_LEN + LEGACY_PREFIX_ID_CHARS];
        assert!(token.prefix().starts_with(legacy));
        assert!(prefix_of(Environment::Live, token.key_id()).starts_with(legacy));
    }

    #[test]
    fn the_clock_should_fill_only_the_first_nine_id_characters() {
        // Ids a millisecond apart differ by at least 15 x 2^76 > 62^13 = 2^77.4, so they
        // differ within their first 9 id characters: the rest of an 18-character prefix
        // (and part of the 9th character) is decided by the random bits alone.
        let at = 1_764_633_600_000u64;
        let a = encode_id(KeyId::new_v7_at(at));
        let b = encode_id(KeyId::new_v7_at(at + 1));
        let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        assert!(common <= 8, "{a} {b}");
    }

    #[test]
    fn ten_thousand_keys_of_one_millisecond_should_have_distinct_prefixes() {
        // Given 10,000 key ids with the same timestamp (the worst case of "10,000 keys in
        // one second"), when their prefixes are taken, then none repeats. The chance that
        // this fails is about 10,000^2 / 2^51.2 = 3.9e-8 (see the module documentation).
        let at = 1_764_633_600_000u64;
        let prefixes: std::collections::HashSet<String> = (0..10_000)
            .map(|_| prefix_of(Environment::Live, KeyId::new_v7_at(at)))
            .collect();
        assert_eq!(prefixes.len(), 10_000);
    }

    #[test]
    fn keys_of_one_millisecond_should_share_their_legacy_prefix() {
        // Why the prefix grew: at the old length, keys of one millisecond all look alike.
        let at = 1_764_633_600_000u64;
        let legacy: std::collections::HashSet<String> = (0..100)
            .map(|_| encode_id(KeyId::new_v7_at(at))[..LEGACY_PREFIX_ID_CHARS].to_owned())
            .collect();
        assert!(legacy.len() <= 2, "{legacy:?}");
    }

    #[test]
    fn it_should_reject_a_bad_prefix() {
        assert_eq!(Token::parse("sk_live_abc"), Err(TokenError::BadPrefix));
        assert_eq!(Token::parse(""), Err(TokenError::BadPrefix));
        let token = fixture();
        let other = token.expose_secret().replacen("kl_live_", "kl_prod_", 1);
        assert_eq!(Token::parse(&other), Err(TokenError::BadPrefix));
    }

    #[test]
    fn it_should_reject_a_bad_length() {
        let token = fixture();
        let s = token.expose_secret();
        assert_eq!(
            Token::parse(&s[..TOKEN_LEN - 1]),
            Err(TokenError::BadLength {
                actual: TOKEN_LEN - 1,
                expected: TOKEN_LEN
            })
        );
        assert!(matches!(
            Token::parse(&format!("{s}0")),
            Err(TokenError::BadLength { .. })
        ));
    }

    #[test]
    fn it_should_reject_a_bad_charset() {
        let token = fixture();
        let mut s = token.expose_secret().to_owned();
        s.replace_range(40..41, "-");
        assert_eq!(
            Token::parse(&s),
            Err(TokenError::BadCharset { position: 40 })
        );
    }

    #[test]
    fn it_should_reject_a_missing_separator() {
        let token = fixture();
        let mut s = token.expose_secret().to_owned();
        s.replace_range(30..31, "x");
        assert_eq!(Token::parse(&s), Err(TokenError::BadSeparator));
    }

    #[test]
    fn it_should_reject_a_checksum_mismatch() {
        let token = fixture();
        let mut s = token.expose_secret().to_owned();
        let last = if s.ends_with('0') { "1" } else { "0" };
        s.replace_range(TOKEN_LEN - 1.., last);
        assert_eq!(Token::parse(&s), Err(TokenError::ChecksumMismatch));
    }

    #[test]
    fn it_should_reject_an_out_of_range_id_with_a_valid_checksum() {
        let body = format!("kl_live_{}_{}", "z".repeat(ID_LEN), "a".repeat(SECRET_LEN));
        let s = format!("{body}{}", checksum(&body));
        assert_eq!(Token::parse(&s), Err(TokenError::InvalidId));
    }

    #[test]
    fn it_should_parse_and_serialize_environments() {
        assert_eq!("live".parse(), Ok(Environment::Live));
        assert_eq!("test".parse(), Ok(Environment::Test));
        assert!("prod".parse::<Environment>().is_err());
        assert_eq!(
            serde_json::to_string(&Environment::Test).unwrap(),
            "\"test\""
        );
    }

    fn any_env() -> impl Strategy<Value = Environment> {
        prop_oneof![Just(Environment::Live), Just(Environment::Test)]
    }

    proptest! {
        // 10,000 ids per case: a few cases are enough to vary the millisecond.
        #![proptest_config(ProptestConfig::with_cases(8))]

        #[test]
        fn keys_made_at_any_one_millisecond_should_have_distinct_prefixes(
            at in 0u64..(1u64 << 48),
            env in any_env(),
        ) {
            let prefixes: std::collections::HashSet<String> = (0..10_000)
                .map(|_| prefix_of(env, KeyId::new_v7_at(at)))
                .collect();
            prop_assert_eq!(prefixes.len(), 10_000);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn parse_should_round_trip_generate(env in any_env(), id: u128) {
            let key_id = KeyId::from_uuid(Uuid::from_u128(id));
            let token = Token::generate(env, key_id);
            let parsed = Token::parse(token.expose_secret()).unwrap();
            prop_assert_eq!(parsed, ParsedToken { environment: env, key_id });
        }

        #[test]
        fn any_single_character_change_should_fail_parsing(
            env in any_env(),
            secret: [u8; SECRET_BYTES],
            position in 0..TOKEN_LEN,
            replacement: char,
        ) {
            let token = Token::from_parts(env, KeyId::new_v7(), &secret);
            let original = token.expose_secret();
            prop_assume!(!original[position..].starts_with(replacement));
            let mut changed = original.to_owned();
            changed.replace_range(position..position + 1, replacement.encode_utf8(&mut [0; 4]));
            let result = Token::parse(&changed);
            prop_assert!(result.is_err(), "{changed} parsed as {result:?}");
        }

        #[test]
        fn any_single_base62_change_should_fail_parsing(
            secret: [u8; SECRET_BYTES],
            position in ENV_PREFIX_LEN..TOKEN_LEN,
            digit in 0usize..62,
        ) {
            // Replacements from the token's own alphabet get past the charset check, so
            // it is the checksum (or the separator check) that must catch them.
            let token = Token::from_parts(Environment::Live, KeyId::new_v7(), &secret);
            let original = token.expose_secret();
            let replacement = base62::ALPHABET[digit] as char;
            prop_assume!(original.as_bytes()[position] != replacement as u8);
            let mut changed = original.to_owned();
            changed.replace_range(position..position + 1, replacement.encode_utf8(&mut [0; 4]));
            let result = Token::parse(&changed);
            prop_assert!(
                matches!(result, Err(TokenError::ChecksumMismatch | TokenError::BadSeparator)),
                "{result:?}"
            );
        }
    }
}
