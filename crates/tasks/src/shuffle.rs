//! A seeded Fisher–Yates permutation pinned to this crate, not to `rand`'s shuffle.

use rand::RngCore;

/// A permutation of `0..n` from `seeded_rng(seed)`.
///
/// Fisher–Yates from the top: for i = n−1 down to 1, j = ⌊u·(i+1) / 2⁶⁴⌋ with u the next
/// `u64` of ChaCha8, then swap entries i and j. Written out here (rather than
/// `SliceRandom::shuffle`) so the digits' split and permutation, which define the data set,
/// cannot change with a `rand` release. The multiply-shift map has a bias below 2⁻⁵⁴.
pub(crate) fn fixed_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = rnnlab_core::seeded_rng(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_deterministic_permutation() {
        let p = fixed_permutation(100, 3);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(p, fixed_permutation(100, 3));
        assert_ne!(p, fixed_permutation(100, 4));
        assert_ne!(p, (0..100).collect::<Vec<_>>());
        assert!(fixed_permutation(0, 1).is_empty());
        assert_eq!(fixed_permutation(1, 1), vec![0]);
    }
}
