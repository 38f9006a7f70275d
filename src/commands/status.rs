//! `exoflow status`: the workflows of a store, or one with its streaming
//! job's progress.

use anyhow::Result;

use super::{engine, wid};
use crate::StoreArgs;

/// Prints the workflows of the store (table or JSON), or one.
pub fn status(args: &StoreArgs, id: Option<&str>, json: bool) -> Result<()> {
    let engine = engine(args)?;
    let infos = match id {
        Some(id) => vec![engine.status(&wid(id)?)?],
        None => engine.list()?,
    };
    let stream = match id {
        Some(id) => exoflow_stream::query::describe(engine.store().as_ref(), id)?,
        None => None,
    };
    if json {
        let v = match (&stream, infos.first()) {
            (Some(st), Some(w)) if id.is_some() => {
                serde_json::json!({ "workflow": w, "stream": st })
            }
            _ => serde_json::to_value(&infos)?,
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if infos.is_empty() {
        println!("no workflows in {}", args.store);
        return Ok(());
    }
    println!(
        "{:<40} {:<16} {:<10} {:>4} {:>6}  owner / error",
        "workflow", "dag", "state", "gen", "tasks"
    );
    for w in infos.iter().take(if id.is_some() { 1 } else { 1000 }) {
        let who = match (&w.owner, &w.error) {
            (_, Some(e)) => e.clone(),
            (Some(o), None) => o.to_string(),
            (None, None) => String::new(),
        };
        println!(
            "{:<40} {:<16} {:<10} {:>4} {:>6}  {who}",
            w.id.as_str(),
            w.dag,
            format!("{:?}", w.state),
            w.generation,
            w.tasks
        );
    }
    if let Some(st) = stream {
        let out = &st.last_output;
        println!(
            "\nstreaming job: {} (checkpoint {:?}), last committed epoch {}",
            st.source, st.checkpoint, st.last_committed
        );
        if let Some(lag) = &st.lag {
            println!("  lag      {lag} in the source when the last epoch was cut");
        }
        for key in ["edges", "changed", "nodes", "digest"] {
            if let Some(v) = out.get(key) {
                println!(
                    "  {key:<8} {}",
                    v.as_str().map_or(v.to_string(), str::to_owned)
                );
            }
        }
        if let Some(top) = out.get("top").and_then(|t| t.as_array()) {
            println!("  top 10 by influence:");
            for row in top.iter().take(10) {
                println!(
                    "    {:>20}  {}",
                    row[0].as_u64().unwrap_or_default(),
                    row[1].as_str().unwrap_or_default()
                );
            }
        }
        if !st.batches.is_empty() {
            println!("  batch recomputations (epoch: nodes differing, max |batch - online|):");
            for b in st.batches.iter().rev().take(10).rev() {
                println!(
                    "    {:>6}: {} differing, max {}",
                    b["epoch"].as_u64().unwrap_or_default(),
                    b["differing"],
                    b["max_diff"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
