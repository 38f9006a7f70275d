//! Building a workflow: a DAG of named tasks whose inputs are constants
//! (captured by the task function) or other tasks' outputs.
//!
//! Tasks are added in dependency order (an input must exist before the task
//! that reads it), so the insertion order is a topological order, and a task's
//! id, derived from its position and name, is the same whenever the same code
//! builds the DAG again: that is how resume finds committed outputs.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::codec::{self, Kind};
use crate::id::{validate_component, InvalidId};
use crate::task::{Checkpoint, Failure, TaskError, TaskOptions};
use crate::TaskContext;

/// A value passed between tasks in memory: shared, never copied.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;
type Boxed = Box<dyn Any + Send + Sync>;
pub(crate) type TaskFn =
    Arc<dyn Fn(&TaskContext<'_>, &[Value]) -> Result<Boxed, Failure> + Send + Sync>;

pub use crate::task::Data;

/// Type-specific conversions of a node's output, monomorphized per type.
#[derive(Clone, Copy)]
pub(crate) struct Codec {
    pub encode: fn(&(dyn Any + Send + Sync)) -> Result<Vec<u8>, postcard::Error>,
    pub decode: fn(&str, &[u8]) -> Result<Value, codec::DecodeError>,
    /// Turns the function's outcome into the node's value (catch_errors wraps
    /// it in a `Result`).
    pub finish: fn(Result<Boxed, TaskError>) -> Result<Value, TaskError>,
}

fn encode_as<T: Data>(v: &(dyn Any + Send + Sync)) -> Result<Vec<u8>, postcard::Error> {
    match v.downcast_ref::<T>() {
        Some(t) => codec::encode(Kind::TaskOutput, t),
        None => Err(postcard::Error::SerializeBufferFull),
    }
}

fn decode_as<T: Data>(key: &str, bytes: &[u8]) -> Result<Value, codec::DecodeError> {
    let v: T = codec::decode(key, Kind::TaskOutput, bytes)?;
    Ok(Arc::new(v))
}

fn finish_plain(r: Result<Boxed, TaskError>) -> Result<Value, TaskError> {
    r.map(Value::from)
}

fn finish_caught<T: Data>(r: Result<Boxed, TaskError>) -> Result<Value, TaskError> {
    let caught: Result<T, TaskError> = match r {
        Ok(b) => match b.downcast::<T>() {
            Ok(t) => Ok(*t),
            Err(_) => {
                return Err(TaskError {
                    task: String::new(),
                    message: "internal: output of an unexpected type".to_owned(),
                    attempts: 0,
                })
            }
        },
        Err(e) => Err(e),
    };
    Ok(Arc::new(caught))
}

fn codec_of<T: Data>() -> Codec {
    Codec {
        encode: encode_as::<T>,
        decode: decode_as::<T>,
        finish: finish_plain,
    }
}

pub(crate) struct Node {
    pub name: String,
    pub id: String,
    pub opts: TaskOptions,
    pub catch_errors: bool,
    pub inputs: Vec<usize>,
    pub func: TaskFn,
    pub codec: Codec,
}

/// A typed handle to a task's output, to pass as another task's input.
pub struct TaskRef<T> {
    pub(crate) idx: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TaskRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for TaskRef<T> {}

impl<T> TaskRef<T> {
    fn new(idx: usize) -> Self {
        Self {
            idx,
            _t: PhantomData,
        }
    }
}

/// A DAG definition error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// A task name is not a valid name.
    #[error(transparent)]
    InvalidName(#[from] InvalidId),
    /// Two tasks share a name.
    #[error("two tasks are named {0:?}: task names must be unique in a DAG")]
    DuplicateName(String),
    /// A reference to a task of another DAG.
    #[error("task {task:?} reads an input that is not a task of this DAG")]
    ForeignInput {
        /// The reading task.
        task: String,
    },
    /// `catch_errors` on a task that already has readers.
    #[error("catch_errors on task {0:?} must come before any task reads it")]
    CatchAfterUse(String),
    /// A nondeterministic task without a checkpoint could not keep its value.
    #[error("task {0:?} is nondeterministic, so its output must be checkpointed (Sync or Async), not Skip")]
    NondeterministicSkip(String),
    /// A DAG with no task.
    #[error("the DAG has no task")]
    Empty,
}

/// A DAG under construction. Errors are collected and reported by
/// [`Dag::finish`], so that building reads as plain code.
#[derive(Default)]
pub struct Dag {
    pub(crate) nodes: Vec<Node>,
    names: HashMap<String, usize>,
    readers: Vec<usize>,
    error: Option<DagError>,
}

impl Dag {
    /// An empty DAG.
    pub fn new() -> Self {
        Self::default()
    }

    fn add<O: Data>(
        &mut self,
        name: &str,
        opts: TaskOptions,
        inputs: Vec<usize>,
        func: TaskFn,
    ) -> TaskRef<O> {
        let idx = self.nodes.len();
        if self.error.is_none() {
            if let Err(e) = validate_component("task name", name, crate::id::MAX_ID_LEN) {
                self.error = Some(e.into());
            } else if self.names.contains_key(name) {
                self.error = Some(DagError::DuplicateName(name.to_owned()));
            } else if inputs.iter().any(|&i| i >= idx) {
                self.error = Some(DagError::ForeignInput {
                    task: name.to_owned(),
                });
            } else if opts.nondeterministic && opts.checkpoint == Checkpoint::Skip {
                self.error = Some(DagError::NondeterministicSkip(name.to_owned()));
            }
        }
        for &i in &inputs {
            if let Some(r) = self.readers.get_mut(i) {
                *r += 1;
            }
        }
        self.names.insert(name.to_owned(), idx);
        self.nodes.push(Node {
            name: name.to_owned(),
            id: format!("{idx:04}.{name}"),
            opts,
            catch_errors: false,
            inputs,
            func,
            codec: codec_of::<O>(),
        });
        self.readers.push(0);
        TaskRef::new(idx)
    }

    /// A task with no task inputs.
    pub fn task<O, F>(&mut self, name: &str, opts: TaskOptions, f: F) -> TaskRef<O>
    where
        O: Data,
        F: Fn(&TaskContext<'_>) -> Result<O, Failure> + Send + Sync + 'static,
    {
        let func: TaskFn = Arc::new(move |ctx, _| f(ctx).map(|o| Box::new(o) as Boxed));
        self.add(name, opts, Vec::new(), func)
    }

    /// A task reading one task's output.
    pub fn task1<A, O, F>(
        &mut self,
        name: &str,
        opts: TaskOptions,
        a: TaskRef<A>,
        f: F,
    ) -> TaskRef<O>
    where
        A: Data,
        O: Data,
        F: Fn(&TaskContext<'_>, &A) -> Result<O, Failure> + Send + Sync + 'static,
    {
        let func: TaskFn = Arc::new(move |ctx, inputs| {
            let a = input::<A>(inputs, 0)?;
            f(ctx, a).map(|o| Box::new(o) as Boxed)
        });
        self.add(name, opts, vec![a.idx], func)
    }

    /// A task reading two tasks' outputs.
    pub fn task2<A, B, O, F>(
        &mut self,
        name: &str,
        opts: TaskOptions,
        a: TaskRef<A>,
        b: TaskRef<B>,
        f: F,
    ) -> TaskRef<O>
    where
        A: Data,
        B: Data,
        O: Data,
        F: Fn(&TaskContext<'_>, &A, &B) -> Result<O, Failure> + Send + Sync + 'static,
    {
        let func: TaskFn = Arc::new(move |ctx, inputs| {
            let a = input::<A>(inputs, 0)?;
            let b = input::<B>(inputs, 1)?;
            f(ctx, a, b).map(|o| Box::new(o) as Boxed)
        });
        self.add(name, opts, vec![a.idx, b.idx], func)
    }

    /// A task reading the outputs of many tasks of one type (a gather).
    pub fn task_all<A, O, F>(
        &mut self,
        name: &str,
        opts: TaskOptions,
        inputs: &[TaskRef<A>],
        f: F,
    ) -> TaskRef<O>
    where
        A: Data,
        O: Data,
        F: Fn(&TaskContext<'_>, &[&A]) -> Result<O, Failure> + Send + Sync + 'static,
    {
        let n = inputs.len();
        let func: TaskFn = Arc::new(move |ctx, vals| {
            let mut refs = Vec::with_capacity(n);
            for i in 0..n {
                refs.push(input::<A>(vals, i)?);
            }
            f(ctx, &refs).map(|o| Box::new(o) as Boxed)
        });
        self.add(name, opts, inputs.iter().map(|r| r.idx).collect(), func)
    }

    /// Catches the task's failure after its retries: its output becomes
    /// `Result<O, TaskError>` instead of failing the workflow. Call it before
    /// any task reads `r`.
    pub fn catch_errors<O: Data>(&mut self, r: TaskRef<O>) -> TaskRef<Result<O, TaskError>> {
        match self.nodes.get_mut(r.idx) {
            Some(node) if self.readers.get(r.idx).copied().unwrap_or(0) == 0 => {
                node.catch_errors = true;
                node.codec = Codec {
                    encode: encode_as::<Result<O, TaskError>>,
                    decode: decode_as::<Result<O, TaskError>>,
                    finish: finish_caught::<O>,
                };
            }
            Some(node) => {
                if self.error.is_none() {
                    self.error = Some(DagError::CatchAfterUse(node.name.clone()));
                }
            }
            None => {
                if self.error.is_none() {
                    self.error = Some(DagError::ForeignInput {
                        task: "catch_errors".to_owned(),
                    });
                }
            }
        }
        TaskRef::new(r.idx)
    }

    /// Ends the DAG with `output` as the workflow's result.
    pub fn finish<O: Data>(self, output: TaskRef<O>) -> Result<Workflow<O>, DagError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.nodes.is_empty() {
            return Err(DagError::Empty);
        }
        if output.idx >= self.nodes.len() {
            return Err(DagError::ForeignInput {
                task: "output".to_owned(),
            });
        }
        let fingerprint = fingerprint(&self.nodes);
        Ok(Workflow {
            dag: Arc::new(Built {
                nodes: self.nodes,
                output: output.idx,
                fingerprint,
            }),
            _o: PhantomData,
        })
    }
}

fn input<A: 'static>(inputs: &[Value], i: usize) -> Result<&A, Failure> {
    inputs
        .get(i)
        .and_then(|v| v.downcast_ref::<A>())
        .ok_or_else(|| {
            Failure::fatal(format!(
                "internal: input {i} missing or of an unexpected type"
            ))
        })
}

/// A hash of the DAG's shape: names, inputs and options. Resume refuses a DAG
/// whose shape changed since the workflow was created.
fn fingerprint(nodes: &[Node]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for n in nodes {
        eat(n.id.as_bytes());
        eat(&[
            0,
            n.opts.checkpoint as u8,
            n.opts.nondeterministic as u8,
            n.catch_errors as u8,
        ]);
        if n.opts.wait_until_committed {
            eat(b"wait-committed");
        }
        for &i in &n.inputs {
            eat(&(i as u64).to_le_bytes());
        }
    }
    h
}

pub(crate) struct Built {
    pub nodes: Vec<Node>,
    pub output: usize,
    pub fingerprint: u64,
}

impl Built {
    pub fn durable(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.opts.checkpoint != Checkpoint::Skip)
    }
}

/// A finished DAG with a designated output of type `O`.
pub struct Workflow<O> {
    pub(crate) dag: Arc<Built>,
    _o: PhantomData<fn() -> O>,
}

impl<O> Clone for Workflow<O> {
    fn clone(&self) -> Self {
        Self {
            dag: self.dag.clone(),
            _o: PhantomData,
        }
    }
}

impl<O> Workflow<O> {
    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.dag.nodes.len()
    }

    /// Whether the workflow has no task (never true for a finished one).
    pub fn is_empty(&self) -> bool {
        self.dag.nodes.is_empty()
    }

    /// The id of the task named `name`.
    pub fn task_id(&self, name: &str) -> Option<&str> {
        self.dag
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.id.as_str())
    }

    pub(crate) fn erase(self) -> Arc<Built> {
        self.dag
    }
}
