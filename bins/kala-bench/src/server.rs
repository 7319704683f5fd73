//! Starting kala-server for a benchmark: kala-testkit's process helper
//! (the same one the integration tests use), the binary next to this one.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
pub use kala_testkit::ServerProcess;

pub fn server_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("kala-server");
    if !p.exists() {
        bail!(
            "{} not found; build it (cargo build --release -p kala-server) or pass --server",
            p.display()
        );
    }
    Ok(p)
}

/// `kala-server serve --port 0 --bolt-path dir extra…`, once it listens.
pub fn start_server(bin: &Path, dir: &Path, extra: &[String]) -> anyhow::Result<ServerProcess> {
    Ok(ServerProcess::start(bin, dir, extra)?)
}

/// SIGTERM and wait, so a remote store is closed cleanly.
pub fn stop(server: ServerProcess) -> anyhow::Result<()> {
    server.stop()?;
    Ok(())
}

/// CPU time (user + system) in seconds of process `pid` (a number or
/// `self`), from `/proc/PID/stat` (clock ticks of 1/100 s).
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / 100.0)
}
