//! `exoflow cancel | stop | delete`: a workflow's life from outside it.

use anyhow::Result;

use super::{engine, wid};
use crate::StoreArgs;

/// Cancels a workflow (final).
pub fn cancel(store: &StoreArgs, id: &str) -> Result<()> {
    Ok(engine(store)?.cancel(&wid(id)?)?)
}

/// Asks a running workflow to stop; it stays resumable.
pub fn stop(store: &StoreArgs, id: &str) -> Result<()> {
    Ok(engine(store)?.stop(&wid(id)?)?)
}

/// Deletes a workflow's records, outputs and streaming data.
pub fn delete(store: &StoreArgs, id: &str, force: bool) -> Result<()> {
    let engine = engine(store)?;
    // The streaming job's data is deleted with the workflow.
    exoflow_stream::register_data(&engine)?;
    let n = engine.delete(&wid(id)?, force)?;
    println!("deleted {n} object(s) of workflow {id}");
    Ok(())
}
