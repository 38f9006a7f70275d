//! The batch TunkRank on a cluster of processes: timely's cluster
//! configuration (N processes of W worker threads each, over TCP), kept up
//! for as long as a job runs so that every batch recomputation of the job
//! runs on all N x W workers.
//!
//! Process 0 leads: it holds the graph, submits one recomputation at a time
//! ([`Cluster::tunkrank`]) and receives the whole table. The other processes
//! only [`serve`]: they hold no data between jobs and exit when process 0
//! says stop. A job is three dataflows, built by every worker in the same
//! order: process 0's workers feed their slices of the edges and an
//! exchange brings each edge to its follower's owner; the from-zero
//! iteration of [`crate::batch`] runs on those shares; every worker's rows
//! are gathered at worker 0. Commands reach the workers of every process
//! through one long-lived control dataflow that worker 0 feeds and
//! broadcasts, so all workers agree on the order of jobs.
//!
//! The connections are made here rather than by timely, so that a process
//! that does not answer is an error after a timeout (timely retries
//! forever), progress goes to stderr (timely prints to stdout), and a
//! handshake checks that the processes agree on their number, their
//! indices and their worker threads. Process 0 decides the threads; the
//! others learn them in the handshake.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Operator;
use timely::dataflow::InputHandleVec;
use timely::worker::Worker;
use timely_communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely_communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely_communication::{Hooks, WorkerGuards};

use crate::batch::{exchanged, iterate, owner, BatchError, Share};
use crate::{Overflow, Table};

/// Why a cluster could not be formed or kept.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The hostfile is missing, unreadable or too short.
    #[error("hostfile {path}: {reason}")]
    Hostfile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The arguments do not describe a cluster.
    #[error("{0}")]
    Usage(String),
    /// This process cannot listen on its address.
    #[error("process {process} cannot listen on {addr}: {source}")]
    Listen {
        /// This process.
        process: usize,
        /// Its address in the hostfile.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process did not connect or answer in time.
    #[error(
        "process {peer} ({addr}) did not {what} within {secs} s: start it with `--process {peer}` and the same --processes and --hostfile"
    )]
    Timeout {
        /// The process waited for.
        peer: usize,
        /// Its address.
        addr: String,
        /// Connect or answer.
        what: &'static str,
        /// The timeout.
        secs: u64,
    },
    /// Another process answered but disagrees.
    #[error("process {peer} ({addr}): {reason}")]
    Handshake {
        /// The other process.
        peer: usize,
        /// Its address.
        addr: String,
        /// The disagreement.
        reason: String,
    },
    /// Timely could not start or a worker failed.
    #[error("timely: {0}")]
    Timely(String),
}

/// Reads the addresses of a cluster's processes: one `host:port` per line,
/// process 0 first; blank lines and `#` comments are skipped. Needs at
/// least `processes` addresses and uses the first `processes`.
pub fn read_hostfile(path: &Path, processes: usize) -> Result<Vec<String>, ClusterError> {
    let err = |reason: String| ClusterError::Hostfile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if line.split_whitespace().count() != 1 || !line.contains(':') {
            return Err(err(format!(
                "line {}: expected host:port, found {line:?}",
                n + 1
            )));
        }
        out.push(line.to_owned());
        if out.len() == processes {
            return Ok(out);
        }
    }
    Err(err(format!(
        "{} address(es) for {processes} processes",
        out.len()
    )))
}

/// Which process this is, among which.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// `host:port` of every process, process 0 first.
    pub addresses: Vec<String>,
    /// This process's index.
    pub process: usize,
    /// How long to wait for the other processes to connect and answer.
    pub timeout: Duration,
}

impl ClusterSpec {
    /// Whether this describes a cluster that this process can be part of.
    pub fn check(&self) -> Result<(), ClusterError> {
        let n = self.addresses.len();
        if n < 2 {
            return Err(ClusterError::Usage(
                "a cluster has at least 2 processes".into(),
            ));
        }
        if self.process >= n {
            return Err(ClusterError::Usage(format!(
                "--process {} is out of range: the processes are numbered 0 to {}",
                self.process,
                n - 1
            )));
        }
        Ok(())
    }
}

const MAGIC: [u8; 8] = *b"EXOFLOW1";
/// Handshake answers.
const OK: u64 = 0;
const WRONG_PROCESSES: u64 = 1;
const WRONG_INDEX: u64 = 2;
const WRONG_THREADS: u64 = 3;

fn write_words(s: &mut TcpStream, words: [u64; 3]) -> std::io::Result<()> {
    let mut buf = [0u8; 32];
    buf[..8].copy_from_slice(&MAGIC);
    for (i, w) in words.iter().enumerate() {
        buf[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    s.write_all(&buf)?;
    s.flush()
}

/// Reads a handshake message; `None` when it is not one of ours.
fn read_words(s: &mut TcpStream) -> std::io::Result<Option<[u64; 3]>> {
    let mut buf = [0u8; 32];
    s.read_exact(&mut buf)?;
    if buf[..8] != MAGIC {
        return Ok(None);
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[8 + 8 * i..16 + 8 * i]);
        u64::from_le_bytes(w)
    };
    Ok(Some([word(0), word(1), word(2)]))
}

fn resolve(addr: &str) -> Option<SocketAddr> {
    addr.to_socket_addrs().ok().and_then(|mut a| a.next())
}

/// Calls `say` at most every few seconds.
struct Progress<'a> {
    say: &'a dyn Fn(&str),
    last: Instant,
}

impl Progress<'_> {
    fn tick(&mut self, msg: impl FnOnce() -> String) {
        if self.last.elapsed() >= Duration::from_secs(5) {
            (self.say)(&msg());
            self.last = Instant::now();
        }
    }
}

/// Connects to every other process (to the lower indices, then accepting
/// the higher ones) and checks the handshake; returns the sockets by
/// process (none for this one) and the worker threads per process.
fn connect(
    spec: &ClusterSpec,
    threads: Option<usize>,
    say: &dyn Fn(&str),
) -> Result<(Vec<Option<TcpStream>>, usize), ClusterError> {
    spec.check()?;
    let n = spec.addresses.len();
    let me = spec.process;
    let deadline = Instant::now() + spec.timeout;
    let secs = spec.timeout.as_secs();
    let mut progress = Progress {
        say,
        last: Instant::now(),
    };
    // Listen first, so that the higher processes' connections wait in the
    // backlog while this one connects to the lower.
    let listener = if me + 1 < n {
        let l = TcpListener::bind(&spec.addresses[me]).map_err(|source| ClusterError::Listen {
            process: me,
            addr: spec.addresses[me].clone(),
            source,
        })?;
        l.set_nonblocking(true)
            .map_err(|e| ClusterError::Timely(e.to_string()))?;
        Some(l)
    } else {
        None
    };
    let mut threads = threads;
    let mut sockets: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    for (peer, addr) in spec.addresses.iter().enumerate().take(me) {
        let io = |source: std::io::Error| ClusterError::Handshake {
            peer,
            addr: addr.clone(),
            reason: source.to_string(),
        };
        let timeout = |what| ClusterError::Timeout {
            peer,
            addr: addr.clone(),
            what,
            secs,
        };
        let mut stream = loop {
            if let Some(sa) = resolve(addr) {
                if let Ok(s) = TcpStream::connect_timeout(&sa, Duration::from_secs(1)) {
                    break s;
                }
            }
            if Instant::now() >= deadline {
                return Err(timeout("accept a connection"));
            }
            progress.tick(|| format!("waiting for process {peer} at {addr}"));
            std::thread::sleep(Duration::from_millis(100));
        };
        stream
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1)),
            ))
            .map_err(io)?;
        write_words(
            &mut stream,
            [n as u64, me as u64, threads.unwrap_or(0) as u64],
        )
        .map_err(io)?;
        let answer = match read_words(&mut stream) {
            Ok(Some(w)) => w,
            Ok(None) => {
                return Err(ClusterError::Handshake {
                    peer,
                    addr: addr.clone(),
                    reason: "this address is not an exoflow process".into(),
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timeout("answer"))
            }
            Err(e) => return Err(io(e)),
        };
        let reason = match answer {
            [OK, t, _] if peer == 0 => {
                threads = Some(t as usize);
                None
            }
            [OK, t, _] if Some(t as usize) == threads => None,
            [OK, t, _] => Some(format!(
                "runs {t} worker thread(s), process 0 runs {}",
                threads.unwrap_or(0)
            )),
            [WRONG_PROCESSES, their, _] => Some(format!(
                "it was started with --processes {their}, this one with {n}"
            )),
            [WRONG_INDEX, _, _] => Some(format!(
                "it already has a process {me}, or {me} is out of its range"
            )),
            [WRONG_THREADS, their, _] => Some(format!(
                "it runs {their} worker thread(s), this one {}",
                threads.unwrap_or(0)
            )),
            [code, _, _] => Some(format!("unknown handshake answer {code}")),
        };
        if let Some(reason) = reason {
            return Err(ClusterError::Handshake {
                peer,
                addr: addr.clone(),
                reason,
            });
        }
        stream.set_read_timeout(None).map_err(io)?;
        sockets[peer] = Some(stream);
    }
    let threads = match threads {
        Some(t) if t > 0 => t,
        _ => {
            return Err(ClusterError::Usage(
                "process 0 gives the worker threads, at least 1".into(),
            ))
        }
    };
    if let Some(listener) = listener {
        let my_addr = &spec.addresses[me];
        while let Some(waiting) = (me + 1..n).find(|&p| sockets[p].is_none()) {
            let (mut stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(ClusterError::Timeout {
                            peer: waiting,
                            addr: spec.addresses[waiting].clone(),
                            what: "connect",
                            secs,
                        });
                    }
                    progress.tick(|| {
                        format!(
                            "process {me} waits at {my_addr} for process {waiting} ({})",
                            spec.addresses[waiting]
                        )
                    });
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => return Err(ClusterError::Timely(format!("accepting at {my_addr}: {e}"))),
            };
            // A stranger that says nothing or something else is ignored.
            if stream.set_nonblocking(false).is_err()
                || stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .is_err()
            {
                continue;
            }
            let Ok(Some([their_n, their_index, their_threads])) = read_words(&mut stream) else {
                say(&format!(
                    "process {me} ignored a connection that is not an exoflow process"
                ));
                continue;
            };
            let peer = their_index as usize;
            let addr = spec.addresses.get(peer).cloned().unwrap_or_default();
            let (answer, reason) = if their_n != n as u64 {
                (
                    [WRONG_PROCESSES, n as u64, 0],
                    format!("it was started with --processes {their_n}, this one with {n}"),
                )
            } else if peer <= me || peer >= n || sockets[peer].is_some() {
                (
                    [WRONG_INDEX, 0, 0],
                    format!("a second or misplaced process {peer}"),
                )
            } else if me > 0 && their_threads as usize != threads {
                (
                    [WRONG_THREADS, threads as u64, 0],
                    format!("it runs {their_threads} worker thread(s), this one {threads}"),
                )
            } else {
                ([OK, threads as u64, 0], String::new())
            };
            let _ = write_words(&mut stream, answer);
            if answer[0] != OK {
                return Err(ClusterError::Handshake { peer, addr, reason });
            }
            stream
                .set_read_timeout(None)
                .map_err(|e| ClusterError::Timely(e.to_string()))?;
            sockets[peer] = Some(stream);
        }
    }
    for s in sockets.iter().flatten() {
        s.set_nodelay(true)
            .map_err(|e| ClusterError::Timely(e.to_string()))?;
    }
    Ok((sockets, threads))
}

/// What worker 0 broadcasts to every worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Command {
    /// Recompute TunkRank of the graph in process 0's slot.
    Batch,
    /// End the workers.
    Stop,
}

/// What each worker sends worker 0 at the end of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Part {
    Row(u64, u64),
    Done { rounds: u64, overflow: Option<u64> },
}

type JobResult = Result<(Table, usize), BatchError>;

/// A job's graph: sorted, distinct pairs (b follows a).
type Edges = Arc<Vec<(u64, u64)>>;

/// What worker 0 gathers: rows, most rounds, first overflow, workers done.
#[derive(Default)]
struct Gathered {
    rows: Table,
    rounds: u64,
    overflow: Option<u64>,
    done: usize,
}

/// What process 0's workers share with the leading handle.
struct Lead {
    /// The graph of the job being submitted.
    slot: Mutex<Option<Edges>>,
    /// Commands to worker 0 (only it reads them).
    commands: Receiver<Command>,
    /// Results from worker 0.
    results: Sender<JobResult>,
}

/// One recomputation, on every worker of every process.
fn job(worker: &mut Worker, lead: Option<&Lead>, threads: usize) {
    let index = worker.index();
    let peers = worker.peers();
    // 1. Process 0's workers feed their slices; each edge goes to the owner
    //    of its follower.
    let edges = lead.and_then(|l| l.slot.lock().clone());
    let slice: &[(u64, u64)] = match &edges {
        Some(e) => {
            let local = index % threads;
            &e[e.len() * local / threads..e.len() * (local + 1) / threads]
        }
        None => &[],
    };
    let mut pairs = exchanged(worker, slice.iter().copied(), move |&(_, b)| {
        owner(b, peers) as u64
    });
    drop(edges);
    pairs.sort_unstable();
    let share = Share::new(&pairs, index, peers);
    drop(pairs);
    // 2. The iteration.
    let (rows, result) = iterate(worker, share);
    // 3. Every row and every worker's outcome to worker 0.
    let (rounds, overflow) = match result {
        Ok(r) => (r as u64, None),
        Err(Overflow { node }) => (0, Some(node)),
    };
    let parts = rows
        .into_iter()
        .map(|(n, x)| Part::Row(n, x))
        .chain(std::iter::once(Part::Done { rounds, overflow }));
    let gathered = exchanged(worker, parts, |_| 0);
    if index != 0 {
        return;
    }
    let mut g = Gathered::default();
    for part in gathered {
        match part {
            Part::Row(n, x) => g.rows.push((n, x)),
            Part::Done { rounds, overflow } => {
                g.rounds = g.rounds.max(rounds);
                g.overflow = match (g.overflow, overflow) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                g.done += 1;
            }
        }
    }
    let result = if g.done != peers {
        Err(BatchError::Timely(format!(
            "{} of {peers} workers reported the job's end",
            g.done
        )))
    } else if let Some(node) = g.overflow {
        Err(BatchError::Overflow(Overflow { node }))
    } else {
        g.rows.sort_unstable();
        Ok((g.rows, g.rounds as usize))
    };
    if let Some(lead) = lead {
        let _ = lead.results.send(result);
    }
}

/// The life of a worker in any process: wait for commands, run jobs.
fn work(worker: &mut Worker, lead: Option<Arc<Lead>>, threads: usize) {
    let queue: Rc<RefCell<VecDeque<Command>>> = Rc::new(RefCell::new(VecDeque::new()));
    let mut control = InputHandleVec::<u64, Command>::new();
    {
        let queue = queue.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            control
                .to_stream(scope)
                .broadcast()
                .sink(Pipeline, "Commands", move |(input, _)| {
                    input.for_each_stamp(|_, data| {
                        let mut q = queue.borrow_mut();
                        for batch in data {
                            q.extend(batch.drain(..));
                        }
                    });
                });
        });
    }
    let leader = worker.index() == 0;
    // Only worker 0 commands; the others' inputs close at once.
    let mut control = if leader { Some(control) } else { None };
    let mut seq = 0u64;
    loop {
        if let (Some(ctl), Some(lead)) = (control.as_mut(), lead.as_ref()) {
            loop {
                let cmd = match lead.commands.try_recv() {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => break,
                    // The handle is gone without a word: stop.
                    Err(TryRecvError::Disconnected) => Command::Stop,
                };
                let stop = matches!(cmd, Command::Stop);
                ctl.send(cmd);
                seq += 1;
                ctl.advance_to(seq);
                if stop {
                    break;
                }
            }
        }
        let next = queue.borrow_mut().pop_front();
        match next {
            None => {
                worker.step_or_park(leader.then_some(Duration::from_millis(1)));
            }
            Some(Command::Stop) => break,
            Some(Command::Batch) => job(worker, lead.as_deref(), threads),
        }
    }
    drop(control);
}

/// Starts this process's workers on connected sockets.
fn start(
    sockets: Vec<Option<TcpStream>>,
    process: usize,
    threads: usize,
    lead: Option<Arc<Lead>>,
) -> Result<WorkerGuards<()>, ClusterError> {
    let hooks = Hooks::default();
    let allocators =
        ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(allocators, sockets, process, threads, hooks)
            .map_err(|e| ClusterError::Timely(format!("starting the network threads: {e}")))?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    timely::execute::execute_from(
        builders,
        Box::new(guard),
        timely::WorkerConfig::default(),
        move |worker| work(worker, lead.clone(), threads),
    )
    .map_err(ClusterError::Timely)
}

/// Serves process 0 of the cluster from process `spec.process` (> 0):
/// connects, learns the worker threads, runs jobs, and returns when process
/// 0 ends the cluster. `say` reports waiting.
pub fn serve(spec: &ClusterSpec, say: &dyn Fn(&str)) -> Result<usize, ClusterError> {
    if spec.process == 0 {
        return Err(ClusterError::Usage(
            "process 0 leads the cluster; the others serve it".into(),
        ));
    }
    let (sockets, threads) = connect(spec, None, say)?;
    let guards = start(sockets, spec.process, threads, None)?;
    for r in guards.join() {
        r.map_err(ClusterError::Timely)?;
    }
    Ok(threads)
}

/// Process 0's handle on a running cluster. Dropping it stops every
/// process's workers.
pub struct Cluster {
    lead: Arc<Lead>,
    commands: Sender<Command>,
    results: Receiver<JobResult>,
    /// One job at a time.
    busy: Mutex<()>,
    /// In a mutex only to make the handle `Sync` (the guards hold the
    /// network threads' `Send`-only guard).
    guards: Mutex<Option<WorkerGuards<()>>>,
    processes: usize,
    threads: usize,
}

impl Cluster {
    /// Forms the cluster as process 0 with `threads` workers per process:
    /// waits until every other process has connected.
    pub fn lead(
        spec: &ClusterSpec,
        threads: usize,
        say: &dyn Fn(&str),
    ) -> Result<Self, ClusterError> {
        if spec.process != 0 {
            return Err(ClusterError::Usage(format!(
                "process {} serves; process 0 leads",
                spec.process
            )));
        }
        let (sockets, threads) = connect(spec, Some(threads.max(1)), say)?;
        let (commands, commands_rx) = crossbeam_channel::unbounded();
        let (results_tx, results) = crossbeam_channel::unbounded();
        let lead = Arc::new(Lead {
            slot: Mutex::new(None),
            commands: commands_rx,
            results: results_tx,
        });
        let guards = start(sockets, 0, threads, Some(lead.clone()))?;
        Ok(Self {
            lead,
            commands,
            results,
            busy: Mutex::new(()),
            guards: Mutex::new(Some(guards)),
            processes: spec.addresses.len(),
            threads,
        })
    }

    /// Processes in the cluster.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Worker threads per process.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// TunkRank of `pairs` (b follows a; sorted, distinct, no self-loops)
    /// on every worker of the cluster: the table and the number of rounds,
    /// the same as [`crate::batch::tunkrank`].
    pub fn tunkrank(&self, pairs: Edges) -> Result<(Table, usize), BatchError> {
        let _busy = self.busy.lock();
        *self.lead.slot.lock() = Some(pairs);
        let sent = self.commands.send(Command::Batch);
        let result = match sent {
            Ok(()) => self.results.recv().map_err(|_| {
                BatchError::Timely("the cluster's workers stopped during a job".into())
            }),
            Err(_) => Err(BatchError::Timely(
                "the cluster's workers have stopped".into(),
            )),
        };
        *self.lead.slot.lock() = None;
        result?
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(guards) = self.guards.get_mut().take() {
            for r in guards.join() {
                if let Err(e) = r {
                    eprintln!("exoflow: a cluster worker failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{self, Graph};
    use crate::EdgeOp;

    fn free_addr() -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("127.0.0.1:{}", l.local_addr().expect("addr").port())
    }

    fn spec(addresses: &[String], process: usize) -> ClusterSpec {
        ClusterSpec {
            addresses: addresses.to_vec(),
            process,
            timeout: Duration::from_secs(30),
        }
    }

    /// Three processes of two workers, several jobs in a row (one of them
    /// empty): every table is the reference's, bit for bit.
    #[test]
    fn a_cluster_of_three_processes_equals_the_reference() {
        let addresses: Vec<String> = (0..3).map(|_| free_addr()).collect();
        let servers: Vec<_> = (1..3)
            .map(|p| {
                let s = spec(&addresses, p);
                std::thread::spawn(move || serve(&s, &|_| ()))
            })
            .collect();
        let cluster = Cluster::lead(&spec(&addresses, 0), 2, &|_| ()).expect("lead");
        assert_eq!((cluster.processes(), cluster.threads()), (3, 2));
        for seed in 0..4u64 {
            let ops: Vec<EdgeOp> = (0..(seed * 700))
                .map(|i| {
                    let z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
                    EdgeOp {
                        src: (z >> 7) % 150,
                        dst: (z >> 23) % 150,
                        insert: z % 9 != 0,
                    }
                })
                .collect();
            let want = reference::tunkrank(&Graph::from_ops(&ops)).expect("reference");
            let (got, _) = cluster
                .tunkrank(Arc::new(reference::apply_ops(&ops)))
                .expect("cluster");
            assert_eq!(got, want, "job {seed}");
        }
        drop(cluster);
        for s in servers {
            assert_eq!(s.join().expect("server thread").expect("serve"), 2);
        }
    }

    #[test]
    fn disagreeing_processes_are_refused_clearly() {
        let addresses: Vec<String> = (0..2).map(|_| free_addr()).collect();
        // Process 1 believes in three processes.
        let mut wrong = spec(&addresses, 1);
        wrong.addresses.push(free_addr());
        let server = std::thread::spawn(move || serve(&wrong, &|_| ()));
        let Err(err) = Cluster::lead(&spec(&addresses, 0), 1, &|_| ()) else {
            panic!("a cluster that disagrees was formed");
        };
        let err = err.to_string();
        assert!(err.contains("--processes 3"), "{err}");
        let err = server
            .join()
            .expect("thread")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("--processes 2"), "{err}");
    }

    #[test]
    fn a_missing_process_is_a_timeout_that_names_it() {
        let addresses: Vec<String> = (0..2).map(|_| free_addr()).collect();
        let mut s = spec(&addresses, 0);
        s.timeout = Duration::from_millis(300);
        let err = Cluster::lead(&s, 1, &|_| ())
            .err()
            .expect("timeout")
            .to_string();
        assert!(
            err.contains("process 1") && err.contains("--process 1"),
            "{err}"
        );
    }

    #[test]
    fn hostfiles_are_checked() {
        let dir = std::env::temp_dir().join(format!("exoflow-hostfile-{}", std::process::id()));
        std::fs::write(&dir, "# cluster\n127.0.0.1:5000\n\n127.0.0.1:5001 # two\n").expect("write");
        assert_eq!(
            read_hostfile(&dir, 2).expect("read"),
            vec!["127.0.0.1:5000".to_owned(), "127.0.0.1:5001".to_owned()]
        );
        let err = read_hostfile(&dir, 3).expect_err("short").to_string();
        assert!(err.contains("2 address(es) for 3"), "{err}");
        std::fs::write(&dir, "127.0.0.1:5000\nlocalhost 5001\n").expect("write");
        let err = read_hostfile(&dir, 2).expect_err("bad").to_string();
        assert!(err.contains("line 2"), "{err}");
        let _ = std::fs::remove_file(&dir);
    }
}
