//! What the process tests share: the binary, children stopped on drop,
//! free addresses.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The `exoflow-hotel` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_exoflow-hotel");

/// A child process stopped (SIGKILL) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `exoflow-hotel ARGS`, its output discarded.
pub fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start exoflow-hotel"),
    )
}

/// A free address on 127.0.0.1.
pub fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], exoflow_testkit::free_port()))
}

/// Starts a function service on `db` with the flags `extra`, once it
/// listens; and its address.
pub fn functions(db: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let at = addr();
    let listen = at.to_string();
    let mut args = vec!["functions", "--db", db, "--listen", &listen];
    args.extend_from_slice(extra);
    let p = spawn(&args);
    exoflow_testkit::wait_for_port(
        at,
        std::time::Duration::from_secs(30),
        "the function service",
    );
    (p, at)
}

/// A SQLite database in `dir`, seeded with `seed`: the database and its spec
/// (`sqlite:PATH`, for the processes).
#[allow(dead_code)] // not every test binary seeds SQLite here
pub fn seeded_sqlite(
    dir: &std::path::Path,
    seed: exoflow_hotel::data::Seed,
) -> (std::sync::Arc<dyn exoflow_hotel::kv::Kv>, String) {
    let db = format!("sqlite:{}", dir.join("hotel.db").display());
    let kv = exoflow_hotel::kv::open(&db).expect("open");
    exoflow_hotel::data::seed(kv.as_ref(), &seed).expect("seed");
    (kv, db)
}
