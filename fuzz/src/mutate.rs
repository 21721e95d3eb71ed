//! A small deterministic mutation engine, for the stable smoke test (no libFuzzer there).
//!
//! It is not coverage-guided: it derives inputs from the seed corpus by stacking a few
//! libFuzzer-style mutations (bit flips, interesting values, inserted, erased, duplicated and
//! spliced ranges), drawing from a seeded generator so every run tries the same inputs.

/// SplitMix64: a tiny seeded generator, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// Byte values that often sit on boundaries (lengths, varints, flags).
const INTERESTING: [u8; 10] = [0, 1, 2, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x1a, 0x22];

/// One mutation of `data` in place; `other` is a second corpus entry for splicing.
fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], max_len: usize) {
    match rng.below(10) {
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = rng.byte();
        }
        2 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        3 if data.len() < max_len => {
            let i = rng.below(data.len() + 1);
            let n = 1 + rng.below(8);
            for _ in 0..n {
                data.insert(i, rng.byte());
            }
        }
        4 if !data.is_empty() => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(16));
            data.drain(i..i + n);
        }
        5 if !data.is_empty() && data.len() < max_len => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(32));
            let copy: Vec<u8> = data[i..i + n].to_vec();
            let at = rng.below(data.len() + 1);
            data.splice(at..at, copy);
        }
        6 if !other.is_empty() => {
            // Splice: our head, the other's tail.
            let cut = rng.below(data.len() + 1);
            let from = rng.below(other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        7 if data.len() >= 2 => {
            let i = rng.below(data.len() - 1);
            let v: u16 = [0, 1, 0x7fff, 0x8000, 0xffff][rng.below(5)];
            data[i..i + 2].copy_from_slice(&v.to_le_bytes());
        }
        8 if !data.is_empty() => {
            let n = rng.below(data.len());
            data.truncate(n);
        }
        _ => {
            let i = rng.below(data.len() + 1);
            data.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
        }
    }
    data.truncate(max_len);
}

/// An input derived from `corpus` (which must not be empty to be useful): a random entry with
/// one to four stacked mutations, at most `max_len` bytes.
pub fn derive(rng: &mut Rng, corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    if corpus.is_empty() {
        let n = rng.below(64);
        return (0..n).map(|_| rng.byte()).collect();
    }
    let mut data = corpus[rng.below(corpus.len())].clone();
    let other = &corpus[rng.below(corpus.len())];
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut data, other, max_len);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_derives_the_same_inputs() {
        let corpus = vec![b"hello world".to_vec(), vec![0x0a, 0x02, 0x08, 0x01]];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..100)
                .map(|_| derive(&mut rng, &corpus, 64))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert!(run(3).iter().all(|d| d.len() <= 64));
    }
}
