//! `exoflow produce`: an edge file into a Kafka topic.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Loads `edges` into the topic of `url` (`kafka://BROKERS/TOPIC`).
pub fn produce(
    edges: &Path,
    url: &str,
    opts: &[String],
    po: &exoflow_ingest::kafka::ProduceOptions,
) -> Result<()> {
    use std::io::IsTerminal;
    if po
        .rate
        .is_some_and(|r| r.is_nan() || r < exoflow_ingest::MIN_RATE)
    {
        bail!("--rate must be at least 0.001 edges a second");
    }
    if po.partitions == Some(0) || po.message_bytes == 0 {
        bail!("--partitions and --message-bytes must be positive");
    }
    let spec = exoflow_ingest::kafka::KafkaSpec::parse(url)?
        .with_options(opts.iter().map(String::as_str))?;
    let tty = std::io::stderr().is_terminal();
    let t = Instant::now();
    let mut last_line = Instant::now();
    let stats = exoflow_ingest::kafka::produce(edges, &spec, po, &mut |s| {
        let secs = t.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "exoflow: {} lines in {} messages to {} ({} partitions), {:.0} lines/s, {:.1} MB/s, {} acked",
            s.lines,
            s.messages,
            spec.topic,
            s.partitions,
            s.lines as f64 / secs,
            s.bytes as f64 / secs / 1e6,
            s.acked
        );
        if tty {
            eprint!("\r{line}\x1b[K");
        } else if last_line.elapsed().as_secs() >= 10 {
            eprintln!("{line}");
            last_line = Instant::now();
        }
    })
    .with_context(|| format!("producing {} into {url}", edges.display()))?;
    if tty {
        eprintln!();
    }
    eprintln!(
        "exoflow: {} lines ({} bytes) of {} in {} messages to topic {} in {:.2}s",
        stats.lines,
        stats.bytes,
        edges.display(),
        stats.messages,
        spec.topic,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
