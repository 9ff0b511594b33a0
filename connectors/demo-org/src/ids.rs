//! Salesforce-style 18-character record ids.
//!
//! A 15-character id is case-sensitive. Salesforce appends three characters that encode, for
//! each 5-character chunk, which positions hold an uppercase letter: bit `i` is set when
//! character `i` of the chunk is `A`-`Z`, and the 5-bit number indexes `A`-`Z` then `0`-`5`.
//! The 18-character form is then unique even when compared case-insensitively.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CHECKSUM_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Number of base-62 digits after the 3-character key prefix.
const COUNTER_DIGITS: usize = 12;

/// Builds the 18-character id of record number `counter` (starting at 1) of the object whose
/// key prefix is `key_prefix` (3 characters, for example `001` for Account).
pub(crate) fn record_id(key_prefix: &str, counter: u64) -> String {
    let mut digits = [b'0'; COUNTER_DIGITS];
    let mut rest = counter;
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    let mut id = String::with_capacity(18);
    id.push_str(key_prefix);
    id.extend(digits.iter().map(|&d| char::from(d)));
    let suffix = checksum_suffix(&id);
    id.push_str(&suffix);
    id
}

/// Computes the 3-character case-checksum suffix of a 15-character id.
pub(crate) fn checksum_suffix(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, byte)| byte.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            char::from(CHECKSUM_ALPHABET[bits])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_known_ids() {
        // Ids in the documented REST response examples carry these suffixes.
        assert_eq!(checksum_suffix("003Aa00000Qx1yZ"), "IAR");
        assert_eq!(checksum_suffix("001Aa00000Hk2lM"), "IAR");
        assert_eq!(checksum_suffix("003Aa00000Qx1z0"), "IAB");
        assert_eq!(checksum_suffix("000000000000000"), "AAA");
        assert_eq!(checksum_suffix("AAAAAAAAAAAAAAA"), "555");
    }

    #[test]
    fn record_id_has_prefix_counter_and_suffix() {
        assert_eq!(record_id("001", 1), "001000000000001AAA");
        assert_eq!(record_id("00Q", 62), "00Q000000000010EAA");
        let id = record_id("006", 61);
        assert_eq!(id.len(), 18);
        assert_eq!(&id[..15], "00600000000000z");
    }
}
