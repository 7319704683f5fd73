//! # kala-testkit
//!
//! One way to start a `kala-server` process, shared by the integration
//! tests (`tests/common`) and `kala-bench`: `serve --port 0` on loopback
//! with a data directory, the address read from the server's first line
//! (`kala-server listening on http://127.0.0.1:PORT`), SIGTERM or SIGKILL
//! to stop it, and a kill on drop so that no test leaves a server behind.

pub mod faults;
pub mod oracle;
pub mod tls;

pub use faults::{Fault, FaultProxy, faketime_env};

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the server prints first once it listens.
pub const LISTENING: &str = "kala-server listening on ";

/// A running `kala-server serve`.
pub struct ServerProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT` (or `https://…` with TLS).
    pub base: String,
    /// The `--bolt-path` directory.
    pub dir: PathBuf,
    /// How long the server took until it listened.
    pub started_in: Duration,
}

impl ServerProcess {
    /// Starts `bin serve --port 0 --bolt-path dir extra…` with
    /// `RUST_LOG=warn` (unless the caller's environment sets it) and waits
    /// for its listening line.
    pub fn start<S: AsRef<std::ffi::OsStr>>(
        bin: &Path,
        dir: &Path,
        extra: &[S],
    ) -> io::Result<ServerProcess> {
        ServerProcess::start_with_env(bin, dir, extra, &[])
    }

    /// [`ServerProcess::start`] with extra environment variables (e.g. a
    /// `PATH` under which no command can be found, for API fuzzing).
    pub fn start_with_env<S: AsRef<std::ffi::OsStr>>(
        bin: &Path,
        dir: &Path,
        extra: &[S],
        env: &[(&str, &str)],
    ) -> io::Result<ServerProcess> {
        let started = Instant::now();
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied());
        cmd.args(["serve", "--port", "0", "--bolt-path"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", bin.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix(LISTENING) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "{} did not start: first line {line:?}",
                bin.display()
            )));
        };
        Ok(ServerProcess {
            base: base.to_string(),
            child,
            dir: dir.to_path_buf(),
            started_in: started.elapsed(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait; the exit code (`None`: killed by a signal).
    pub fn stop(mut self) -> io::Result<Option<i32>> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        Ok(self.child.wait()?.code())
    }

    /// SIGSTOP: the process stops where it is (a paused VM, a GC pause,
    /// a swapped-out process); its sockets stay open.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("-STOP")
    }

    /// SIGCONT after [`ServerProcess::pause`].
    pub fn resume(&self) -> io::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> io::Result<()> {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill {sig} {}: {status}",
                self.child.id()
            )))
        }
    }

    /// SIGKILL, then wait.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory of the process in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other("VmRSS not found"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
