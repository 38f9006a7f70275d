//! # exoflow-hotel: stateful serverless workflows on exoflow
//!
//! The paper's §5.2 application: a travel-reservation service (hotels and
//! flights) whose functions keep their state in a database, made
//! exactly-once by workflow checkpoints, beside a Beldi baseline on the
//! same database.
//!
//! Built so far: the database layer ([`kv`]): one key-value trait with
//! conditional writes and transactions, over SQLite (the embedded default)
//! and DynamoDB's API, with one conformance suite; the seed data
//! ([`data`]); the functions as plain Rust over it ([`functions`]), with
//! exoflow mode's reservation steps; the function service, separate
//! processes serving them over HTTP with injected failures ([`service`],
//! `exoflow-hotel functions`), and its retrying client ([`client`]); the
//! gateway of exoflow mode, a workflow per request ([`gateway`]); the
//! open-loop load generator ([`load`]); and the exactly-once check of the
//! database ([`check`]); `exoflow-hotel demo` runs them all. The Beldi
//! baseline ([`beldi`]): Beldi's protocol on the same database and the
//! functions over it, served by the same service.
#![deny(missing_docs)]

pub mod beldi;
pub mod check;
pub mod client;
pub mod data;
pub mod functions;
pub mod gateway;
pub mod kv;
pub mod load;
pub mod service;
