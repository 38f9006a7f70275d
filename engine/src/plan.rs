//! What a task does in one execution of a workflow, decided from what is
//! committed.

use crate::dag::Built;
use crate::task::Checkpoint;

/// What a task does in this execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Runs (not committed, or Skip and needed).
    Run,
    /// Committed earlier: its output is loaded if a running task reads it.
    Stored,
    /// Not needed.
    Idle,
}

/// Decides the plan from the set of committed task ids: a task runs when it
/// is not stored and is a sink, the output, or read by a task that runs.
pub(crate) fn plan(dag: &Built, is_committed: impl Fn(&str) -> bool) -> Vec<Plan> {
    let n = dag.nodes.len();
    let stored: Vec<bool> = dag
        .nodes
        .iter()
        .map(|node| node.opts.checkpoint != Checkpoint::Skip && is_committed(&node.id))
        .collect();
    let mut has_reader = vec![false; n];
    let mut needed = vec![false; n];
    for i in (0..n).rev() {
        if i == dag.output {
            needed[i] = true;
        }
        for &p in &dag.nodes[i].inputs {
            has_reader[p] = true;
        }
    }
    let mut plans = vec![Plan::Idle; n];
    for i in (0..n).rev() {
        let run = !stored[i] && (needed[i] || !has_reader[i]);
        plans[i] = if stored[i] {
            Plan::Stored
        } else if run {
            Plan::Run
        } else {
            Plan::Idle
        };
        if run {
            for &p in &dag.nodes[i].inputs {
                needed[p] = true;
            }
        }
    }
    plans
}
