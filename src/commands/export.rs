//! `exoflow export`: a streaming job's online table at a committed epoch.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use exoflow_graph::write_csv;
use exoflow_stream::{query, Runtime};

use super::{engine, wid, write_atomically};
use crate::{KafkaArgs, StoreArgs};

/// Writes the online table of workflow `id` at `epoch` (default: the last
/// committed one) to `out` as CSV.
pub fn export(
    store: &StoreArgs,
    kafka: &KafkaArgs,
    id: &str,
    epoch: Option<u64>,
    out: &Path,
) -> Result<()> {
    let engine = engine(store)?;
    let wid = wid(id)?;
    let s = engine.store().as_ref();
    let at = match epoch {
        Some(e) => e,
        None => query::last_committed(s, wid.as_str())?,
    };
    let t = Instant::now();
    // A job logged without its edges (checkpoint none) is re-read from its
    // source, a Kafka topic with these settings.
    let runtime = Runtime::new().with_kafka_options(kafka.options()?);
    let table = query::export(s, &runtime, wid.as_str(), at)?.table;
    write_atomically(out, |f| write_csv(&table, f))?;
    eprintln!(
        "exoflow: online table of workflow {wid} at epoch {at}: {} rows written to {} in {:.2}s",
        table.len(),
        out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
