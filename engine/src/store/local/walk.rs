//! Listings: the files and commit-log records under a prefix.

use std::fs;
use std::path::{Path, PathBuf};

use std::io::ErrorKind;

use super::LocalStore;
use crate::id::validate_prefix;
use crate::store::commit_log::{self, log_path};
use crate::store::StoreError;

impl LocalStore {
    /// The files under `prefix` and the commit logs that may hold keys
    /// under it (see [`walk`]).
    #[allow(clippy::type_complexity)]
    pub(super) fn scan(
        &self,
        prefix: &str,
    ) -> Result<(Vec<String>, Vec<(PathBuf, String)>), StoreError> {
        validate_prefix(prefix)?;
        // Start the walk at the deepest directory the prefix names in full.
        let dir_rel = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if dir_rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_rel)
        };
        let mut out = Vec::new();
        let mut logs = Vec::new();
        // The logs of the start directory and of those above it lie outside
        // the walk, and may hold keys below the start (nested names).
        logs.extend(self.logs_above(dir_rel));
        walk(&start, dir_rel, prefix, &mut out, &mut logs)
            .map_err(|e| StoreError::io("list", prefix, e))?;
        Ok((out, logs))
    }
}

impl LocalStore {
    /// The commit logs of directory `rel` and of the directories above it
    /// (path, relative path of the directory they log), nearest first.
    pub(super) fn logs_above(&self, rel: &str) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut rel = rel;
        while !rel.is_empty() {
            if let Some(lp) = log_path(&self.root.join(rel)) {
                if lp.is_file() {
                    out.push((lp, rel.to_owned()));
                }
            }
            rel = rel.rfind('/').map_or("", |i| &rel[..i]);
        }
        out
    }
}

/// Walks `dir` (relative path `rel`) for the keys that start with `prefix`:
/// files into `out`, and into `logs` the commit logs (path, relative path of
/// the directory they log) of the directories that may hold some.
pub(super) fn walk(
    dir: &Path,
    rel: &str,
    prefix: &str,
    out: &mut Vec<String>,
    logs: &mut Vec<(PathBuf, String)>,
) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let related = |key: &str| {
        let as_dir = format!("{key}/");
        as_dir.starts_with(prefix) || prefix.starts_with(&as_dir)
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let child = |n: &str| {
            if rel.is_empty() {
                n.to_owned()
            } else {
                format!("{rel}/{n}")
            }
        };
        if name.starts_with('.') {
            if let Some(logged) = commit_log::logged_dir_name(name) {
                let sub = child(logged);
                if related(&sub) && entry.file_type()?.is_file() {
                    logs.push((entry.path(), sub));
                }
            }
            continue;
        }
        let key = child(name);
        let is_dir = entry.file_type()?.is_dir();
        if is_dir {
            if related(&key) {
                walk(&entry.path(), &key, prefix, out, logs)?;
            }
        } else if key.starts_with(prefix) {
            out.push(key);
        }
    }
    Ok(())
}
