//! Every key the engine writes, in one place (under the store's root):
//!
//! ```text
//! workflows/<wid>/meta                      DAG name, arguments, DAG fingerprint
//! workflows/<wid>/status/<n>                write-once status versions (12 digits)
//! workflows/<wid>/tasks/<task-id>           a committed task output (write-once)
//! workflows/<wid>/timings/g<gen>-<seq>      task timing records, in batches
//! journal/<engine>-<seq>                    records of runs whose tasks all Skip
//! outputs/<wid>/<name>                      a task's published output (write-once)
//! ```

use crate::id::WorkflowId;

/// Everything of a workflow's own records.
pub(crate) fn workflow_prefix(wid: &WorkflowId) -> String {
    format!("workflows/{wid}/")
}

/// A workflow's metadata.
pub(crate) fn meta_key(wid: &WorkflowId) -> String {
    format!("workflows/{wid}/meta")
}

/// Every status version of a workflow.
pub(crate) fn status_prefix(wid: &WorkflowId) -> String {
    format!("workflows/{wid}/status/")
}

/// Status version `version` of a workflow.
pub(crate) fn status_key(wid: &WorkflowId, version: u64) -> String {
    format!("{}{version:012}", status_prefix(wid))
}

/// Where a workflow's task outputs are: `<prefix><task id>`.
pub(crate) fn tasks_prefix(wid: &WorkflowId) -> String {
    format!("workflows/{wid}/tasks/")
}

/// The committed output of task `task_id`.
pub(crate) fn task_key(wid: &WorkflowId, task_id: &str) -> String {
    format!("{}{task_id}", tasks_prefix(wid))
}

/// Every timing record batch of a workflow.
pub(crate) fn timings_prefix(wid: &WorkflowId) -> String {
    format!("workflows/{wid}/timings/")
}

/// Timing record batch `seq` of owner generation `generation`.
pub(crate) fn timings_key(wid: &WorkflowId, generation: u64, seq: u32) -> String {
    format!("{}g{generation:010}-{seq:06}", timings_prefix(wid))
}

/// Every journal segment.
pub(crate) const JOURNAL_PREFIX: &str = "journal/";

/// Journal segment `seq` of engine instance `instance`.
pub(crate) fn journal_key(instance: &str, seq: u64) -> String {
    format!("{JOURNAL_PREFIX}{instance}-{seq:010}")
}

/// A workflow's published outputs.
pub(crate) fn outputs_prefix(wid: &WorkflowId) -> String {
    format!("outputs/{wid}/")
}

/// Published output `name` of a workflow.
pub(crate) fn output_key(wid: &WorkflowId, name: &str) -> String {
    format!("{}{name}", outputs_prefix(wid))
}
