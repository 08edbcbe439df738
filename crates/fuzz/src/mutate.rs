//! A small seeded mutator for the stable run: libFuzzer's classic byte
//! mutations (flips, interesting values, inserts, deletes, copies, splices
//! with other inputs) without coverage feedback. Mutating valid encodings
//! reaches far deeper than uniform random bytes, which almost never get past
//! the first tag byte.

/// xorshift64*: fast, deterministic for a seed, good enough for mutation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // A zero state would stay zero.
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// Values that sit on the edges decoders check: lengths around limits,
/// varint continuation bits, the 1 GiB prefix, all ones.
const INTERESTING_U32: [u32; 14] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x1_0001,
    1 << 24,
    1 << 30,
    0x7fff_ffff,
    u32::MAX,
];

/// LEB128 encodings postcard and the codec's tile list read.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Applies one to four random mutations to `data`, keeping it at most
/// `max_len` bytes. `pool` supplies material for splices.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>], max_len: usize) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_once(rng, data, pool);
    }
    data.truncate(max_len);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = data.len();
    let choice = rng.below(13);
    match choice {
        0..=3 if len > 0 => overwrite(rng, data, choice),
        4..=6 => insert(rng, data, choice),
        7..=9 if len > 0 => cut_or_copy(rng, data, choice),
        // Splice a piece of another input in.
        10 | 11 if !pool.is_empty() => splice_from(rng, data, pool),
        // Swap two bytes.
        _ if len > 1 => {
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        _ => data.push(rng.byte()),
    }
}

/// Changes bytes in place (`data` is not empty).
fn overwrite(rng: &mut Rng, data: &mut [u8], choice: usize) {
    let len = data.len();
    match choice {
        // Flip one bit.
        0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // Replace a byte.
        1 => {
            let i = rng.below(len);
            data[i] = rng.byte();
        }
        // Add or subtract a little (lengths off by one).
        2 => {
            let i = rng.below(len);
            let delta = 1 + rng.below(8) as u8;
            data[i] = if rng.chance(2) {
                data[i].wrapping_add(delta)
            } else {
                data[i].wrapping_sub(delta)
            };
        }
        // Overwrite with an interesting 1, 2 or 4 byte value, either order.
        _ => {
            let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
            let bytes = if rng.chance(2) {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            let width = [1, 2, 4][rng.below(3)];
            let at = rng.below(len);
            let src = if rng.chance(2) {
                &bytes[..width]
            } else {
                &bytes[4 - width..]
            };
            for (k, &b) in src.iter().enumerate() {
                if let Some(slot) = data.get_mut(at + k) {
                    *slot = b;
                }
            }
        }
    }
}

/// Inserts new bytes somewhere.
fn insert(rng: &mut Rng, data: &mut Vec<u8>, choice: usize) {
    let len = data.len();
    match choice {
        // A varint of an interesting size (postcard lengths, tile counts).
        4 => {
            let v = match rng.below(4) {
                0 => u64::from(INTERESTING_U32[rng.below(INTERESTING_U32.len())]),
                1 => 1 << (rng.below(64)),
                2 => u64::MAX,
                _ => rng.below(300) as u64,
            };
            let mut enc = Vec::new();
            varint(v, &mut enc);
            let at = rng.below(len + 1);
            data.splice(at..at, enc);
        }
        // Random bytes.
        5 => {
            let n = 1 + rng.below(16);
            let at = rng.below(len + 1);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            data.splice(at..at, bytes);
        }
        // A run of one byte (long strings, zero fills).
        _ => {
            let longest = if rng.chance(8) { 4096 } else { 64 };
            let n = 1 + rng.below(longest);
            let b = if rng.chance(2) { 0 } else { rng.byte() };
            let at = rng.below(len + 1);
            data.splice(at..at, std::iter::repeat_n(b, n));
        }
    }
}

/// Deletes, duplicates or cuts off a range (`data` is not empty).
fn cut_or_copy(rng: &mut Rng, data: &mut Vec<u8>, choice: usize) {
    let len = data.len();
    match choice {
        // Delete a range.
        7 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            data.drain(at..at + n);
        }
        // Copy a range elsewhere (repeated fields, duplicated records).
        8 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(256));
            let piece = data[from..from + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, piece);
        }
        // Truncate (inputs cut short anywhere).
        _ => data.truncate(rng.below(len)),
    }
}

/// Crosses `data` with a piece of an input from `pool` (not empty).
fn splice_from(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = data.len();
    let other = &pool[rng.below(pool.len())];
    if other.is_empty() {
        return;
    }
    let from = rng.below(other.len());
    let n = 1 + rng.below(other.len() - from);
    let at = rng.below(len + 1);
    if rng.chance(2) {
        // Replace our tail with their piece (crossover).
        data.truncate(at);
        data.extend_from_slice(&other[from..from + n]);
    } else {
        data.splice(at..at, other[from..from + n].iter().copied());
    }
}

/// Uniformly random bytes, for the share of inputs that start from nothing.
pub fn random(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let n = rng.below(max_len.min(512) + 1);
    (0..n).map(|_| rng.byte()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_deterministic_and_bounded() {
        let pool = vec![b"hello world".to_vec(), vec![0; 40]];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut data = b"seed input".to_vec();
            for _ in 0..1000 {
                mutate(&mut rng, &mut data, &pool, 100);
                assert!(data.len() <= 100);
            }
            data
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
