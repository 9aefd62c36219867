//! What the fixed-seed fuzz tests share — the unit tests here and the live-broker fuzz test in
//! `tests/integration/fuzz.rs` (hence public, but not part of strom's API): a deterministic
//! generator, byte mutations, and the budget. Each test runs `rounds(n)` rounds: `n` in `cargo test`, and
//! `n × STROM_FUZZ_SCALE` for a longer run (README: "Fuzzing"), which also takes its seed from
//! `STROM_FUZZ_SEED` so a long run explores new ground.

/// xorshift64*: deterministic, so a failure replays from its seed and round.
pub struct Rng(u64);

impl Rng {
    /// A generator for one test: `salt` tells tests apart; `STROM_FUZZ_SEED` moves them all.
    pub fn new(salt: u64) -> Rng {
        let seed = std::env::var("STROM_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        Rng((salt ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    pub fn word(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.word() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// Flips, overwrites, inserts or cuts a few bytes.
    pub fn mutate(&mut self, mut b: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + self.below(4) {
            match self.below(4) {
                0 if !b.is_empty() => {
                    let at = self.below(b.len());
                    b[at] ^= 1 << self.below(8);
                }
                1 if !b.is_empty() => {
                    let at = self.below(b.len());
                    b[at] = self.word() as u8;
                }
                2 => {
                    let at = self.below(b.len() + 1);
                    b.insert(at, self.word() as u8);
                }
                _ if !b.is_empty() => {
                    let at = self.below(b.len());
                    b.truncate(at);
                }
                _ => {}
            }
        }
        b
    }
}

/// The rounds a fuzz test runs: `base`, times `STROM_FUZZ_SCALE` when set.
pub fn rounds(base: usize) -> usize {
    let scale = std::env::var("STROM_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1);
    base.saturating_mul(scale.max(1))
}
