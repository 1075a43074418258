//! Value objects: validated newtypes built with `parse()`.
//!
//! Each type also validates when deserialized, so a JSON body or an event can never
//! carry a value that `parse()` would have refused.
//!
//! The values a command sets relative to its clock or for one command only ([`Expiry`],
//! [`GracePeriod`], [`RevocationReason`]) are checked here too, once: the aggregate's
//! `decide` checks them against its command's clock, and the HTTP layer and the CLI call
//! the same `parse` to name a bad field before anything is loaded.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Longest key or organisation name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left after trimming whitespace.
    #[error("name must not be empty")]
    Empty,
    /// More than [`MAX_NAME_CHARS`] characters as sent.
    #[error("name is {actual} characters long, at most {max} are allowed")]
    TooLong {
        /// Characters given, as sent (the limit counts what the client sent, as the
        /// OpenAPI document's `maxLength` does, not what is left after trimming).
        actual: usize,
        /// [`MAX_NAME_CHARS`].
        max: usize,
    },
    /// A control character (newline, tab, NUL, ...), which would garble lists and logs.
    #[error("name must not contain control characters")]
    ControlCharacter,
}

fn parse_name(input: &str) -> Result<String, NameError> {
    let trimmed = input.trim();
    let chars = input.chars().count();
    if trimmed.is_empty() {
        Err(NameError::Empty)
    } else if chars > MAX_NAME_CHARS {
        Err(NameError::TooLong {
            actual: chars,
            max: MAX_NAME_CHARS,
        })
    } else if check_single_line(trimmed).is_err() {
        Err(NameError::ControlCharacter)
    } else {
        Ok(trimmed.to_owned())
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Trims surrounding whitespace and checks 1 to 100 characters, no control
            /// characters.
            pub fn parse(input: &str) -> Result<Self, NameError> {
                parse_name(input).map(Self)
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }
    };
}

name_type!(
    /// A key's human name: trimmed, 1 to 100 characters.
    KeyName
);
name_type!(
    /// An organisation's name: trimmed, 1 to 100 characters.
    OrgName
);

/// A control character in a text field: NUL (which Postgres `text` and `jsonb` cannot
/// hold), escape sequences, C1 controls. Refused the same way on every back end, before
/// anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must not contain control characters (found U+{code:04X} at character {index})")]
pub struct ControlCharError {
    /// The offending character's code point.
    pub code: u32,
    /// Its position, in characters from the start.
    pub index: usize,
}

fn first_control(input: &str, allowed: &[char]) -> Result<(), ControlCharError> {
    match input
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !allowed.contains(c))
    {
        Some((index, c)) => Err(ControlCharError {
            code: u32::from(c),
            index,
        }),
        None => Ok(()),
    }
}

/// Checks a one-line text field (a name, a title, a kind): no control character at all,
/// not even a tab or a newline.
pub fn check_single_line(input: &str) -> Result<(), ControlCharError> {
    first_control(input, &[])
}

/// Checks a free-text field (a description, a revocation reason): tabs and line breaks
/// (`\t`, `\n`, `\r`) are text; every other control character (NUL first of all) is
/// refused.
pub fn check_multi_line(input: &str) -> Result<(), ControlCharError> {
    first_control(input, &['\t', '\n', '\r'])
}

/// Why an IP range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid IP address or CIDR {input:?}: expected e.g. 203.0.113.0/24, 2001:db8::/32 or 198.51.100.7"
)]
pub struct CidrError {
    /// What was given.
    pub input: String,
}

/// An IPv4 or IPv6 network. A bare address is a network of one (`/32` or `/128`).
///
/// Host bits are cleared when parsing (`10.1.2.3/8` becomes `10.0.0.0/8`), so equal
/// networks compare equal. Displays and serializes as `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parses `a.b.c.d/n`, `x:y::/n`, or a bare address.
    pub fn parse(input: &str) -> Result<Cidr, CidrError> {
        let s = input.trim();
        let net = if s.contains('/') {
            s.parse::<IpNet>().ok()
        } else {
            s.parse::<IpAddr>().ok().map(IpNet::from)
        };
        net.map(|n| Cidr(n.trunc())).ok_or_else(|| CidrError {
            input: input.to_owned(),
        })
    }

    /// Whether `addr` is inside this network. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`, as seen on dual-stack sockets) counts as its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        if self.0.contains(&addr) {
            return true;
        }
        match (self.0, addr) {
            (IpNet::V4(net), IpAddr::V6(v6)) => {
                v6.to_ipv4_mapped().is_some_and(|v4| net.contains(&v4))
            }
            _ => false,
        }
    }

    /// The underlying network.
    pub fn as_ipnet(&self) -> IpNet {
        self.0
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Cidr::parse(&s)
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> String {
        cidr.to_string()
    }
}

/// The networks a key may be used from: sorted and deduplicated. Empty = anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AllowedIps(BTreeSet<Cidr>);

impl AllowedIps {
    /// No restriction.
    pub fn any() -> AllowedIps {
        AllowedIps(BTreeSet::new())
    }

    /// Parses every entry; the first bad one is the error.
    pub fn parse<I, S>(entries: I) -> Result<AllowedIps, CidrError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        entries
            .into_iter()
            .map(|e| Cidr::parse(e.as_ref()))
            .collect()
    }

    /// Whether a call from `addr` is allowed: always when the list is empty.
    pub fn permits(&self, addr: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|c| c.contains(addr))
    }

    /// Whether no restriction is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The networks in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = Cidr> + '_ {
        self.0.iter().copied()
    }

    /// The networks as strings, in sorted order.
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|c| c.to_string()).collect()
    }
}

impl FromIterator<Cidr> for AllowedIps {
    fn from_iter<T: IntoIterator<Item = Cidr>>(iter: T) -> Self {
        AllowedIps(iter.into_iter().collect())
    }
}

/// Smallest per-key rate limit override.
pub const MIN_RATE_LIMIT: u32 = 1;
/// Largest per-key rate limit override.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// A rate limit override outside `1..=1_000_000` requests per minute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "rate limit must be between {MIN_RATE_LIMIT} and {MAX_RATE_LIMIT} requests per minute, got {0}"
)]
pub struct RateLimitError(pub u64);

/// A key's own rate limit, replacing its plan's: 1 to 1,000,000 requests per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u32")]
pub struct RateLimit(u32);

impl RateLimit {
    /// Checks the range.
    pub fn parse(per_minute: u64) -> Result<RateLimit, RateLimitError> {
        u32::try_from(per_minute)
            .ok()
            .filter(|n| (MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(n))
            .map(RateLimit)
            .ok_or(RateLimitError(per_minute))
    }

    /// Requests per minute.
    pub const fn per_minute(self) -> u32 {
        self.0
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/min", self.0)
    }
}

impl TryFrom<u64> for RateLimit {
    type Error = RateLimitError;

    fn try_from(n: u64) -> Result<Self, Self::Error> {
        RateLimit::parse(n)
    }
}

impl From<RateLimit> for u32 {
    fn from(limit: RateLimit) -> u32 {
        limit.0
    }
}

/// An expiry that is not after the moment it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be in the future")]
pub struct ExpiryError;

/// When a key stops working, as a command sets it: strictly after the command's clock,
/// so that no command creates a key already expired or gives a key an expiry in the past.
/// (A stored expiry is a plain instant: it is in the past once the key has expired.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(DateTime<Utc>);

impl Expiry {
    /// Accepts `at` if it is after `now`.
    pub fn parse(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<Expiry, ExpiryError> {
        if at > now {
            Ok(Expiry(at))
        } else {
            Err(ExpiryError)
        }
    }

    /// The instant.
    pub const fn at(self) -> DateTime<Utc> {
        self.0
    }
}

/// A grace period outside 0 to [`GracePeriod::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be from 0 to {} seconds (30 days)", GracePeriod::MAX.num_seconds())]
pub struct GracePeriodError;

/// How long a rotated key keeps working after its rotation: 0 to 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GracePeriod(TimeDelta);

impl GracePeriod {
    /// The longest grace period.
    pub const MAX: TimeDelta = TimeDelta::days(30);

    /// The grace period of a rotation that names none: an hour.
    pub const DEFAULT: GracePeriod = GracePeriod(TimeDelta::hours(1));

    /// Accepts 0 to [`GracePeriod::MAX`].
    pub fn new(period: TimeDelta) -> Result<GracePeriod, GracePeriodError> {
        if period >= TimeDelta::zero() && period <= GracePeriod::MAX {
            Ok(GracePeriod(period))
        } else {
            Err(GracePeriodError)
        }
    }

    /// Accepts 0 to 2,592,000 seconds.
    pub fn from_seconds(seconds: i64) -> Result<GracePeriod, GracePeriodError> {
        TimeDelta::try_seconds(seconds)
            .ok_or(GracePeriodError)
            .and_then(GracePeriod::new)
    }

    /// The period.
    pub const fn as_delta(self) -> TimeDelta {
        self.0
    }

    /// The period in whole seconds.
    pub const fn seconds(self) -> i64 {
        self.0.num_seconds()
    }
}

/// Longest revocation reason, in characters (after trimming).
pub const MAX_REASON_CHARS: usize = 500;

/// Why a revocation reason was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonError {
    /// More than [`MAX_REASON_CHARS`] characters after trimming.
    #[error("must be at most {max} characters")]
    TooLong {
        /// [`MAX_REASON_CHARS`].
        max: usize,
    },
    /// A control character other than a tab or a line break ([`check_multi_line`]).
    #[error("{0}")]
    ControlCharacter(ControlCharError),
}

/// Why a key was revoked: free text, trimmed, at most [`MAX_REASON_CHARS`] characters;
/// tabs and line breaks are text, other control characters are refused. A blank reason is
/// no reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RevocationReason(String);

impl RevocationReason {
    /// Trims `input`: `Ok(None)` when nothing is left, else the checked reason.
    pub fn parse(input: &str) -> Result<Option<RevocationReason>, ReasonError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        // Counted as sent, like the document's `maxLength`.
        if input.chars().count() > MAX_REASON_CHARS {
            return Err(ReasonError::TooLong {
                max: MAX_REASON_CHARS,
            });
        }
        check_multi_line(trimmed).map_err(ReasonError::ControlCharacter)?;
        Ok(Some(RevocationReason(trimmed.to_owned())))
    }

    /// [`RevocationReason::parse`] of an optional reason: none given is no reason.
    pub fn parse_optional(input: Option<&str>) -> Result<Option<RevocationReason>, ReasonError> {
        input.map_or(Ok(None), RevocationReason::parse)
    }

    /// The reason.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<RevocationReason> for String {
    fn from(reason: RevocationReason) -> String {
        reason.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_trim_a_key_name() {
        assert_eq!(
            KeyName::parse("  ci deploy \n").unwrap().as_str(),
            "ci deploy"
        );
    }

    #[test]
    fn it_should_refuse_an_empty_or_blank_name() {
        assert_eq!(KeyName::parse(""), Err(NameError::Empty));
        assert_eq!(KeyName::parse(" \t "), Err(NameError::Empty));
    }

    #[test]
    fn it_should_count_characters_not_bytes() {
        assert!(KeyName::parse(&"é".repeat(100)).is_ok());
        assert_eq!(
            KeyName::parse(&"a".repeat(101)),
            Err(NameError::TooLong {
                actual: 101,
                max: 100
            })
        );
    }

    #[test]
    fn it_should_refuse_control_characters_and_say_why() {
        let err = KeyName::parse("a\u{0}b").unwrap_err();
        assert_eq!(err, NameError::ControlCharacter);
        assert!(err.to_string().contains("control"));
    }

    #[test]
    fn it_should_validate_names_when_deserializing() {
        assert!(serde_json::from_str::<KeyName>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<OrgName>("\"acme\"")
                .unwrap()
                .as_str(),
            "acme"
        );
    }

    #[test]
    fn it_should_parse_cidrs_and_bare_addresses() {
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            Cidr::parse("198.51.100.7").unwrap().to_string(),
            "198.51.100.7/32"
        );
        assert_eq!(
            Cidr::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
    }

    #[test]
    fn it_should_refuse_bad_cidrs() {
        for bad in [
            "",
            "10.0.0.0/33",
            "300.1.1.1",
            "10.0.0.0/",
            "::/129",
            "example.com",
        ] {
            let err = Cidr::parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn it_should_tell_whether_an_address_is_inside() {
        let net = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(net.contains("203.0.113.9".parse().unwrap()));
        assert!(!net.contains("203.0.114.1".parse().unwrap()));
        assert!(net.contains("::ffff:203.0.113.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::42".parse().unwrap()));
        assert!(!v6.contains("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn it_should_permit_anywhere_when_no_ips_are_set() {
        let addr = "192.0.2.1".parse().unwrap();
        assert!(AllowedIps::any().permits(addr));
        let only = AllowedIps::parse(["10.0.0.0/8", "10.0.0.1"]).unwrap();
        assert!(!only.permits(addr));
        assert!(only.permits("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn it_should_sort_and_deduplicate_allowed_ips() {
        let ips = AllowedIps::parse(["10.0.0.7/8", "10.0.0.0/8", "1.1.1.1"]).unwrap();
        assert_eq!(ips.to_strings(), ["1.1.1.1/32", "10.0.0.0/8"]);
        assert_eq!(
            serde_json::to_string(&ips).unwrap(),
            r#"["1.1.1.1/32","10.0.0.0/8"]"#
        );
        assert!(serde_json::from_str::<AllowedIps>(r#"["nope"]"#).is_err());
    }

    #[test]
    fn it_should_bound_the_rate_limit() {
        assert_eq!(RateLimit::parse(1).unwrap().per_minute(), 1);
        assert_eq!(RateLimit::parse(1_000_000).unwrap().per_minute(), 1_000_000);
        assert_eq!(RateLimit::parse(0), Err(RateLimitError(0)));
        assert_eq!(RateLimit::parse(1_000_001), Err(RateLimitError(1_000_001)));
        assert_eq!(RateLimit::parse(u64::MAX), Err(RateLimitError(u64::MAX)));
        assert!(serde_json::from_str::<RateLimit>("0").is_err());
        assert_eq!(
            serde_json::to_string(&RateLimit::parse(5).unwrap()).unwrap(),
            "5"
        );
    }

    #[test]
    fn it_should_refuse_nul_and_escape_in_one_line_text_and_name_the_position() {
        assert_eq!(
            check_single_line("ab\u{0}c"),
            Err(ControlCharError { code: 0, index: 2 })
        );
        assert!(check_single_line("a\u{1b}[31m").is_err());
        assert!(check_single_line("a\tb").is_err());
        assert!(check_single_line("a\u{85}b").is_err(), "C1 controls too");
        assert!(check_single_line("Pump é 7 ✓").is_ok());
    }

    #[test]
    fn it_should_allow_line_breaks_and_tabs_but_not_nul_in_free_text() {
        assert!(check_multi_line("line one\r\nline two\tend").is_ok());
        let err = check_multi_line("leaked\u{0}").unwrap_err();
        assert_eq!(err.code, 0);
        assert!(err.to_string().contains("U+0000"), "{err}");
        assert!(check_multi_line("bell\u{7}").is_err());
    }

    // ------------------------------------------------------------------ command values

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn it_should_accept_only_an_expiry_after_the_commands_clock() {
        assert_eq!(Expiry::parse(t(1), t(0)).map(Expiry::at), Ok(t(1)));
        assert_eq!(
            Expiry::parse(t(0), t(0)),
            Err(ExpiryError),
            "now is not the future"
        );
        assert_eq!(Expiry::parse(t(-1), t(0)), Err(ExpiryError));
        assert_eq!(ExpiryError.to_string(), "must be in the future");
    }

    #[test]
    fn it_should_bound_the_grace_period_to_thirty_days() {
        assert_eq!(
            GracePeriod::from_seconds(0).map(GracePeriod::seconds),
            Ok(0)
        );
        assert_eq!(
            GracePeriod::from_seconds(2_592_000).map(GracePeriod::as_delta),
            Ok(GracePeriod::MAX)
        );
        assert_eq!(GracePeriod::from_seconds(2_592_001), Err(GracePeriodError));
        assert_eq!(GracePeriod::from_seconds(-1), Err(GracePeriodError));
        assert_eq!(GracePeriod::from_seconds(i64::MAX), Err(GracePeriodError));
        assert_eq!(GracePeriod::new(TimeDelta::days(31)), Err(GracePeriodError));
        assert_eq!(GracePeriod::DEFAULT.seconds(), 3600);
        assert!(GracePeriodError.to_string().contains("2592000"));
    }

    #[test]
    fn it_should_trim_a_reason_and_treat_a_blank_one_as_none() {
        assert_eq!(
            RevocationReason::parse("  leaked \n")
                .unwrap()
                .unwrap()
                .as_str(),
            "leaked"
        );
        assert_eq!(RevocationReason::parse(" \t\n "), Ok(None));
        assert_eq!(RevocationReason::parse_optional(None), Ok(None));
    }

    #[test]
    fn it_should_count_a_reasons_characters_as_sent_like_the_documents_max_length() {
        assert!(
            RevocationReason::parse(&"é".repeat(MAX_REASON_CHARS))
                .unwrap()
                .is_some()
        );
        let padded = format!(" {}", "é".repeat(MAX_REASON_CHARS));
        assert_eq!(
            RevocationReason::parse(&padded),
            Err(ReasonError::TooLong {
                max: MAX_REASON_CHARS
            })
        );
        assert_eq!(
            RevocationReason::parse(&"x".repeat(MAX_REASON_CHARS + 1)),
            Err(ReasonError::TooLong {
                max: MAX_REASON_CHARS
            })
        );
    }

    #[test]
    fn it_should_keep_line_breaks_in_a_reason_but_refuse_a_nul() {
        assert_eq!(
            RevocationReason::parse("leaked:\r\n\tsee INC-42")
                .unwrap()
                .unwrap()
                .as_str(),
            "leaked:\r\n\tsee INC-42"
        );
        assert_eq!(
            RevocationReason::parse("leaked\u{0}"),
            Err(ReasonError::ControlCharacter(ControlCharError {
                code: 0,
                index: 6
            }))
        );
    }

    proptest::proptest! {
        /// Whatever the text, an accepted reason is trimmed, not blank, within the length,
        /// and holds no control character but tabs and line breaks; and parsing it again
        /// gives it back.
        #[test]
        fn an_accepted_reason_should_always_be_a_valid_reason(input in "\\PC{0,10}[ \t\n\u{0}\u{7}]{0,2}\\PC{0,600}") {
            if let Ok(Some(reason)) = RevocationReason::parse(&input) {
                let text = reason.as_str();
                proptest::prop_assert_eq!(text, text.trim());
                proptest::prop_assert!(!text.is_empty());
                proptest::prop_assert!(text.chars().count() <= MAX_REASON_CHARS);
                proptest::prop_assert!(check_multi_line(text).is_ok());
                proptest::prop_assert_eq!(RevocationReason::parse(text), Ok(Some(reason.clone())));
            }
        }

        /// A grace period is accepted exactly when it lies in 0 to 30 days.
        #[test]
        fn a_grace_period_should_be_accepted_exactly_within_its_bounds(seconds in -10_000i64..2_700_000) {
            proptest::prop_assert_eq!(
                GracePeriod::from_seconds(seconds).is_ok(),
                (0..=2_592_000).contains(&seconds)
            );
        }

        /// An expiry is accepted exactly when it is after the clock.
        #[test]
        fn an_expiry_should_be_accepted_exactly_when_it_is_in_the_future(at in -100i64..100, now in -100i64..100) {
            proptest::prop_assert_eq!(Expiry::parse(t(at), t(now)).is_ok(), at > now);
        }
    }
}
