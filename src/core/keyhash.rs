//! The keyed 64-bit hash that reduces a client key to its fingerprint.
//!
//! Fingerprints are persisted (a store saves each key's state under its fingerprint), so the
//! hash is defined here rather than borrowed from a hashing crate that does not promise the same
//! output across its versions: a dependency update must never silently re-key every saved state.
//! Changing this function changes the store format (see the policy signature in `limiter.rs`).
//!
//! It is a folded-multiply hash in the wyhash family, keyed by a 128-bit secret drawn at random
//! per limiter (and saved with its store), so a client cannot aim keys at one bucket without
//! learning the secret. Keys of up to 16 bytes (IPv4 and IPv6 prefixes, most user ids and API
//! key ids) take two dependent multiplies; the check's memory access waits on this hash.

/// 128-bit multiply, folded to 64 bits: every input bit reaches the middle of the product.
#[inline(always)]
fn fold(x: u64, y: u64) -> u64 {
    let m = u128::from(x) * u128::from(y);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Odd constants with well-spread bits (from wyhash).
const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

#[inline(always)]
fn read8(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[inline(always)]
fn read4(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u64::from(u32::from_le_bytes(x))
}

/// The hash of `key` under the secret `(k0, k1)`.
#[inline(always)]
pub(crate) fn hash(k0: u64, k1: u64, key: &[u8]) -> u64 {
    let n = key.len();
    // Two words covering the key; the length goes into the mix, so keys that read the same
    // words at different lengths still differ.
    let (a, b, seed) = if n <= 16 {
        let (a, b) = match n {
            8..=16 => (read8(key, 0), read8(key, n - 8)),
            4..=7 => ((read4(key, 0) << 32) | read4(key, n - 4), 0),
            1..=3 => (
                (u64::from(key[0]) << 16) | (u64::from(key[n / 2]) << 8) | u64::from(key[n - 1]),
                0,
            ),
            _ => (0, 0),
        };
        (a, b, k0)
    } else {
        long(k0, k1, key)
    };
    let h = fold(a ^ seed ^ P0, b ^ k1 ^ (n as u64));
    fold(h ^ P1, k0 ^ P2)
}

/// Keys longer than 16 bytes: 16 bytes at a time into the seed, the last 16 left for the mix.
#[inline(never)]
fn long(k0: u64, k1: u64, key: &[u8]) -> (u64, u64, u64) {
    let n = key.len();
    let mut seed = k0;
    let mut at = 0;
    while n - at > 16 {
        seed = fold(read8(key, at) ^ P1 ^ seed, read8(key, at + 8) ^ k1);
        at += 16;
    }
    (read8(key, n - 16), read8(key, n - 8), seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K0: u64 = 0x0123_4567_89ab_cdef;
    const K1: u64 = 0xfedc_ba98_7654_3210;

    /// Keys of every length class, including ones equal but for length or one byte.
    fn keys() -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = (0..=40).map(|n| (0..n as u8).collect()).collect();
        keys.extend((0..=40).map(|n| vec![0u8; n]));
        keys.extend((1..=40).map(|n| {
            let mut k = vec![0u8; n];
            k[n - 1] = 1;
            k
        }));
        keys.sort();
        keys.dedup();
        keys
    }

    #[test]
    fn distinct_keys_get_distinct_hashes() {
        let keys = keys();
        let mut hashes: Vec<u64> = keys.iter().map(|k| hash(K0, K1, k)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), keys.len());
    }

    #[test]
    fn the_secret_changes_every_hash() {
        for k in keys() {
            assert_ne!(hash(K0, K1, &k), hash(K0 ^ 1, K1, &k), "{k:?}");
            assert_ne!(hash(K0, K1, &k), hash(K0, K1 ^ (1 << 63), &k), "{k:?}");
        }
    }

    /// Flipping any one bit of a key flips about half of the hash's bits, on average over many
    /// keys: the low bits pick buckets and the high bits the second bucket, so all must move.
    #[test]
    fn one_flipped_bit_moves_half_the_output() {
        for len in [4usize, 8, 13, 16, 24, 40] {
            let mut flips = [0u32; 64];
            let mut trials = 0u32;
            for seed in 0..200u64 {
                let key: Vec<u8> = (0..len)
                    .map(|i| (fold(seed ^ P0, i as u64 ^ P1) >> 7) as u8)
                    .collect();
                let h = hash(K0, K1, &key);
                for bit in 0..len * 8 {
                    let mut k = key.clone();
                    k[bit / 8] ^= 1 << (bit % 8);
                    let d = h ^ hash(K0, K1, &k);
                    for (o, f) in flips.iter_mut().enumerate() {
                        *f += ((d >> o) & 1) as u32;
                    }
                    trials += 1;
                }
            }
            for (o, f) in flips.iter().enumerate() {
                let p = f64::from(*f) / f64::from(trials);
                assert!((0.45..0.55).contains(&p), "len {len}, output bit {o}: {p}");
            }
        }
    }

    /// Sequential keys (IPv4 addresses in one subnet, numeric user ids) spread evenly over the
    /// buckets a table picks with the low bits.
    #[test]
    fn sequential_keys_fill_buckets_evenly() {
        const BUCKETS: usize = 1 << 10;
        const KEYS: u32 = 1 << 16;
        let mut counts = [0u32; BUCKETS];
        for i in 0..KEYS {
            counts[hash(K0, K1, &i.to_be_bytes()) as usize % BUCKETS] += 1;
        }
        let expected = f64::from(KEYS) / BUCKETS as f64;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum();
        // 1023 degrees of freedom: the 99.9th percentile is about 1170.
        assert!(chi2 < 1170.0, "chi-squared {chi2}");
    }

    /// The persisted format: this value may change only together with the policy signature's
    /// version, which makes stores drop state saved under the old hash instead of misreading it.
    #[test]
    fn the_hash_is_the_persisted_one() {
        assert_eq!(hash(K0, K1, b"203.0.113.9"), 0xb25a_01c9_c840_eb55);
    }
}
