//! Test harnesses that start real servers on free loopback ports, wait until
//! they answer, and stop them by PID when dropped.
//!
//! A test that needs a server starts it here, or fails loudly saying what is
//! missing: it never passes because a server happened to be absent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
    l.local_addr().expect("local address").port()
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {addr} within {timeout:?}");
}

/// Finds an executable on PATH (or at the path given by the environment
/// variable `env`).
pub fn find_program(name: &str, env: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// PIDs of servers to kill when the test process exits (servers held in
/// statics, which are never dropped).
static AT_EXIT: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

extern "C" fn kill_registered() {
    if let Ok(pids) = AT_EXIT.lock() {
        for &pid in pids.iter() {
            // SAFETY: kill(2) on a PID this process started.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Kills `child` when this process exits, even if it is never dropped
/// (a server shared by the tests of a binary through a static).
pub fn kill_at_exit(child: &Child) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registering a plain `extern "C"` function with atexit(3).
        unsafe {
            libc::atexit(kill_registered);
        }
    });
    if let Ok(mut pids) = AT_EXIT.lock() {
        pids.push(child.id());
    }
}

/// A running moto S3 server.
pub struct Moto {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    port: u16,
}

impl Moto {
    /// Kills the server when the process exits: for a server kept in a
    /// static and shared by several tests.
    pub fn shared(self) -> Self {
        kill_at_exit(&self.child);
        self
    }
}

static AWS_ENV: Once = Once::new();

/// Sets the dummy credentials and region moto accepts, once per process,
/// before any S3 client reads them.
pub fn set_moto_credentials() {
    AWS_ENV.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            if std::env::var_os(k).is_none() {
                // Done once, before the S3 tests start any client thread.
                std::env::set_var(k, v);
            }
        }
    });
}

impl Moto {
    /// Starts `moto_server` on a free port and waits until it answers.
    ///
    /// Panics with the install command when moto is missing.
    pub fn start() -> Self {
        set_moto_credentials();
        let program = find_program("moto_server", "MOTO_SERVER").unwrap_or_else(|| {
            panic!("moto_server not found: install it with `pip install 'moto[server]==5.2.5'` (bash .ci/run does)")
        });
        let port = free_port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(30),
            "moto_server",
        );
        // Listening is not answering: wait for a real HTTP response.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if moto.http("GET", "/").is_some() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server on port {port} does not answer HTTP");
    }

    /// Sends a bare HTTP request; returns the status code.
    pub fn http(&self, method: &str, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace().nth(1)?.parse().ok()
    }

    /// Creates a bucket (path-style).
    pub fn create_bucket(&self, bucket: &str) {
        let code = self.http("PUT", &format!("/{bucket}"));
        assert_eq!(code, Some(200), "creating bucket {bucket} on moto");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running tansu Kafka broker with its SQLite storage (never the
/// in-memory engine, which loses records on fetches that start inside a
/// batch).
pub struct Tansu {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    /// Its bootstrap address, `127.0.0.1:PORT`.
    pub brokers: String,
}

impl Tansu {
    /// Starts tansu on a free port, its database in `dir`, and waits until
    /// it answers.
    ///
    /// Panics with the install command when tansu is missing.
    pub fn start(dir: &std::path::Path) -> Self {
        let port = free_port();
        let mut t = Self {
            child: None,
            dir: dir.to_owned(),
            port,
            brokers: format!("127.0.0.1:{port}"),
        };
        t.spawn();
        t
    }

    fn spawn(&mut self) {
        let program = find_program("tansu", "TANSU").unwrap_or_else(|| {
            panic!("tansu not found: install it with `cargo install tansu --version 0.6.0 --features libsql --locked` (bash .ci/run does)")
        });
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("create tansu.log");
        let child = Command::new(program)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(30),
            "tansu",
        );
    }

    /// Kills the broker (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port and database.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}
