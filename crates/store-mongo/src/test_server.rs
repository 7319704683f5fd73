//! A MongoDB-wire-compatible server for tests (feature `test-server`).
//!
//! [`MongoUnderTest::start`] uses the server named by `KALA_TEST_MONGO_URL`
//! (any real MongoDB) when it is set; otherwise it starts `secantusd-py`
//! (PyPI `secantusdb`, installed by `.ci/run` into
//! `~/.cache/kala-secantus`) on a free loopback port with in-memory storage
//! and stops it on drop. It panics with a message saying what is missing
//! when neither is available: a test that needs MongoDB never passes
//! without one.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MongoUnderTest {
    /// `mongodb://…` address to give [`crate::MongoOptions::address`].
    pub address: String,
    /// Which server: `secantusdb` or `KALA_TEST_MONGO_URL`.
    pub kind: &'static str,
    child: Option<Child>,
}

/// Where `.ci/run` installs secantusdb.
pub fn secantusd_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KALA_SECANTUSD") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let p = home.join(".cache/kala-secantus/bin/secantusd-py");
    p.exists().then_some(p)
}

impl MongoUnderTest {
    pub fn start() -> MongoUnderTest {
        if let Ok(url) = std::env::var("KALA_TEST_MONGO_URL") {
            return MongoUnderTest {
                address: url,
                kind: "KALA_TEST_MONGO_URL",
                child: None,
            };
        }
        let exe = secantusd_path().unwrap_or_else(|| {
            panic!(
                "no MongoDB for this test: set KALA_TEST_MONGO_URL, or install secantusdb \
                 (.ci/run does: python3 -m venv ~/.cache/kala-secantus && \
                 ~/.cache/kala-secantus/bin/pip install secantusdb==0.7.0b3)"
            )
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let child = Command::new(&exe)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage-path", ":memory:"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let server = MongoUnderTest {
            address: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            kind: "secantusdb",
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "secantusd-py did not listen on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for MongoUnderTest {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
