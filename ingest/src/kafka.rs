//! Kafka: a replayable partitioned source, and a producer that loads an
//! edge file into a topic.
//!
//! # Message format
//! A message's payload is one or more whole lines of the edge format
//! ([`crate::edge`]), separated by `\n` (the last one may lack it); keys
//! and headers are ignored. Many edges per message keep the per-message
//! cost of Kafka small. A record's position is `(message offset, line
//! within the message)`, lines counted from 0 over all lines of the
//! payload, comments and blank ones included, so that a reader opened at a
//! recorded position skips exactly the lines before it.
//!
//! # Exactly-once without Kafka transactions
//! The reader assigns its partition by hand at a position that the caller
//! recorded (in our epoch logs), never through consumer-group commits, and
//! runs with `auto.offset.reset=error`: data lost to retention is an
//! error, never a silent jump. A broker that goes away is waited for:
//! librdkafka reconnects, and the reader continues at the offset after the
//! last record it returned, so nothing is lost or repeated.
//!
//! # Bounded reads
//! [`Until::EndNow`] reads up to the end offsets (high watermarks) seen
//! when the source is connected; [`KafkaSource::end_offsets`] returns them
//! so that a resumed job can pass them back as [`Until::Offsets`] and stop
//! at the same place, like a bounded Kafka source in Flink.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::edge::{escape, parse_line, Line, Malformed, MAX_LINE};
use crate::file::{open_stream, LineReader, RawLine};
use crate::source::{Next, PartitionReader, Position, Source, SourceError};

/// How long metadata and watermark requests may take.
const META_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one poll of a partition waits for a message.
const POLL: Duration = Duration::from_millis(20);
/// Settings a user may not override: they would break exactly-once.
const FIXED: &[&str] = &[
    "auto.offset.reset",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

/// Where a topic is: `kafka://HOST:PORT[,HOST:PORT]/TOPIC`, and librdkafka
/// settings (TLS, SASL, timeouts) passed as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSpec {
    /// Bootstrap brokers, comma-separated.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// librdkafka settings (`KEY=VALUE`), applied after ours.
    pub options: BTreeMap<String, String>,
}

impl KafkaSpec {
    /// Parses `kafka://HOST:PORT[,HOST:PORT]/TOPIC`.
    ///
    /// ```
    /// let s = exoflow_ingest::kafka::KafkaSpec::parse("kafka://127.0.0.1:9092,h2:9093/edges").unwrap();
    /// assert_eq!((s.brokers.as_str(), s.topic.as_str()), ("127.0.0.1:9092,h2:9093", "edges"));
    /// assert!(exoflow_ingest::kafka::KafkaSpec::parse("kafka://h:1/").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self, SourceError> {
        let bad = |why: &str| {
            SourceError::Invalid(format!(
                "{url}: {why} (expected kafka://HOST:PORT[,HOST:PORT]/TOPIC)"
            ))
        };
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| bad("not a kafka:// address"))?;
        let (brokers, topic) = rest
            .split_once('/')
            .ok_or_else(|| bad("no topic after the brokers"))?;
        if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
            return Err(bad("each broker is HOST:PORT"));
        }
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
            return Err(bad("a topic name is 1 to 249 characters of [a-zA-Z0-9._-]"));
        }
        Ok(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            options: BTreeMap::new(),
        })
    }

    /// Reads librdkafka settings from a file of `KEY=VALUE` lines (blank
    /// lines and lines starting with `#` skipped), so that secrets such as
    /// `sasl.password` need not be on the command line; an error names the
    /// file and line of a malformed one.
    pub fn options_file(path: &Path) -> Result<Vec<String>, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SourceError::Invalid(format!(
                "reading Kafka options from {}: {e}",
                path.display()
            ))
        })?;
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((k, _)) if !k.trim().is_empty() => out.push(line.to_owned()),
                _ => {
                    return Err(SourceError::Invalid(format!(
                        "{}, line {}: expected KEY=VALUE",
                        path.display(),
                        n + 1
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Adds librdkafka settings given as `KEY=VALUE`.
    pub fn with_options<'a>(
        mut self,
        opts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, SourceError> {
        for kv in opts {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                SourceError::Invalid(format!("Kafka option `{kv}` is not KEY=VALUE"))
            })?;
            if FIXED.contains(&k) {
                return Err(SourceError::Invalid(format!(
                    "Kafka option `{k}` is set by exoflow (positions live in its checkpoints) and cannot be overridden"
                )));
            }
            self.options.insert(k.to_owned(), v.to_owned());
        }
        Ok(self)
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    fn consumer(&self) -> Result<BaseConsumer, SourceError> {
        let mut c = self.config();
        c.set("group.id", "exoflow")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false");
        c.create().map_err(|e| self.error("creating a consumer", e))
    }

    fn error(&self, what: &str, e: KafkaError) -> SourceError {
        SourceError::Kafka {
            what: format!("{what} for topic {} on {}", self.topic, self.brokers),
            source: e,
        }
    }

    /// The topic's partition count, or a clear error when the brokers do
    /// not answer or the topic does not exist.
    fn partition_count(&self, consumer: &BaseConsumer) -> Result<Option<usize>, SourceError> {
        let md = consumer
            .fetch_metadata(Some(&self.topic), META_TIMEOUT)
            .map_err(|e| self.error("reading metadata (are the brokers up?)", e))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(None);
        };
        match t.error() {
            None if !t.partitions().is_empty() => Ok(Some(t.partitions().len())),
            None => Ok(None),
            Some(e) => match RDKafkaErrorCode::from(e) {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    Ok(None)
                }
                code => Err(self.error(
                    "reading the topic's metadata",
                    KafkaError::MetadataFetch(code),
                )),
            },
        }
    }
}

/// Where a Kafka source ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// Never: it waits for new records.
    Unbounded,
    /// At the end offsets seen now.
    EndNow,
    /// At these offsets, one per partition (recorded by an earlier run).
    Offsets(Vec<u64>),
}

/// A Kafka topic as a [`Source`].
pub struct KafkaSource {
    spec: KafkaSpec,
    starts: Vec<u64>,
    ends: Option<Vec<u64>>,
}

impl KafkaSource {
    /// Connects: reads the partition count and the start offsets (and the
    /// end offsets for [`Until::EndNow`]).
    pub fn connect(spec: KafkaSpec, until: Until) -> Result<Self, SourceError> {
        let consumer = spec.consumer()?;
        let n = spec.partition_count(&consumer)?.ok_or_else(|| {
            SourceError::Invalid(format!(
                "topic {} does not exist on {} (load one with `exoflow produce`)",
                spec.topic, spec.brokers
            ))
        })?;
        let mut starts = Vec::with_capacity(n);
        let mut highs = Vec::with_capacity(n);
        for p in 0..n {
            let (lo, hi) = consumer
                .fetch_watermarks(&spec.topic, p as i32, META_TIMEOUT)
                .map_err(|e| spec.error(&format!("reading the offsets of partition {p}"), e))?;
            starts.push(lo.max(0) as u64);
            highs.push(hi.max(0) as u64);
        }
        let ends = match until {
            Until::Unbounded => None,
            Until::EndNow => Some(highs),
            Until::Offsets(o) if o.len() == n => Some(o),
            Until::Offsets(o) => {
                return Err(SourceError::Invalid(format!(
                    "topic {} has {n} partitions, but {} end offsets were recorded",
                    spec.topic,
                    o.len()
                )))
            }
        };
        Ok(Self { spec, starts, ends })
    }

    /// The end offsets, when the source is bounded.
    pub fn end_offsets(&self) -> Option<&[u64]> {
        self.ends.as_deref()
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> usize {
        self.starts.len()
    }

    fn start(&self, partition: usize) -> Position {
        Position::at(self.starts.get(partition).copied().unwrap_or(0))
    }

    fn open(
        &self,
        partition: usize,
        from: Position,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        if partition >= self.partitions() {
            return Err(SourceError::Invalid(format!(
                "topic {}: no partition {partition}",
                self.spec.topic
            )));
        }
        let consumer = self.spec.consumer()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.spec.topic,
            partition as i32,
            Offset::Offset(from.offset as i64),
        )
        .map_err(|e| self.spec.error("assigning a partition", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| self.spec.error("assigning a partition", e))?;
        Ok(Box::new(KafkaReader {
            consumer,
            topic: self.spec.topic.clone(),
            topic_c: std::ffi::CString::new(self.spec.topic.clone()).ok(),
            partition: partition as i32,
            payload: Vec::new(),
            cursor: 0,
            in_message: false,
            msg_offset: 0,
            line: 0,
            next_offset: from.offset,
            skip: from.line,
            end: self.ends.as_ref().and_then(|e| e.get(partition).copied()),
            last_warning: None,
        }))
    }

    fn fingerprint(&self) -> String {
        // The brokers are left out: a cluster may move to other addresses.
        format!(
            "kafka:topic={} partitions={} until={:?}",
            self.spec.topic,
            self.partitions(),
            self.ends
        )
    }

    fn describe(&self) -> String {
        // No brokers: this names the data in outputs, which must not change
        // when a cluster moves.
        format!("Kafka topic {}", self.spec.topic)
    }

    fn backlog_unit(&self) -> &'static str {
        "messages"
    }
}

struct KafkaReader {
    consumer: BaseConsumer,
    topic: String,
    /// The topic for librdkafka's C API (`None` if it had a NUL byte).
    topic_c: Option<std::ffi::CString>,
    partition: i32,
    /// The current message's payload, read from `cursor` on.
    payload: Vec<u8>,
    cursor: usize,
    in_message: bool,
    msg_offset: u64,
    /// Index of the next line in the current message.
    line: u32,
    /// The offset after the last message taken.
    next_offset: u64,
    /// Lines to skip in the first message (opened mid-message).
    skip: u32,
    end: Option<u64>,
    last_warning: Option<Instant>,
}

impl KafkaReader {
    fn place(&self) -> String {
        format!("topic {} partition {}", self.topic, self.partition)
    }

    /// Takes the next line of the current message, if any.
    fn take_line(&mut self) -> Option<(u32, std::ops::Range<usize>)> {
        if !self.in_message {
            return None;
        }
        let rest = &self.payload[self.cursor..];
        let len = rest.iter().position(|&b| b == b'\n');
        let range = self.cursor..self.cursor + len.unwrap_or(rest.len());
        self.cursor = range.end + usize::from(len.is_some());
        let line = self.line;
        self.line += 1;
        if self.cursor >= self.payload.len() {
            self.in_message = false;
            self.next_offset = self.msg_offset + 1;
        }
        Some((line, range))
    }

    fn load(&mut self, offset: u64, payload: &[u8]) -> Result<(), SourceError> {
        if self.skip > 0 && offset != self.next_offset {
            return Err(SourceError::Invalid(format!(
                "{}: the message at offset {} is gone (the next one is at {offset}); cannot resume inside it",
                self.place(),
                self.next_offset
            )));
        }
        self.payload.clear();
        self.payload.extend_from_slice(payload);
        self.cursor = 0;
        self.line = 0;
        self.msg_offset = offset;
        self.in_message = !payload.is_empty();
        self.next_offset = offset + 1;
        for _ in 0..std::mem::take(&mut self.skip) {
            if self.take_line().is_none() {
                break;
            }
        }
        Ok(())
    }

    fn transient(&mut self, e: &KafkaError) {
        let due = self
            .last_warning
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
        if due {
            tracing::warn!("{}: {e}; waiting for the broker", self.place());
            self.last_warning = Some(Instant::now());
        }
    }

    /// Whether a bounded partition has reached its end.
    fn at_end(&self) -> bool {
        let Some(end) = self.end else { return false };
        if self.next_offset >= end {
            return true;
        }
        // Offsets may have gaps (compaction, transaction markers): ask
        // where the fetcher is.
        self.consumer.position().ok().is_some_and(|tpl| {
            tpl.find_partition(&self.topic, self.partition)
                .and_then(|p| p.offset().to_raw())
                .is_some_and(|o| o >= end as i64 && self.next_offset >= o as u64)
        })
    }
}

impl PartitionReader for KafkaReader {
    /// Messages between the position and the partition's high watermark as
    /// of the last fetch (librdkafka's cached value: no broker round trip),
    /// or the recorded end of an `--until-end` job if that comes first.
    fn backlog(&self) -> Option<u64> {
        let topic = self.topic_c.as_ref()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `self.consumer` lives,
        // the topic is a NUL-terminated string, and the two out-pointers
        // point at live locals.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                self.partition,
                &mut low,
                &mut high,
            )
        };
        if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
            return None;
        }
        let high = self.end.map_or(high as u64, |e| e.min(high as u64));
        Some(high.saturating_sub(self.next_offset))
    }

    fn next(&mut self) -> Result<Next, SourceError> {
        loop {
            if let Some((line, range)) = self.take_line() {
                let at = Position {
                    offset: self.msg_offset,
                    line,
                };
                let bytes = &self.payload[range];
                let item = if bytes.len() > MAX_LINE {
                    Err((
                        Malformed::TooLong { len: bytes.len() },
                        escape(&bytes[..256]),
                    ))
                } else {
                    match parse_line(bytes) {
                        Ok(Line::Edge(e)) => Ok(e),
                        Ok(Line::Skip) => continue,
                        Err(reason) => Err((reason, escape(&bytes[..bytes.len().min(256)]))),
                    }
                };
                return Ok(Next::Item { at, item });
            }
            if self.end.is_some_and(|end| self.next_offset >= end) {
                return Ok(Next::End);
            }
            match self.consumer.poll(POLL) {
                None => {
                    return Ok(if self.at_end() { Next::End } else { Next::Idle });
                }
                Some(Ok(m)) => {
                    let offset = m.offset().max(0) as u64;
                    if offset < self.next_offset {
                        continue; // already taken
                    }
                    let payload = m.payload().unwrap_or_default().to_vec();
                    drop(m);
                    self.load(offset, &payload)?;
                }
                Some(Err(e)) => match e.rdkafka_error_code() {
                    Some(
                        RDKafkaErrorCode::OffsetOutOfRange
                        | RDKafkaErrorCode::AutoOffsetReset
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::SaslAuthenticationFailed,
                    ) => {
                        return Err(SourceError::Kafka {
                            what: format!(
                                "{}: reading from offset {} (deleted by retention?)",
                                self.place(),
                                self.next_offset
                            ),
                            source: e,
                        })
                    }
                    _ => {
                        self.transient(&e);
                        return Ok(Next::Idle);
                    }
                },
            }
        }
    }

    fn position(&self) -> Position {
        if self.in_message {
            Position {
                offset: self.msg_offset,
                line: self.line,
            }
        } else {
            Position {
                offset: self.next_offset,
                line: self.skip,
            }
        }
    }
}

/// How `produce` writes.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Lines per second at most (`None`: flat out).
    pub rate: Option<f64>,
    /// Partitions of the topic when it must be created (default 2); when
    /// it exists, it must have this many.
    pub partitions: Option<usize>,
    /// Payload bytes per message at most (whole lines; a longer line is
    /// one message).
    pub message_bytes: usize,
}

impl Default for ProduceOptions {
    fn default() -> Self {
        Self {
            rate: None,
            partitions: None,
            message_bytes: 64 << 10,
        }
    }
}

/// What `produce` did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProduceStats {
    /// Lines sent (every line of the file, comments and malformed ones
    /// included: the consumer keeps the malformed ones aside).
    pub lines: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Messages sent.
    pub messages: u64,
    /// Messages acknowledged by the broker.
    pub acked: u64,
    /// Partitions of the topic.
    pub partitions: usize,
}

#[derive(Default)]
struct Deliveries {
    acked: u64,
    failed: Option<String>,
}

struct DeliveryContext(Mutex<Deliveries>);

impl DeliveryContext {
    /// The delivery counts (a poisoned lock still holds valid counts).
    fn state(&self) -> std::sync::MutexGuard<'_, Deliveries> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let mut d = self.state();
        match r {
            Ok(_) => d.acked += 1,
            Err((e, m)) => {
                if d.failed.is_none() {
                    d.failed = Some(format!(
                        "a message for partition {} was not delivered: {e}",
                        m.partition()
                    ));
                }
            }
        }
    }
}

/// Loads an edge file (plain or gzip) into a topic, message `i` going to
/// partition `i mod P`, so each partition keeps the file's order. Creates
/// the topic when it does not exist. Calls `progress` about once a second.
pub fn produce(
    path: &Path,
    spec: &KafkaSpec,
    opts: &ProduceOptions,
    progress: &mut dyn FnMut(&ProduceStats),
) -> Result<ProduceStats, SourceError> {
    let partitions = ensure_topic(spec, opts.partitions)?;
    let producer: BaseProducer<DeliveryContext> = spec
        .config()
        .set("linger.ms", "5")
        .set("message.max.bytes", (2 * MAX_LINE + 65536).to_string())
        .create_with_context(DeliveryContext(Mutex::new(Deliveries::default())))
        .map_err(|e| spec.error("creating a producer", e))?;
    let mut lines = LineReader::new(BufReader::with_capacity(1 << 20, open_stream(path)?), 0);
    let mut stats = ProduceStats {
        partitions,
        ..ProduceStats::default()
    };
    // A message every 50 ms at least when paced, so that latency stays low.
    let max_lines = opts.rate.map_or(u64::MAX, |r| (r / 20.0).max(1.0) as u64);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(opts.message_bytes + 4096);
    let mut in_buf = 0u64;
    let mut line_no = 0u64;
    loop {
        let next = lines.next_line().map_err(|source| SourceError::Io {
            what: path.display().to_string(),
            source,
        })?;
        let done = next.is_none();
        if let Some((offset, raw)) = next {
            line_no += 1;
            match raw {
                RawLine::Line(l) => {
                    buf.extend_from_slice(l);
                    buf.push(b'\n');
                    in_buf += 1;
                }
                RawLine::TooLong { len, .. } => {
                    return Err(SourceError::Invalid(format!(
                        "{}: line {line_no} (offset {offset}) is {len} bytes, over the {MAX_LINE}-byte limit of a line: it cannot be an edge; remove it and produce again ({} lines were sent)",
                        path.display(),
                        stats.lines
                    )));
                }
            }
        }
        if !buf.is_empty() && (done || buf.len() >= opts.message_bytes || in_buf >= max_lines) {
            let p = (stats.messages % partitions as u64) as i32;
            send(&producer, spec, p, &buf)?;
            stats.messages += 1;
            stats.bytes += buf.len() as u64;
            stats.lines += in_buf;
            buf.clear();
            in_buf = 0;
            if let Some(rate) = opts.rate {
                let due = crate::pace_due(stats.lines, rate);
                let elapsed = started.elapsed();
                if due > elapsed {
                    producer.poll(due - elapsed);
                    std::thread::sleep(due.saturating_sub(started.elapsed()));
                }
            }
        }
        producer.poll(Duration::ZERO);
        if let Some(f) = &producer.context().state().failed {
            return Err(SourceError::Invalid(format!("{}: {f}", spec.topic)));
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            stats.acked = producer.context().state().acked;
            progress(&stats);
            last_report = Instant::now();
        }
        if done {
            break;
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| spec.error("flushing the last messages", e))?;
    let d = producer.context().state();
    if let Some(f) = &d.failed {
        return Err(SourceError::Invalid(format!("{}: {f}", spec.topic)));
    }
    stats.acked = d.acked;
    if stats.acked != stats.messages {
        return Err(SourceError::Invalid(format!(
            "{}: {} messages sent, {} acknowledged",
            spec.topic, stats.messages, stats.acked
        )));
    }
    progress(&stats);
    Ok(stats)
}

fn send(
    producer: &BaseProducer<DeliveryContext>,
    spec: &KafkaSpec,
    partition: i32,
    payload: &[u8],
) -> Result<(), SourceError> {
    loop {
        let record = BaseRecord::<(), [u8], ()>::to(&spec.topic)
            .partition(partition)
            .payload(payload);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(spec.error("sending a message", e)),
        }
    }
}

/// The topic's partition count, creating the topic when it is missing.
fn ensure_topic(spec: &KafkaSpec, want: Option<usize>) -> Result<usize, SourceError> {
    let consumer = spec.consumer()?;
    if let Some(n) = spec.partition_count(&consumer)? {
        if want.is_some_and(|w| w != n) {
            return Err(SourceError::Invalid(format!(
                "topic {} exists with {n} partitions, not {}",
                spec.topic,
                want.unwrap_or(n)
            )));
        }
        return Ok(n);
    }
    let n = want.unwrap_or(2).max(1);
    let admin: AdminClient<DefaultClientContext> = spec
        .config()
        .create()
        .map_err(|e| spec.error("creating an admin client", e))?;
    let topic = NewTopic::new(&spec.topic, n as i32, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(META_TIMEOUT));
    let results = futures_executor::block_on(admin.create_topics([&topic], &opts))
        .map_err(|e| spec.error("creating the topic", e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(spec.error(&format!("creating topic {t}"), KafkaError::AdminOp(code)))
            }
        }
    }
    // Wait until the metadata shows it.
    let start = Instant::now();
    loop {
        if let Some(n) = spec.partition_count(&consumer)? {
            return Ok(n);
        }
        if start.elapsed() > META_TIMEOUT {
            return Err(SourceError::Invalid(format!(
                "topic {} was created but does not appear in the metadata",
                spec.topic
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_files_read_settings_and_name_a_bad_line() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let good = dir.path().join("kafka.properties");
        std::fs::write(
            &good,
            "# SASL\n\nsecurity.protocol=SASL_PLAINTEXT\n  sasl.password=a=b  \n",
        )?;
        let opts = KafkaSpec::options_file(&good)?;
        assert_eq!(
            opts,
            ["security.protocol=SASL_PLAINTEXT", "sasl.password=a=b"]
        );
        let spec =
            KafkaSpec::parse("kafka://h:1/t")?.with_options(opts.iter().map(String::as_str))?;
        assert_eq!(
            spec.options.get("sasl.password").map(String::as_str),
            Some("a=b")
        );
        let bad = dir.path().join("bad.properties");
        std::fs::write(&bad, "a=1\njust words\n")?;
        let e = KafkaSpec::options_file(&bad).expect_err("malformed");
        assert!(e.to_string().contains("bad.properties, line 2"), "{e}");
        let e = KafkaSpec::options_file(&dir.path().join("missing")).expect_err("missing");
        assert!(e.to_string().contains("missing"), "{e}");
        Ok(())
    }
}
