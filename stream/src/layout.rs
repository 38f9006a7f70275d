//! Every key of a streaming job in the store, in one place (under the
//! engine's own `workflows/<wid>/`):
//!
//! ```text
//! streams/<wid>/CONFIG                         the job's configuration (JSON)
//! streams/<wid>/epochs/<e>/g<gen>/part-<p>     epoch log of partition p, written by generation gen
//! streams/<wid>/epochs/<e>/COMMIT              write-once: the epoch's ranges and part checksums
//! streams/<wid>/snapshots/<e>/edges            the graph at committed epoch e
//! streams/<wid>/snapshots/<e>/MANIFEST         written last: makes the snapshot exist
//! outputs/<wid>/online/<e>                     the epoch's output (JSON), write-once
//! outputs/<wid>/changes/<e>                    its change set (CSV), with --emit-changes
//! outputs/<wid>/rejected/<e>                   its malformed records (TSV)
//! outputs/<wid>/batch/<e>                      the batch recomputation's report (JSON)
//! metrics/<wid>/<gen>/epochs.csv, batches.csv  timings, rewritten by the owner
//! ```
//!
//! Epochs are zero-padded to ten digits, so that listings sort by epoch.

/// The top-level prefixes that hold a job's data besides the engine's own
/// `workflows/` and `outputs/`: deleting a workflow removes
/// `<prefix>/<wid>/` for each.
pub const PREFIXES: [&str; 2] = ["streams", "metrics"];

/// The keys of one job.
#[derive(Debug, Clone)]
pub struct Layout {
    wid: String,
}

impl Layout {
    /// The keys of workflow `wid` (an id the engine validated).
    pub fn new(wid: &str) -> Self {
        Self {
            wid: wid.to_owned(),
        }
    }

    /// The job's configuration.
    pub fn config(&self) -> String {
        format!("streams/{}/CONFIG", self.wid)
    }

    /// The prefix of every epoch's log and COMMIT.
    pub fn epochs(&self) -> String {
        format!("streams/{}/epochs/", self.wid)
    }

    /// The prefix of the parts of epoch `e`, every generation's.
    pub fn epoch_parts(&self, e: u64) -> String {
        format!("{}{e:010}/g", self.epochs())
    }

    /// The log of partition `p` of epoch `e`, as written by `generation`.
    pub fn part(&self, e: u64, generation: u64, p: usize) -> String {
        format!("{}{e:010}/g{generation}/part-{p:05}", self.epochs())
    }

    /// The commit record of epoch `e`.
    pub fn commit(&self, e: u64) -> String {
        format!("{}{e:010}/COMMIT", self.epochs())
    }

    /// The prefix of every snapshot.
    pub fn snapshots(&self) -> String {
        format!("streams/{}/snapshots/", self.wid)
    }

    /// The edges of the snapshot at epoch `e`.
    pub fn snapshot_data(&self, e: u64) -> String {
        format!("{}{e:010}/edges", self.snapshots())
    }

    /// The manifest of the snapshot at epoch `e`.
    pub fn manifest(&self, e: u64) -> String {
        format!("{}{e:010}/MANIFEST", self.snapshots())
    }

    /// The prefix of the online outputs.
    pub fn online_prefix(&self) -> String {
        format!("outputs/{}/online/", self.wid)
    }

    /// The online output of epoch `e`.
    pub fn online(&self, e: u64) -> String {
        format!("{}{e:010}", self.online_prefix())
    }

    /// The change set of epoch `e`.
    pub fn changes(&self, e: u64) -> String {
        format!("outputs/{}/changes/{e:010}", self.wid)
    }

    /// The malformed records of epoch `e`.
    pub fn rejected(&self, e: u64) -> String {
        format!("outputs/{}/rejected/{e:010}", self.wid)
    }

    /// The prefix of every generation's metrics.
    pub fn metrics_prefix(&self) -> String {
        format!("metrics/{}/", self.wid)
    }

    /// The epoch timings of `generation`.
    pub fn metrics(&self, generation: u64) -> String {
        format!("{}{generation}/epochs.csv", self.metrics_prefix())
    }

    /// The generation of an epochs.csv key under [`Self::metrics_prefix`].
    pub fn metrics_generation(&self, key: &str) -> Option<u64> {
        key.strip_prefix(&self.metrics_prefix())?
            .strip_suffix("/epochs.csv")?
            .parse()
            .ok()
    }

    /// The prefix of the batch reports.
    pub fn batch_prefix(&self) -> String {
        format!("outputs/{}/batch/", self.wid)
    }

    /// The batch report of epoch `e`.
    pub fn batch(&self, e: u64) -> String {
        format!("{}{e:010}", self.batch_prefix())
    }

    /// The batch timings of `generation`.
    pub fn batches_metrics(&self, generation: u64) -> String {
        format!("{}{generation}/batches.csv", self.metrics_prefix())
    }

    /// The epoch of a key `<prefix><e:010><suffix>`.
    pub fn epoch_of(prefix: &str, key: &str, suffix: &str) -> Option<u64> {
        key.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_epoch_and_parse_back() {
        let l = Layout::new("w");
        assert_eq!(l.part(7, 2, 1), "streams/w/epochs/0000000007/g2/part-00001");
        assert_eq!(l.commit(7), "streams/w/epochs/0000000007/COMMIT");
        assert!(l.part(7, 2, 1).starts_with(&l.epoch_parts(7)));
        assert!(l.online(9) < l.online(10));
        assert_eq!(
            Layout::epoch_of(&l.epochs(), &l.commit(123), "/COMMIT"),
            Some(123)
        );
        assert_eq!(
            Layout::epoch_of(&l.snapshots(), &l.manifest(40), "/MANIFEST"),
            Some(40)
        );
        assert_eq!(l.metrics_generation(&l.metrics(3)), Some(3));
        assert_eq!(l.metrics_generation(&l.batches_metrics(3)), None);
        for key in [l.config(), l.part(1, 1, 0), l.metrics(1)] {
            assert!(PREFIXES.iter().any(|p| key.starts_with(&format!("{p}/w/"))));
        }
    }
}
