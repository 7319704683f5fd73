//! A real Consul agent for tests (feature `test-server`).
//!
//! [`ConsulUnderTest::start`] runs `consul agent -dev` (in memory) on free
//! loopback ports and stops it on drop. The binary is `KALA_CONSUL`, else
//! `~/.cache/kala-consul/consul` (where `.ci/run` unpacks Debian 11's
//! package), else `consul` on the `PATH`; without one it panics saying how
//! to get it: a test that needs Consul never passes without one.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ConsulUnderTest {
    /// `127.0.0.1:PORT`, for [`crate::ConsulOptions::address`].
    pub address: String,
    pub http_port: u16,
    /// The HTTPS port, when started with [`ConsulUnderTest::start_tls`].
    pub https_port: Option<u16>,
    child: Option<Child>,
    /// The agent's arguments, to start it again after [`ConsulUnderTest::kill`].
    args: Vec<String>,
    exe: PathBuf,
}

/// The consul binary tests use.
pub fn consul_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KALA_CONSUL") {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/kala-consul/consul");
        if p.exists() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("consul"))
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl ConsulUnderTest {
    /// An in-memory dev agent.
    pub fn start() -> ConsulUnderTest {
        ConsulUnderTest::launch(None, &[])
    }

    /// A dev agent that also serves HTTPS with `cert`/`key` (PEM files).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> ConsulUnderTest {
        let port = free_port();
        let hcl = [
            format!("ports {{ https = {port} }}"),
            format!("cert_file = {:?}", cert.display().to_string()),
            format!("key_file = {:?}", key.display().to_string()),
        ];
        let mut s = ConsulUnderTest::launch(None, &hcl);
        s.https_port = Some(port);
        s
    }

    /// A single server that keeps its data in `data_dir`, so that it can
    /// be killed and started again with what it had (outage tests).
    pub fn start_persistent(data_dir: &std::path::Path) -> ConsulUnderTest {
        ConsulUnderTest::launch(Some(data_dir), &[])
    }

    /// Starts an agent on fresh ports; an agent that exits or elects no
    /// leader is tried again on other ports (a port taken between
    /// [`free_port`] and the agent's bind, a slow election on a loaded
    /// machine), up to three times.
    fn launch(data_dir: Option<&std::path::Path>, hcl: &[String]) -> ConsulUnderTest {
        let exe = consul_path().unwrap_or_else(|| {
            panic!(
                "no consul binary for this test: set KALA_CONSUL, or unpack Debian 11's consul \
                 package into ~/.cache/kala-consul (.ci/run does)"
            )
        });
        let mut failures = Vec::new();
        for _ in 0..3 {
            let mut server = ConsulUnderTest::configure(exe.clone(), data_dir, hcl);
            match server.try_start() {
                Ok(()) => return server,
                Err(e) => failures.push(e),
            }
        }
        panic!("consul did not start in 3 tries:\n{}", failures.join("\n"));
    }

    fn configure(
        exe: PathBuf,
        data_dir: Option<&std::path::Path>,
        hcl: &[String],
    ) -> ConsulUnderTest {
        let http_port = free_port();
        let p = |n: u16| n.to_string();
        let mode: Vec<String> = match data_dir {
            None => vec!["-dev".into()],
            Some(d) => vec![
                "-server".into(),
                "-bootstrap-expect".into(),
                "1".into(),
                "-data-dir".into(),
                d.display().to_string(),
                "-log-level".into(),
                "warn".into(),
            ],
        };
        let mut args: Vec<String> = vec!["agent".into()];
        args.extend(mode);
        args.extend([
            "-bind".into(),
            "127.0.0.1".into(),
            "-client".into(),
            "127.0.0.1".into(),
            "-http-port".into(),
            p(http_port),
            "-dns-port".into(),
            "-1".into(),
            "-grpc-port".into(),
            "-1".into(),
            "-serf-lan-port".into(),
            p(free_port()),
            "-serf-wan-port".into(),
            p(free_port()),
            "-server-port".into(),
            p(free_port()),
        ]);
        for h in hcl {
            args.extend(["-hcl".to_string(), h.clone()]);
        }
        ConsulUnderTest {
            address: format!("127.0.0.1:{http_port}"),
            http_port,
            https_port: None,
            child: None,
            args,
            exe,
        }
    }

    /// Starts the agent (again) and waits until it has a leader.
    pub fn restart(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// Starts the agent and waits up to 90 s for a leader; on failure the
    /// agent is stopped and the error carries the end of its log.
    fn try_start(&mut self) -> Result<(), String> {
        let log = self.log_path();
        let (out, err) = match std::fs::File::create(&log)
            .and_then(|f| f.try_clone().map(|g| (Stdio::from(f), Stdio::from(g))))
        {
            Ok(pair) => pair,
            Err(_) => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(&self.exe)
            .args(&self.args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        self.child = Some(child);
        let tail = |why: String| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let start = text.len().saturating_sub(2000);
            let start = (start..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            format!(
                "{why}; the end of its log ({}):\n{}",
                log.display(),
                &text[start..]
            )
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if self.has_leader() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(tail(format!(
                    "consul on port {} exited ({status})",
                    self.http_port
                )));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(tail(format!(
                    "consul did not elect a leader on port {} within 90 s",
                    self.http_port
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where the agent's output goes (removed when it is dropped).
    fn log_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!(
            "kala-consul-{}-{}.log",
            std::process::id(),
            self.http_port
        ))
    }

    fn has_leader(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /v1/status/leader HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        out.starts_with("HTTP/1.0 200") && body.len() > 2
    }

    /// SIGKILL (a dev agent keeps nothing; a persistent one keeps its
    /// data directory).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ConsulUnderTest {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.log_path());
    }
}
