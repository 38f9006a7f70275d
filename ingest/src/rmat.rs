//! An R-MAT edge generator with the Graph500 parameters (a = 0.57,
//! b = 0.19, c = 0.19, d = 0.05), ids permuted, self-loops dropped.
//!
//! The output is a pure function of (scale, edge factor, seed): edge `i` is
//! drawn from its own SplitMix64 stream seeded by `(seed, i)`, so the bytes
//! are the same whatever the thread count, and SplitMix64 is written out here
//! (not taken from a crate whose streams may change between versions).

use std::io::{self, Write};

/// R-MAT parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rmat {
    /// log2 of the number of node ids.
    pub scale: u32,
    /// Edges drawn per node id (before self-loops are dropped).
    pub edge_factor: u64,
    /// Seed.
    pub seed: u64,
}

/// A `gen:rmat?...` source spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A query part without `=`.
    #[error("source {spec}: `{part}` is not KEY=VALUE")]
    NotKeyValue {
        /// The whole spec.
        spec: String,
        /// The offending part.
        part: String,
    },
    /// A value that is not a number.
    #[error("source {spec}: {key} `{value}` is not a number")]
    NotANumber {
        /// The whole spec.
        spec: String,
        /// The parameter.
        key: String,
        /// Its value.
        value: String,
    },
    /// An unknown parameter.
    #[error("source {spec}: unknown parameter `{key}` (scale, edge-factor, seed)")]
    UnknownKey {
        /// The whole spec.
        spec: String,
        /// The parameter.
        key: String,
    },
    /// A scale outside 1..=40.
    #[error("source {spec}: scale must be between 1 and 40")]
    Scale {
        /// The whole spec.
        spec: String,
    },
}

impl Rmat {
    /// The defaults of a spec that names no parameter: scale 16, edge
    /// factor 16, seed 1.
    pub const DEFAULT: Rmat = Rmat {
        scale: 16,
        edge_factor: 16,
        seed: 1,
    };

    /// Parses the query of a generator source spec: the part after
    /// `gen:rmat`, as `?scale=S&edge-factor=F&seed=X` (any subset, any
    /// order; the leading `?` optional). `spec` is the whole spec, named in
    /// errors.
    ///
    /// ```
    /// use exoflow_ingest::rmat::Rmat;
    /// let r = Rmat::parse_query("gen:rmat?scale=10&seed=7", "?scale=10&seed=7")?;
    /// assert_eq!((r.scale, r.edge_factor, r.seed), (10, 16, 7));
    /// assert!(Rmat::parse_query("gen:rmat?scale=x", "?scale=x").is_err());
    /// # Ok::<(), exoflow_ingest::rmat::SpecError>(())
    /// ```
    pub fn parse_query(spec: &str, query: &str) -> Result<Rmat, SpecError> {
        let mut rmat = Rmat::DEFAULT;
        let query = query.strip_prefix('?').unwrap_or(query);
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(SpecError::NotKeyValue {
                    spec: spec.to_owned(),
                    part: kv.to_owned(),
                });
            };
            let num = || -> Result<u64, SpecError> {
                v.parse().map_err(|_| SpecError::NotANumber {
                    spec: spec.to_owned(),
                    key: k.to_owned(),
                    value: v.to_owned(),
                })
            };
            match k {
                "scale" => {
                    rmat.scale = u32::try_from(num()?).map_err(|_| SpecError::Scale {
                        spec: spec.to_owned(),
                    })?
                }
                "edge-factor" => rmat.edge_factor = num()?,
                "seed" => rmat.seed = num()?,
                _ => {
                    return Err(SpecError::UnknownKey {
                        spec: spec.to_owned(),
                        key: k.to_owned(),
                    })
                }
            }
        }
        if rmat.scale == 0 || rmat.scale > 40 {
            return Err(SpecError::Scale {
                spec: spec.to_owned(),
            });
        }
        Ok(rmat)
    }
}

/// SplitMix64's output function.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// Quadrant thresholds on a u32 draw: a, a + b, a + b + c.
const T_A: u32 = (0.57 * 4_294_967_296.0) as u32;
const T_AB: u32 = ((0.57 + 0.19) * 4_294_967_296.0) as u32;
const T_ABC: u32 = ((0.57 + 0.19 + 0.19) * 4_294_967_296.0) as u32;

/// The id permutation of a generator: three rounds of an odd multiplier,
/// a xor-shift and a xor with a constant, all bijections mod 2^scale.
#[derive(Debug, Clone, Copy)]
struct Permutation {
    scale: u32,
    mask: u64,
    key: u64,
    xors: [u64; 3],
}

impl Permutation {
    #[inline]
    fn apply(&self, v: u64) -> u64 {
        if self.scale == 0 {
            return 0;
        }
        let mut x = v & self.mask;
        for xor in self.xors {
            x = x.wrapping_mul(self.key) & self.mask;
            x ^= x >> (self.scale / 2 + 1);
            x = (x ^ xor) & self.mask;
        }
        x
    }
}

/// An [`Rmat`] ready to draw edges: [`Rmat::edge`] without recomputing the
/// permutation each time.
#[derive(Debug, Clone)]
pub struct Prepared {
    rmat: Rmat,
    perm: Permutation,
}

impl Prepared {
    /// Edge number `i`, as [`Rmat::edge`].
    #[inline]
    pub fn edge(&self, i: u64) -> Option<(u64, u64)> {
        self.rmat.edge_with(&self.perm, i)
    }
}

impl Rmat {
    /// Number of edges drawn (self-loops included, before dropping them).
    pub fn draws(&self) -> u64 {
        self.edge_factor << self.scale
    }

    /// A bijection of `[0, 2^scale)`: the permutation applied to node ids.
    #[inline]
    pub fn permute(&self, v: u64) -> u64 {
        self.permutation().apply(v)
    }

    /// The permutation's constants, computed once per generator.
    fn permutation(&self) -> Permutation {
        let mask = if self.scale >= 64 {
            u64::MAX
        } else {
            (1u64 << self.scale) - 1
        };
        let key = splitmix64(self.seed ^ 0x5eed_5eed_5eed_5eed) | 1;
        Permutation {
            scale: self.scale,
            mask,
            key,
            xors: [0, 1, 2].map(|round| splitmix64(key.wrapping_add(round)) & mask),
        }
    }

    /// Edge number `i`: `Some((src, dst))`, or `None` for a self-loop.
    #[inline]
    pub fn edge(&self, i: u64) -> Option<(u64, u64)> {
        self.edge_with(&self.permutation(), i)
    }

    /// The generator with its permutation computed once, for drawing many
    /// edges one by one.
    pub fn prepared(&self) -> Prepared {
        Prepared {
            rmat: *self,
            perm: self.permutation(),
        }
    }

    #[inline]
    fn edge_with(&self, perm: &Permutation, i: u64) -> Option<(u64, u64)> {
        let mut state = splitmix64(self.seed.wrapping_mul(0xd1b5_4a32_d192_ed03) ^ i);
        let (mut src, mut dst) = (0u64, 0u64);
        let mut level = 0;
        while level < self.scale {
            state = splitmix64(state);
            for draw in [state as u32, (state >> 32) as u32] {
                if level == self.scale {
                    break;
                }
                // Quadrants a (0,0), b (0,1), c (1,0), d (1,1), branch-free:
                // the draws are random, so branches would mispredict.
                let s = u64::from(draw >= T_AB);
                let d = u64::from((T_A..T_AB).contains(&draw) | (draw >= T_ABC));
                src = (src << 1) | s;
                dst = (dst << 1) | d;
                level += 1;
            }
        }
        let (src, dst) = (perm.apply(src), perm.apply(dst));
        (src != dst).then_some((src, dst))
    }

    /// Writes the edges `a b\n` to `out`, generated on `threads` threads;
    /// returns how many were written.
    pub fn write<W: Write>(&self, out: &mut W, threads: usize) -> io::Result<u64> {
        const CHUNK: u64 = 1 << 20;
        let total = self.draws();
        let threads = threads.max(1) as u64;
        let mut written = 0u64;
        let mut start = 0u64;
        while start < total {
            // One chunk per thread per step, written in order.
            let bufs: Vec<(Vec<u8>, u64)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let lo = (start + t * CHUNK).min(total);
                        let hi = (lo + CHUNK).min(total);
                        s.spawn(move || self.render(lo, hi))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            for (buf, n) in bufs {
                out.write_all(&buf)?;
                written += n;
            }
            start = (start + threads * CHUNK).min(total);
        }
        Ok(written)
    }

    fn render(&self, lo: u64, hi: u64) -> (Vec<u8>, u64) {
        let mut buf = Vec::with_capacity(((hi - lo) * 16) as usize);
        let mut n = 0;
        let mut itoa = [0u8; 20];
        let perm = self.permutation();
        for i in lo..hi {
            if let Some((s, d)) = self.edge_with(&perm, i) {
                push_u64(&mut buf, s, &mut itoa);
                buf.push(b' ');
                push_u64(&mut buf, d, &mut itoa);
                buf.push(b'\n');
                n += 1;
            }
        }
        (buf, n)
    }
}

#[inline]
fn push_u64(buf: &mut Vec<u8>, mut v: u64, tmp: &mut [u8; 20]) {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::{parse_line, Line};

    #[test]
    fn permute_is_a_bijection() {
        for scale in [1, 2, 5, 10] {
            let g = Rmat {
                scale,
                edge_factor: 1,
                seed: 9,
            };
            let mut seen: Vec<u64> = (0..(1u64 << scale)).map(|v| g.permute(v)).collect();
            seen.sort_unstable();
            assert_eq!(
                seen,
                (0..(1u64 << scale)).collect::<Vec<_>>(),
                "scale {scale}"
            );
        }
    }

    #[test]
    fn a_prepared_generator_draws_the_same_edges() {
        for (scale, seed) in [(1, 0), (10, 7), (22, 1), (40, 3)] {
            let g = Rmat {
                scale,
                edge_factor: 4,
                seed,
            };
            let p = g.prepared();
            for i in (0..2_000).chain([u64::MAX / 3, u64::MAX]) {
                assert_eq!(p.edge(i), g.edge(i), "scale {scale} edge {i}");
            }
        }
    }

    /// The bytes are pinned: a change of the generator (a faster draw, a
    /// new permutation) must not change the graphs of existing seeds.
    #[test]
    fn the_output_of_a_seed_is_pinned() -> io::Result<()> {
        let g = Rmat {
            scale: 10,
            edge_factor: 3,
            seed: 123,
        };
        let mut out = Vec::new();
        g.write(&mut out, 2)?;
        let fnv = out.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!((out.len(), fnv), (23828, 0xc2bd_2d42_6e11_b344));
        Ok(())
    }

    #[test]
    fn the_same_bytes_whatever_the_thread_count_and_different_for_another_seed() -> io::Result<()> {
        let g = Rmat {
            scale: 12,
            edge_factor: 8,
            seed: 1,
        };
        let mut one = Vec::new();
        let n1 = g.write(&mut one, 1)?;
        let mut three = Vec::new();
        let n3 = g.write(&mut three, 3)?;
        assert_eq!(one, three);
        assert_eq!(n1, n3);
        let mut other = Vec::new();
        Rmat { seed: 2, ..g }.write(&mut other, 2)?;
        assert_ne!(one, other);
        // Every line parses, ids are in range, no self-loops, few dropped.
        let mut lines = 0;
        for line in one.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match parse_line(line) {
                Ok(Line::Edge(e)) => {
                    assert!(e.src < 4096 && e.dst < 4096 && e.src != e.dst);
                    lines += 1;
                }
                other => panic!("bad line {line:?}: {other:?}"),
            }
        }
        assert_eq!(lines, n1);
        assert!(n1 > g.draws() * 9 / 10, "{n1} of {}", g.draws());
        Ok(())
    }

    #[test]
    fn the_degree_distribution_is_skewed() {
        let g = Rmat {
            scale: 10,
            edge_factor: 16,
            seed: 3,
        };
        let mut deg = vec![0u32; 1024];
        for i in 0..g.draws() {
            if let Some((s, _)) = g.edge(i) {
                deg[s as usize] += 1;
            }
        }
        deg.sort_unstable();
        let top: u32 = deg[1014..].iter().sum();
        let total: u32 = deg.iter().sum();
        // The top 1% of sources hold far more than 1% of the edges.
        assert!(top * 10 > total, "top 1% hold {top} of {total}");
    }
}
