//! The Kafka source and producer against a real broker (tansu with its
//! SQLite storage), started by the test on a free port.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exoflow_ingest::edge::Edge;
use exoflow_ingest::epoch::{replay, Cutter, Slice};
use exoflow_ingest::file::read_all;
use exoflow_ingest::kafka::{produce, KafkaSource, KafkaSpec, ProduceOptions, Until};
use exoflow_ingest::source::{Position, Source, SourceError};
use exoflow_testkit::Tansu;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn never() -> bool {
    false
}

/// An edge file with removals, comments, blank and malformed lines.
fn write_edges(path: &Path, lines: u64) -> std::io::Result<()> {
    let mut s = String::from("# a test graph\n");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (a, b) = (x % 1000, (x >> 20) % 1000);
        match i % 97 {
            0 => s.push_str("not an edge\n"),
            1 => s.push('\n'),
            2 => s.push_str(&format!("-{a} {b}\n")),
            _ => s.push_str(&format!("{a}\t{b}\n")),
        }
    }
    s.push_str("7 8"); // a last line without its newline
    std::fs::write(path, s)
}

fn spec(t: &Tansu, topic: &str) -> KafkaSpec {
    KafkaSpec::parse(&format!("kafka://{}/{topic}", t.brokers)).expect("a valid address")
}

fn load(t: &Tansu, topic: &str, file: &Path, message_bytes: usize) -> TestResult {
    let opts = ProduceOptions {
        partitions: Some(2),
        message_bytes,
        ..ProduceOptions::default()
    };
    let stats = produce(file, &spec(t, topic), &opts, &mut |_| {})?;
    assert_eq!(stats.partitions, 2);
    assert_eq!(stats.acked, stats.messages);
    assert!(stats.messages > 10, "{} messages", stats.messages);
    Ok(())
}

/// Everything read, as sorted multisets, with the malformed raw lines.
fn summary(slices: &[Slice]) -> (Vec<Edge>, Vec<String>) {
    let mut edges: Vec<Edge> = slices.iter().flat_map(|s| s.edges.clone()).collect();
    let mut bad: Vec<String> = slices
        .iter()
        .flat_map(|s| s.bad.iter().map(|b| b.raw.clone()))
        .collect();
    edges.sort();
    bad.sort();
    (edges, bad)
}

fn file_summary(path: &Path) -> Result<(Vec<Edge>, Vec<String>), Box<dyn std::error::Error>> {
    let f = read_all(path)?;
    let mut edges = f.edges;
    let mut bad: Vec<String> = f.rejected.into_iter().map(|r| r.raw).collect();
    edges.sort();
    bad.sort();
    Ok((edges, bad))
}

/// Reads epochs of `n` edges until the bounded source ends.
fn read_epochs(c: &mut Cutter, n: u64) -> Result<Vec<Vec<Slice>>, SourceError> {
    let mut epochs = Vec::new();
    while !c.at_end() {
        epochs.push(c.by_count(n, &never)?);
    }
    Ok(epochs)
}

#[test]
fn a_produced_file_reads_back_in_epochs_and_restarts_from_recorded_positions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let broker = Tansu::start(dir.path());
    let file = dir.path().join("edges.txt");
    write_edges(&file, 20_000)?;
    load(&broker, "edges", &file, 4096)?;

    let src: Arc<dyn Source> =
        Arc::new(KafkaSource::connect(spec(&broker, "edges"), Until::EndNow)?);
    assert_eq!(src.partitions(), 2);
    let mut c = Cutter::from_start(src.clone())?;
    let epochs = read_epochs(&mut c, 1000)?;
    let all: Vec<Slice> = epochs.iter().flatten().cloned().collect();
    assert_eq!(
        summary(&all),
        file_summary(&file)?,
        "the topic equals the file"
    );
    // Epoch boundaries fall inside messages: positions carry a line.
    assert!(
        all.iter().any(|s| s.end.line > 0),
        "no cut inside a message"
    );
    // Each epoch takes ceil(1000 / 2) valid records of each partition.
    assert!(epochs[0].iter().all(|s| s.edges.len() == 500));

    // A reader killed after epoch k restarts from the recorded end
    // positions and reads exactly the later epochs.
    for k in [0, 3, epochs.len() / 2] {
        drop(Cutter::from_start(src.clone())?);
        let from: Vec<Position> = epochs[k].iter().map(|s| s.end).collect();
        let mut again = Cutter::new(src.clone(), &from)?;
        let rest = read_epochs(&mut again, 1000)?;
        assert_eq!(rest.as_slice(), &epochs[k + 1..]);
    }
    // A recorded range replays to the same records.
    for s in epochs.iter().step_by(5).flatten() {
        assert_eq!(
            &replay(src.as_ref(), s.partition as usize, s.start, s.end)?,
            s
        );
    }
    Ok(())
}

#[test]
fn the_reader_survives_a_broker_restart_with_nothing_lost_or_repeated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut broker = Tansu::start(dir.path());
    let (first, second) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    write_edges(&first, 30_000)?;
    write_edges(&second, 5_000)?;
    load(&broker, "restart", &first, 2048)?;
    let want = {
        let (mut e, mut b) = file_summary(&first)?;
        let (e2, b2) = file_summary(&second)?;
        e.extend(e2);
        b.extend(b2);
        e.sort();
        b.sort();
        (e, b)
    };

    // Small fetches, so that most of the topic is still on the broker
    // when it goes away.
    let reader = spec(&broker, "restart").with_options([
        "fetch.message.max.bytes=8192",
        "queued.max.messages.kbytes=16",
    ])?;
    let src: Arc<dyn Source> = Arc::new(KafkaSource::connect(reader, Until::Unbounded)?);
    let mut c = Cutter::from_start(src)?;
    let mut all = Vec::new();
    let mut epoch = 0;
    let started = Instant::now();
    while summary(&all).0.len() < want.0.len() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "records lost: {} of {} edges after 120 s",
            summary(&all).0.len(),
            want.0.len()
        );
        epoch += 1;
        if epoch == 4 {
            // Down mid-stream; the rest of the file arrives after it is back.
            broker.restart();
            load(&broker, "restart", &second, 2048)?;
        }
        // The last epoch is partial: cut it after a few idle seconds.
        let t = Instant::now();
        all.extend(c.by_count(2000, &|| t.elapsed() > Duration::from_secs(3))?);
    }
    assert!(epoch > 8, "{epoch} epochs");
    assert_eq!(summary(&all), want);
    Ok(())
}

#[test]
fn an_unbounded_source_waits_for_new_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let broker = Tansu::start(dir.path());
    let first = dir.path().join("a.txt");
    let second = dir.path().join("b.txt");
    std::fs::write(&first, "1 2\n3 4\n")?;
    std::fs::write(&second, "5 6\n7 8\n")?;
    let s = spec(&broker, "live");
    let opts = ProduceOptions {
        partitions: Some(1),
        ..ProduceOptions::default()
    };
    produce(&first, &s, &opts, &mut |_| {})?;
    let src: Arc<dyn Source> = Arc::new(KafkaSource::connect(s.clone(), Until::Unbounded)?);
    let mut c = Cutter::from_start(src)?;
    assert_eq!(c.by_count(2, &never)?[0].edges.len(), 2);
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        produce(&second, &s, &opts, &mut |_| {}).map(|st| st.lines)
    });
    let e = c.by_count(2, &never)?;
    assert_eq!(
        e[0].edges
            .iter()
            .map(|e| (e.src, e.dst))
            .collect::<Vec<_>>(),
        vec![(5, 6), (7, 8)]
    );
    assert_eq!(producer.join().map_err(|_| "producer panicked")??, 2);
    assert!(!c.at_end());
    Ok(())
}

#[test]
fn misuse_gets_clear_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let broker = Tansu::start(dir.path());
    let err = KafkaSource::connect(spec(&broker, "missing"), Until::EndNow)
        .err()
        .ok_or("a missing topic was accepted")?;
    assert!(
        err.to_string().contains("topic missing does not exist"),
        "{err}"
    );

    // An existing topic with another partition count.
    let file = dir.path().join("e.txt");
    std::fs::write(&file, "1 2\n")?;
    let s = spec(&broker, "two");
    produce(&file, &s, &ProduceOptions::default(), &mut |_| {})?;
    let opts = ProduceOptions {
        partitions: Some(3),
        ..ProduceOptions::default()
    };
    let err = produce(&file, &s, &opts, &mut |_| {})
        .err()
        .ok_or("a partition mismatch was accepted")?;
    assert!(
        err.to_string().contains("exists with 2 partitions"),
        "{err}"
    );

    // Recorded end offsets that do not fit the topic.
    let err = KafkaSource::connect(s.clone(), Until::Offsets(vec![1]))
        .err()
        .ok_or("wrong offsets accepted")?;
    assert!(err.to_string().contains("has 2 partitions"), "{err}");

    // Settings that would break exactly-once are refused.
    let err = s
        .clone()
        .with_options(["auto.offset.reset=earliest"])
        .err()
        .ok_or("override accepted")?;
    assert!(err.to_string().contains("cannot be overridden"), "{err}");

    // A broker that is down: an error naming it, not a hang.
    let down = KafkaSpec::parse(&format!(
        "kafka://127.0.0.1:{}/edges",
        exoflow_testkit::free_port()
    ))?
    .with_options(["socket.connection.setup.timeout.ms=1000"])?;
    let err = KafkaSource::connect(down, Until::EndNow)
        .err()
        .ok_or("a dead broker was accepted")?;
    assert!(err.to_string().contains("are the brokers up?"), "{err}");
    Ok(())
}
