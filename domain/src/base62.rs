//! Fixed-length base62 (`0-9A-Za-z`) encoding of big-endian unsigned numbers.
//!
//! Token parts have fixed widths so that a token's layout never depends on its value:
//! numbers are left-padded with `'0'`.

/// The base62 alphabet in ascending digit order.
pub(crate) const ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The value of one base62 digit, or `None` for any other byte.
pub(crate) fn digit_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'Z' => Some(b - b'A' + 10),
        b'a'..=b'z' => Some(b - b'a' + 36),
        _ => None,
    }
}

/// Encodes the big-endian number in `bytes` as exactly `width` base62 digits.
///
/// The caller picks a `width` with `62^width > 256^bytes.len()`; digits that do not fit
/// would be dropped, which the unit tests rule out for every width used here.
pub(crate) fn encode_fixed(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        // Long division of `number` by 62; the remainder is the next digit.
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
    digits.into_iter().map(char::from).collect()
}

/// Decodes base62 digits into a `u128`; `None` on a non-digit or overflow.
pub(crate) fn decode_u128(s: &[u8]) -> Option<u128> {
    s.iter().try_fold(0u128, |acc, &b| {
        acc.checked_mul(62)?
            .checked_add(u128::from(digit_value(b)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_encode_zero_as_all_zero_digits() {
        assert_eq!(encode_fixed(&[0, 0], 4), "0000");
    }

    #[test]
    fn it_should_encode_the_largest_u128_in_22_digits() {
        let s = encode_fixed(&u128::MAX.to_be_bytes(), 22);
        assert_eq!(s.len(), 22);
        assert_eq!(decode_u128(s.as_bytes()), Some(u128::MAX));
        // 62^22 > 2^128, so the first digit is not the largest one.
        assert_ne!(s.as_bytes()[0], b'z');
    }

    #[test]
    fn it_should_fit_256_bits_in_43_digits() {
        let s = encode_fixed(&[0xff; 32], 43);
        assert_eq!(s.len(), 43);
        // 62^42 < 2^256 - 1 < 62^43: every one of the 43 digits is needed, none dropped.
        assert_ne!(s.as_bytes()[0], b'0');
    }

    #[test]
    fn it_should_fit_a_u32_in_6_digits() {
        let s = encode_fixed(&u32::MAX.to_be_bytes(), 6);
        assert_eq!(decode_u128(s.as_bytes()), Some(u128::from(u32::MAX)));
    }

    #[test]
    fn it_should_reject_overflowing_or_foreign_digits() {
        assert_eq!(decode_u128(&[b'z'; 22]), None);
        assert_eq!(decode_u128(b"12-4"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn it_should_round_trip_any_u128(n: u128) {
            let s = encode_fixed(&n.to_be_bytes(), 22);
            proptest::prop_assert_eq!(decode_u128(s.as_bytes()), Some(n));
        }
    }
}
