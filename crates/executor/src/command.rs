//! Local commands: `$NAME` expansion, shell-style splitting, a process
//! group of their own, output read from one async pipe (no thread per
//! run), timeouts that kill the whole group.
//!
//! Owns: [`run_command`], [`run_command_with_env`], [`expand_env`].

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Attempt, OUTPUT_TAIL, tail};

/// Replaces `$NAME` and `${NAME}` outside single quotes with the value from
/// `env`, quoted so that it stays one word (as Kala does by expanding after
/// splitting).
pub fn expand_env(cmd: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(cmd.len());
    let mut chars = cmd.chars().peekable();
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '\'' if !double => {
                single = !single;
                out.push(c);
            }
            '"' if !single => {
                double = !double;
                out.push(c);
            }
            '$' if !single => {
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if braced && chars.peek() == Some(&'}') {
                    chars.next();
                } else if braced || name.is_empty() {
                    // Not a variable reference: keep the text as written.
                    out.push('$');
                    if braced {
                        out.push('{');
                    }
                    out.push_str(&name);
                    continue;
                }
                let value = env(&name).unwrap_or_default();
                if double {
                    for v in value.chars() {
                        if matches!(v, '"' | '\\') {
                            out.push('\\');
                        }
                        out.push(v);
                    }
                } else {
                    out.push('\'');
                    out.push_str(&value.replace('\'', "'\\''"));
                    out.push('\'');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Runs a command line the way a local job does (also `kala-server run`).
pub async fn run_command(cmd: &str, timeout: Option<Duration>) -> Attempt {
    run_command_with_env(cmd, timeout, &[]).await
}

/// [`run_command`], with `env` added to the process's environment.
pub async fn run_command_with_env(
    cmd: &str,
    timeout: Option<Duration>,
    env: &[(&'static str, String)],
) -> Attempt {
    let started = Instant::now();
    let expanded = expand_env(cmd, |name| std::env::var(name).ok());
    let argv = match shell_words::split(&expanded) {
        Ok(a) => a.into_iter().filter(|w| !w.is_empty()).collect::<Vec<_>>(),
        Err(_) => return Attempt::failed("invalid command line string", started),
    };
    let Some((program, args)) = argv.split_first() else {
        return Attempt::failed("Job Command is empty.", started);
    };
    // One pipe per run for stdout and stderr together; the parent reads
    // it on the runtime (no thread), the child writes a blocking end.
    let pipe = tokio::net::unix::pipe::pipe().and_then(|(tx, rx)| {
        let writer = tx.into_blocking_fd()?;
        let writer2 = writer.try_clone()?;
        Ok((rx, writer, writer2))
    });
    let (reader, writer, writer2) = match pipe {
        Ok(p) => p,
        Err(e) => return Attempt::failed(format!("cannot create a pipe: {e}"), started),
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0)
        .kill_on_drop(true);
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let spawned = command.spawn();
    // The parent's copies of the write end must go, or the reader never ends.
    drop(command);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Attempt::failed(
                format!("exec: {program:?}: executable file not found in $PATH"),
                started,
            );
        }
        Err(e) => return Attempt::failed(format!("exec: {program:?}: {e}"), started),
    };
    let pgid = child.id();
    let collector = OutputTail::start(reader);
    let status = match timeout {
        None => child.wait().await,
        Some(t) => match tokio::time::timeout(t, child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                if let Some(pgid) = pgid {
                    kill_group(pgid);
                }
                let _ = child.wait().await;
                let output = collector.finish().await;
                return Attempt {
                    success: false,
                    exit_code: None,
                    error: Some(format!("timed out after {t:?}; process group killed")),
                    output,
                    duration: started.elapsed(),
                };
            }
        },
    };
    let output = collector.finish().await;
    match status {
        Ok(s) if s.success() => Attempt {
            success: true,
            exit_code: Some(0),
            error: None,
            output,
            duration: started.elapsed(),
        },
        Ok(s) => {
            let why = match s.code() {
                Some(code) => format!("exit status {code}"),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    format!("signal: {}", s.signal().unwrap_or(0))
                }
            };
            Attempt {
                success: false,
                exit_code: s.code(),
                error: Some(format!("{why}: {}", output.trim())),
                output,
                duration: started.elapsed(),
            }
        }
        Err(e) => Attempt::failed(format!("wait: {e}"), started),
    }
}

/// The tail of a run's output, read from its pipe by a task on the
/// runtime: no thread per run, and a process the command left running in
/// the background cannot pin anything.
struct OutputTail {
    buf: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

/// How long output is still read after the command's main process exited.
const OUTPUT_DRAIN: Duration = Duration::from_millis(200);

impl OutputTail {
    fn start(mut reader: tokio::net::unix::pipe::Receiver) -> OutputTail {
        use tokio::io::AsyncReadExt;
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let task = tokio::spawn(async move {
            let mut chunk = vec![0u8; 8192];
            while let Ok(n) = reader.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let Ok(mut b) = sink.lock() else { break };
                b.extend_from_slice(&chunk[..n]);
                if b.len() > 2 * OUTPUT_TAIL {
                    let cut = b.len() - OUTPUT_TAIL;
                    b.drain(..cut);
                }
            }
        });
        OutputTail { buf, task }
    }

    /// Reads on for at most [`OUTPUT_DRAIN`] (until every writer closed
    /// the pipe), then stops reading; the tail read so far is kept either
    /// way.
    async fn finish(mut self) -> String {
        if tokio::time::timeout(OUTPUT_DRAIN, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        let bytes = match self.buf.lock() {
            Ok(b) => b.clone(),
            Err(p) => p.into_inner().clone(),
        };
        tail(&bytes)
    }
}

#[allow(unsafe_code)]
fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the process group we
    // created with process_group(0); it touches no memory of ours.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}
