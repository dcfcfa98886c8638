//! Row keys: the `unique_key` column of a queued job.
//!
//! gearmand keys its rows by (unique, function), so background jobs with an
//! empty unique, or with `-`, share one row: the second overwrites the first
//! and completing either deletes both. gearbox gives each such job a key of
//! its own, `<unique>~gearbox-anon~<run><job>`: the unique it was submitted
//! with (empty or `-`), a marker, a number drawn at start for this run and the
//! job's handle number, in hex. The key is 46 or 47 bytes, so it fits
//! gearmand's `VARCHAR(64)` columns, and gearmand reading such a row simply
//! sees a job with a long unique. gearbox reading it restores the unique.

/// Between the unique a job was submitted with and the hex numbers.
const MARK: &[u8] = b"~gearbox-anon~";
const HEX_DIGITS: usize = 32;

/// A job submitted with this unique never has a row keyed by it.
pub fn is_anonymous(unique: &[u8]) -> bool {
    unique.is_empty() || unique == b"-"
}

/// The key of an anonymous job created in the run numbered `run`.
pub fn anonymous_key(unique: &[u8], run: u64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(unique.len() + MARK.len() + HEX_DIGITS);
    key.extend_from_slice(unique);
    key.extend_from_slice(MARK);
    push_hex(&mut key, run);
    push_hex(&mut key, id);
    key
}

/// Appends `n` as 16 lower-case hex digits. (`format!` showed in profiles:
/// every anonymous background submit makes a key.)
fn push_hex(out: &mut Vec<u8>, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend(
        (0..16)
            .rev()
            .map(|i| DIGITS[((n >> (i * 4)) & 0xf) as usize]),
    );
}

/// Splits an anonymous key into the job's unique and its run number.
fn parse_anonymous(key: &[u8]) -> Option<(&[u8], u64)> {
    let split = key.len().checked_sub(MARK.len() + HEX_DIGITS)?;
    let (unique, rest) = key.split_at(split);
    let digits = rest.strip_prefix(MARK)?;
    if !is_anonymous(unique)
        || !digits
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let run = std::str::from_utf8(&digits[..16]).ok()?;
    Some((unique, u64::from_str_radix(run, 16).ok()?))
}

/// The unique a row's job was submitted with.
pub fn logical_unique(key: &[u8]) -> &[u8] {
    parse_anonymous(key).map_or(key, |(unique, _)| unique)
}

/// The run that wrote an anonymous key; `None` for any other key.
pub fn run_of(key: &[u8]) -> Option<u64> {
    parse_anonymous(key).map(|(_, run)| run)
}

/// The key the job's row has when this run created it.
pub fn natural_key(unique: &[u8], run: u64, id: u64) -> Vec<u8> {
    if is_anonymous(unique) {
        anonymous_key(unique, run, id)
    } else {
        unique.to_vec()
    }
}

/// A number for this run, different from every earlier run's with near
/// certainty: the clock, the pid and the std library's random hash keys.
pub fn new_run_number() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_keys_round_trip_and_fit_gearmand_columns() {
        for unique in [&b""[..], b"-"] {
            let key = anonymous_key(unique, 0xdead_beef, 42);
            assert!(key.len() <= 64, "{}", key.len());
            assert_eq!(logical_unique(&key), unique);
            assert_eq!(run_of(&key), Some(0xdead_beef));
        }
        assert_eq!(
            anonymous_key(b"", 1, 2),
            b"~gearbox-anon~00000000000000010000000000000002".to_vec()
        );
    }

    #[test]
    fn real_uniques_are_their_own_keys() {
        for key in [
            &b"order-17"[..],
            b"~gearbox-anon~zz",
            b"x~gearbox-anon~00000000000000010000000000000002",
        ] {
            assert_eq!(logical_unique(key), key);
            assert_eq!(run_of(key), None);
        }
        assert_eq!(natural_key(b"u", 9, 9), b"u".to_vec());
        assert_ne!(natural_key(b"", 9, 9), natural_key(b"", 9, 10));
    }
}
