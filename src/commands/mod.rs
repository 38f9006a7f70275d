//! One file per command; what they share (opening the store, writing an
//! output file atomically) is here.

pub mod admin;
pub mod batch;
pub mod export;
pub mod gen;
pub mod produce;
pub mod run;
pub mod status;

use std::path::Path;

use anyhow::{Context, Result};
use exoflow_engine::{Engine, WorkflowId};

use crate::StoreArgs;

/// An engine over the store that `args` names.
pub fn engine(args: &StoreArgs) -> Result<Engine> {
    let store = exoflow_engine::store::open(&args.store, args.s3_endpoint.clone())
        .with_context(|| format!("opening the store {}", args.store))?;
    Ok(Engine::new(store))
}

/// A workflow id from the command line.
pub fn wid(s: &str) -> Result<WorkflowId> {
    Ok(WorkflowId::new(s)?)
}

/// Writes `path` through a temporary file and a rename, so that a reader
/// never sees half a file.
pub fn write_atomically(
    path: &Path,
    f: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("the output path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f(&mut file).with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
