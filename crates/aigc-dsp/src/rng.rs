use sha2::{Digest, Sha256};

/// xoshiro256** seeded from SHA-256 of the key and a domain string, so every use of a key
/// (bin choice, phases, audio bands...) draws an independent stream.
#[derive(Clone, Debug)]
pub struct KeyedRng {
    s: [u64; 4],
}

impl KeyedRng {
    pub fn new(key: &[u8; 32], domain: &str) -> KeyedRng {
        let mut h = Sha256::new();
        h.update(key);
        h.update(domain.as_bytes());
        let d = h.finalize();
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            *w = u64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        KeyedRng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in 0..n (n > 0), without modulo bias worth noticing for the small n used here.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_key_and_domain_and_are_reproducible() {
        let k = [7u8; 32];
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = KeyedRng::new(&k, "a");
                move |_| r.next_u64()
            })
            .collect();
        let a2: Vec<u64> = (0..4)
            .map({
                let mut r = KeyedRng::new(&k, "a");
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = KeyedRng::new(&k, "b");
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        let mut r = KeyedRng::new(&k, "f");
        let mean = (0..10000).map(|_| r.next_f32() as f64).sum::<f64>() / 10000.0;
        assert!((mean - 0.5).abs() < 0.02);
    }
}
