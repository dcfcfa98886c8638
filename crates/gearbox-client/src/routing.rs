//! Which server a job goes to.
//!
//! Jobs with a unique id are placed by **rendezvous (highest-random-weight)
//! hashing**: every server gets a score `hash(server, unique)` and the servers
//! are tried from the highest score down. This has the three properties that
//! make coalescing work across a pool:
//!
//! * every client with the same server list sends a unique to the same server,
//!   whatever order the list was given in (the score depends on the server's
//!   address, not its position);
//! * when that server is down, the unique falls through to the *same* second
//!   choice in every client, so coalescing keeps working during an outage;
//! * adding or removing a server only moves the uniques that scored highest on
//!   it (about 1/n of them), unlike `hash % n`.
//!
//! The hash is FNV-1a finished with a 64-bit mixer: stable across processes,
//! platforms and Rust versions (std's `DefaultHasher` promises none of that),
//! which matters because clients in different processes must agree. Servers
//! are identified by their address as written (`ServerAddr`'s display form),
//! so all clients of a pool should spell the addresses the same way.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// MurmurHash3's 64-bit finaliser: spreads FNV's weak low bits.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The rendezvous score of `server` (its address text) for `key`.
pub fn score(server: &str, key: &[u8]) -> u64 {
    // Length-prefix the server name so ("ab", "c") and ("a", "bc") differ.
    let h = fnv1a(FNV_OFFSET, &(server.len() as u64).to_le_bytes());
    let h = fnv1a(h, server.as_bytes());
    mix(fnv1a(h, key))
}

/// Indices of `servers` in the order to try them for `key`: highest score
/// first, ties (practically impossible) broken by name.
pub fn rendezvous_order<S: AsRef<str>>(servers: &[S], key: &[u8]) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (score(s.as_ref(), key), i))
        .collect();
    scored.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| servers[a.1].as_ref().cmp(servers[b.1].as_ref()))
    });
    scored.into_iter().map(|(_, i)| i).collect()
}

/// Indices starting at `start` and wrapping around: the order for jobs
/// without a unique, with `start` advancing per job (round-robin).
pub fn rotation_order(len: usize, start: usize) -> Vec<usize> {
    (0..len).map(|i| (start + i) % len).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_depend_on_list_order() {
        let a = ["10.0.0.1:4730", "10.0.0.2:4730", "10.0.0.3:4730"];
        let b = ["10.0.0.3:4730", "10.0.0.1:4730", "10.0.0.2:4730"];
        for i in 0..200 {
            let key = format!("job-{i}");
            let from_a: Vec<&str> = rendezvous_order(&a, key.as_bytes())
                .into_iter()
                .map(|i| a[i])
                .collect();
            let from_b: Vec<&str> = rendezvous_order(&b, key.as_bytes())
                .into_iter()
                .map(|i| b[i])
                .collect();
            assert_eq!(from_a, from_b, "{key}");
        }
    }

    #[test]
    fn keys_spread_and_removal_moves_only_the_removed_servers_keys() {
        let three = ["a:1", "b:1", "c:1"];
        let two = ["a:1", "b:1"];
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let key = format!("k{i}");
            let first = rendezvous_order(&three, key.as_bytes())[0];
            counts[first] += 1;
            let second_choice = rendezvous_order(&three, key.as_bytes())[1];
            let without_c = rendezvous_order(&two, key.as_bytes())[0];
            if first != 2 {
                assert_eq!(without_c, first, "{key} moved although its server stayed");
            } else {
                assert_eq!(
                    without_c, second_choice,
                    "{key} did not fall to its 2nd choice"
                );
            }
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn scores_are_pinned() {
        // A change here breaks routing agreement between clients of different
        // versions sharing a pool: it must never happen by accident.
        assert_eq!(score("x", b""), 16045376812502575526);
        assert_eq!(
            rendezvous_order(&["s1:4730", "s2:4730", "s3:4730"], b"alpha"),
            PINNED_ALPHA
        );
    }

    const PINNED_ALPHA: [usize; 3] = [1, 0, 2];

    #[test]
    fn rotation_wraps() {
        assert_eq!(rotation_order(3, 4), vec![1, 2, 0]);
    }
}
