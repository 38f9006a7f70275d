//! `exoflow gen`: an R-MAT edge list.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use super::write_atomically;
use crate::default_workers;

/// Writes the R-MAT graph (scale, edge factor, seed) to `out`.
pub fn gen(scale: u32, edge_factor: u64, seed: u64, out: &Path) -> Result<()> {
    if scale == 0 || scale > 40 {
        bail!("--scale must be between 1 and 40");
    }
    let g = exoflow_ingest::rmat::Rmat {
        scale,
        edge_factor,
        seed,
    };
    let t = Instant::now();
    let mut n = 0;
    write_atomically(out, |f| {
        let mut w = std::io::BufWriter::with_capacity(4 << 20, f);
        n = g.write(&mut w, default_workers())?;
        w.flush()
    })?;
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "exoflow: {n} edges (scale {scale}, edge factor {edge_factor}, seed {seed}) written to {} in {s:.2}s ({:.1} M edges/s)",
        out.display(),
        n as f64 / s / 1e6
    );
    Ok(())
}
