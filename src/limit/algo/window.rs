//! Window indices stored modulo 2^bits, and the two packings the window algorithms share.
//!
//! A stored index is compared with the current one by modular distance. An index a little
//! *ahead* of the clock means the clock stepped back: the stored window stays in force (stricter,
//! never looser). Ahead by more than a quarter of the index space is read as a very old window:
//! for one-second windows (25-bit index) that is a backward step of up to 97 days handled, and a
//! key left idle over 291 days without being reclaimed is read as stepped back (stricter).

use crate::core::clock::Nanos;

/// Where a stored window stands relative to the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Position {
    /// The stored window is the current one.
    Current,
    /// The stored window ended `n` windows ago (n >= 1).
    Past(u64),
    /// The stored window lies `n` windows ahead of the clock (the clock stepped back).
    Ahead(u64),
}

/// Locates a stored index (mod 2^bits) against the current full window number `w`.
pub(crate) fn locate(stored: u64, w: u64, bits: u32) -> Position {
    let m = 1u64 << bits;
    let d = w.wrapping_sub(stored) & (m - 1);
    let ahead = (m - d) & (m - 1);
    if d == 0 {
        Position::Current
    } else if ahead <= m >> 2 {
        Position::Ahead(ahead)
    } else {
        Position::Past(d)
    }
}

/// The effective window and "now" for a stored window: a window ahead of the clock is treated
/// as if the clock were at its start.
pub(crate) fn effective(pos: Position, w: u64, period: u64, now: Nanos) -> (u64, Nanos) {
    match pos {
        Position::Ahead(n) => {
            let ew = w + n;
            (ew, now.max(ew.saturating_mul(period)))
        }
        _ => (w, now),
    }
}

/// One counter: `[index: 39][count: 24]`.
pub(crate) mod single {
    /// Index bits.
    pub const IDX_BITS: u32 = 39;
    /// Count bits.
    pub const COUNT_BITS: u32 = 24;
    /// Largest count.
    pub const MAX_COUNT: u64 = (1 << COUNT_BITS) - 1;

    #[inline]
    pub fn pack(idx: u64, count: u64) -> u64 {
        ((idx & ((1 << IDX_BITS) - 1)) << COUNT_BITS) | (count & MAX_COUNT)
    }

    #[inline]
    pub fn unpack(s: u64) -> (u64, u64) {
        ((s >> COUNT_BITS) & ((1 << IDX_BITS) - 1), s & MAX_COUNT)
    }
}

/// Two counters, this window and the previous one: `[index: 25][current: 19][previous: 19]`.
pub(crate) mod pair {
    /// Index bits.
    pub const IDX_BITS: u32 = 25;
    /// Bits per count.
    pub const COUNT_BITS: u32 = 19;
    /// Largest count.
    pub const MAX_COUNT: u64 = (1 << COUNT_BITS) - 1;

    #[inline]
    pub fn pack(idx: u64, cur: u64, prev: u64) -> u64 {
        ((idx & ((1 << IDX_BITS) - 1)) << (2 * COUNT_BITS))
            | ((cur & MAX_COUNT) << COUNT_BITS)
            | (prev & MAX_COUNT)
    }

    #[inline]
    pub fn unpack(s: u64) -> (u64, u64, u64) {
        (
            (s >> (2 * COUNT_BITS)) & ((1 << IDX_BITS) - 1),
            (s >> COUNT_BITS) & MAX_COUNT,
            s & MAX_COUNT,
        )
    }

    /// The (window, current, previous) counts at full window `w`, rolling the stored pair
    /// forward; returns the effective window and now.
    #[inline]
    pub fn roll(s: u64, w: u64, period: u64, now: u64) -> (u64, u64, u64, u64) {
        let (idx, cur, prev) = unpack(s);
        if cur == 0 && prev == 0 {
            // Nothing counted: a fresh key, whatever window it names.
            return (w, 0, 0, now);
        }
        let pos = super::locate(idx, w, IDX_BITS);
        let (ew, now_e) = super::effective(pos, w, period, now);
        let (c, p) = match pos {
            super::Position::Current | super::Position::Ahead(_) => (cur, prev),
            super::Position::Past(1) => (0, cur),
            super::Position::Past(_) => (0, 0),
        };
        (ew, c, p, now_e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_classifies_modular_distance() {
        assert_eq!(locate(5, 5, 8), Position::Current);
        assert_eq!(locate(4, 5, 8), Position::Past(1));
        assert_eq!(locate(6, 5, 8), Position::Ahead(1));
        // Wrapped: stored 255, now 1 (mod 256) is two windows ago.
        assert_eq!(locate(255, 257, 8), Position::Past(2));
        // Far ahead is read as long past.
        assert_eq!(locate(100, 5, 8), Position::Past(161));
    }

    #[test]
    fn packings_round_trip() {
        let s = single::pack(123_456, single::MAX_COUNT);
        assert_eq!(single::unpack(s), (123_456, single::MAX_COUNT));
        assert!(s < 1 << 63);
        let s = pair::pack(1 << 24, 7, pair::MAX_COUNT);
        assert_eq!(pair::unpack(s), (1 << 24, 7, pair::MAX_COUNT));
        assert!(s < 1 << 63);
    }
}
