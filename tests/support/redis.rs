//! A private `redis-server` per test: started on a free port, killed on drop.
//!
//! Tests never touch a shared Redis destructively: they start their own server
//! (`--save "" --appendonly no`, so nothing outlives it), or, when `REDIS_URL` is
//! set and the test needs no stop/restart, use that server with a key prefix of
//! their own (see [`shared_url`]).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer its first PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS material for a server started with [`RedisServer::start_tls`].
struct Tls {
    dir: tempfile::TempDir,
}

/// A `redis-server` child process owned by one test.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    password: Option<String>,
    tls: Option<Tls>,
    /// Set for a server whose data survives `stop`/`restart` (an fsync'd AOF).
    data_dir: Option<tempfile::TempDir>,
    /// Restarted from a snapshot: loads `dump.rdb` from `data_dir`, no AOF.
    from_snapshot: bool,
}

impl RedisServer {
    /// Start a plain server on a free port and wait until it answers.
    pub fn start() -> Self {
        Self::launch(None, None)
    }

    /// Start a server that requires `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::launch(Some(password.to_owned()), None)
    }

    /// Start a server that speaks only TLS, with a fresh self-signed certificate.
    pub fn start_tls() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for TLS files");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl could not make a certificate");
        Self::launch(None, Some(Tls { dir }))
    }

    /// Start a server that keeps its data across [`RedisServer::restart`]: an
    /// append-only file synced on every write, as a durable production Redis.
    pub fn start_persistent() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            password: None,
            tls: None,
            data_dir: Some(tempfile::tempdir().expect("a temporary directory for Redis data")),
            from_snapshot: false,
        };
        server.spawn();
        server
    }

    fn launch(password: Option<String>, tls: Option<Tls>) -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            password,
            tls,
            data_dir: None,
            from_snapshot: false,
        };
        server.spawn();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/DB` (or `rediss://...#insecure` for a TLS server,
    /// whose certificate is self-signed), with the password when there is one.
    pub fn url(&self, db: u32) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = match &self.password {
            Some(password) => format!(":{password}@"),
            None => String::new(),
        };
        let fragment = if self.tls.is_some() { "#insecure" } else { "" };
        format!("{scheme}://{auth}127.0.0.1:{}/{db}{fragment}", self.port)
    }

    /// Kill the server; the port stays reserved for [`RedisServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The server's process id while it runs (to stop or freeze it with signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Take a point-in-time snapshot (`SAVE`) of a [`RedisServer::start_persistent`]
    /// server and copy it to `to`.
    pub fn save_snapshot(&self, to: &std::path::Path) {
        let dir = self
            .data_dir
            .as_ref()
            .expect("snapshots need start_persistent");
        let client = redis::Client::open(self.url(0)).expect("a valid Redis URL");
        let mut connection = client.get_connection().expect("a connection to the server");
        redis::cmd("SAVE")
            .query::<()>(&mut connection)
            .expect("SAVE succeeds");
        std::fs::copy(dir.path().join("dump.rdb"), to).expect("the snapshot can be copied");
    }

    /// Kill the server and start it again on the same port from the snapshot
    /// `rdb` (see [`RedisServer::save_snapshot`]), as a restore from a backup:
    /// everything written after that snapshot is gone, and the server keeps
    /// no AOF from then on.
    pub fn restart_from_snapshot(&mut self, rdb: &std::path::Path) {
        self.stop();
        let dir = self
            .data_dir
            .as_ref()
            .expect("snapshots need start_persistent");
        let _ = std::fs::remove_dir_all(dir.path().join("appendonlydir"));
        std::fs::copy(rdb, dir.path().join("dump.rdb")).expect("the snapshot can be restored");
        self.from_snapshot = true;
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let port = self.port.to_string();
        match &self.tls {
            None => {
                command.args(["--port", &port]);
            }
            Some(tls) => {
                let file = |name: &str| tls.dir.path().join(name);
                command
                    .args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(file("cert.pem"))
                    .arg("--tls-key-file")
                    .arg(file("key.pem"))
                    .arg("--tls-ca-cert-file")
                    .arg(file("cert.pem"))
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        if let Some(dir) = &self.data_dir {
            // Later directives win over the `--appendonly no` above. Redis 7
            // with an AOF enabled but absent starts empty, ignoring dump.rdb.
            if !self.from_snapshot {
                command.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
            command.arg("--dir").arg(dir.path());
        }
        self.child = Some(command.spawn().expect("redis-server is installed"));
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            if self.answers() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Does the server accept connections (and, without TLS, answer PING)?
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls.is_some() {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        // Before AUTH a password-protected server answers PING with -NOAUTH: it is
        // up all the same.
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 64];
        matches!(stream.read(&mut reply), Ok(n) if n > 0 && (reply[0] == b'+' || reply[0] == b'-'))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port nobody listens on right now, for a server a test starts.
///
/// Not one the OS picks (`bind 127.0.0.1:0`): that comes from the ephemeral
/// range, where every outgoing connection of every process on the machine
/// takes its local port too, and one did take a cluster node's port between
/// this call and the node's start (a CI run: "cluster node ... did not
/// start"). Ports below that range are handed out in turn from an offset of
/// this process' own, so two calls in one test binary never meet, and each is
/// checked free before it is handed out.
pub fn free_port() -> u16 {
    // Linux' default ephemeral range starts at 32768; stay below it.
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919) % SPAN));
    for _ in 0..SPAN {
        let port = (FIRST + next.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

/// `REDIS_URL` when it is set, for tests that need no stop/restart. Such tests
/// must confine themselves to the prefix from [`unique_prefix`].
pub fn shared_url() -> Option<String> {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A key prefix no other test (in this process or another) uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}n{}_",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
