//! Processes a dead server left running.
//!
//! Every local command kala starts for a journaled run carries
//! `KALA_RUN_ID=<run id>` in its environment, and its children inherit it
//! (unless they clear their environment). After a crash, the run journal
//! names the runs that never ended; [`find`] looks for live processes
//! carrying their ids (by reading `/proc/<pid>/environ`, Linux only) and
//! [`kill`] ends them.
//!
//! Owns: the variable's name, the `/proc` scan. Must not: decide what to
//! do with what it finds (the engine records it).

use std::collections::HashMap;

/// The environment variable that tags a run's processes.
pub const RUN_ID_VAR: &str = "KALA_RUN_ID";

/// Whether this platform can find orphans at all (`/proc` is readable).
pub fn supported() -> bool {
    std::fs::metadata("/proc/self/environ").is_ok()
}

/// The live processes (pids) tagged with each of `run_ids`. Processes of
/// other users, or that exited meanwhile, are not seen.
pub fn find(run_ids: &[String]) -> HashMap<String, Vec<u32>> {
    let mut found: HashMap<String, Vec<u32>> = HashMap::new();
    if run_ids.is_empty() {
        return found;
    }
    let wanted: HashMap<Vec<u8>, &String> = run_ids
        .iter()
        .map(|id| (format!("{RUN_ID_VAR}={id}").into_bytes(), id))
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    let me = std::process::id();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        for var in environ.split(|b| *b == 0) {
            if let Some(id) = wanted.get(var) {
                found.entry((*id).clone()).or_default().push(pid);
                break;
            }
        }
    }
    for pids in found.values_mut() {
        pids.sort_unstable();
    }
    found
}

/// Sends SIGKILL to each of `pids`; returns those it reached.
#[allow(unsafe_code)]
pub fn kill(pids: &[u32]) -> Vec<u32> {
    let mut killed = Vec::new();
    for &pid in pids {
        let Ok(p) = i32::try_from(pid) else { continue };
        if p <= 1 {
            continue;
        }
        // SAFETY: kill(2) on a positive pid; touches no memory of ours.
        if unsafe { libc::kill(p, libc::SIGKILL) } == 0 {
            killed.push(pid);
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_kills_a_tagged_process_and_its_children() {
        if !supported() {
            return;
        }
        let id = format!("test-{}", std::process::id());
        let mut child = std::process::Command::new("bash")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .env(RUN_ID_VAR, &id)
            .spawn()
            .expect("spawn bash");
        // bash forks its two sleeps right away; give it a moment.
        let mut pids = Vec::new();
        for _ in 0..100 {
            pids = find(std::slice::from_ref(&id))
                .remove(&id)
                .unwrap_or_default();
            if pids.len() >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(pids.len() >= 3, "bash and its two sleeps: {pids:?}");
        assert!(pids.contains(&child.id()));
        assert!(find(&["some-other-run".to_string()]).is_empty());
        assert_eq!(kill(&pids).len(), pids.len());
        let status = child.wait().expect("wait");
        assert!(!status.success());
        for _ in 0..100 {
            if find(std::slice::from_ref(&id)).is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("tagged processes still alive after SIGKILL");
    }
}
