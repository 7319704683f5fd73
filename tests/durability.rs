//! kill -9 in the middle of a stream of creates: every job that got a 201
//! is there after a restart, and the store file opens.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_creates_loses_no_acknowledged_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let base = s.base.clone();
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for w in 0..16 {
        let (acked, base) = (acked.clone(), base.clone());
        writers.push(tokio::spawn(async move {
            let c = client();
            let mut k = 0;
            loop {
                let body = json!({"name": format!("w{w}-{k}"), "command": "true", "schedule": starts_in(3600, "R", "PT1H")});
                match c.post(format!("{base}/api/v1/job/")).body(body.to_string()).send().await {
                    Ok(r) if r.status() == 201 => {
                        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default();
                        if let Some(id) = v["id"].as_str() {
                            acked.lock().unwrap().push(id.to_string());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return, // the server is gone
                }
                k += 1;
            }
        }));
    }
    while Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the stream was running ({} acknowledged)",
        acked.len()
    );

    let s = Server::start(dir.path(), &[]);
    let c = client();
    let list = req(&c, "GET", &s.url("/api/v1/job/?stats=false"), None)
        .await
        .json();
    let jobs = list["jobs"].as_object().unwrap();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !jobs.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged jobs lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} acknowledged creates before SIGKILL, all present after restart ({} stored)",
        acked.len(),
        jobs.len()
    );
}

/// Live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// A command that notes its start in `dir/started`, then runs for a minute
/// (its command line names `dir`, so the test can find it).
fn long_command(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!("bash -c 'echo started >> {d}/started; sleep 60; echo done >> {d}/done'")
}

async fn interrupted_runs(c: &reqwest::Client, s: &Server, id: &str) -> Vec<serde_json::Value> {
    let runs = req(c, "GET", &s.url(&format!("/api/v1/job/{id}/runs/")), None)
        .await
        .json();
    runs["runs"].as_array().cloned().unwrap_or_default()
}

/// Issue 13, point 7: a run is journaled before its process starts; after
/// kill -9 the restarted server records it as interrupted (with its
/// point), kills the process the dead server left, and does not run the
/// point again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_run_is_recorded_as_interrupted_and_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().display().to_string();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let schedule = starts_in(1, "R", "PT1H");
    let id = create(
        &c,
        &s,
        json!({"name": "long", "command": long_command(work.path()), "schedule": schedule}),
    )
    .await;
    let started = work.path().join("started");
    eventually(15, || async { (lines(&started) == 1).then_some(()) }).await;
    s.kill9();
    assert!(
        !processes_with(&marker).is_empty(),
        "the run's process outlives the killed server (its own process group)"
    );

    let s = Server::start(dir.path(), &[]);
    eventually(10, || async {
        processes_with(&marker).is_empty().then_some(())
    })
    .await;
    let runs = interrupted_runs(&c, &s, &id).await;
    assert_eq!(runs.len(), 1, "one record: {runs:?}");
    let run = &runs[0];
    assert_eq!(run["outcome"], "interrupted", "{run}");
    let point = schedule.split('/').nth(1).unwrap();
    let recorded: jiff::Timestamp = run["scheduled_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(recorded, point.parse::<jiff::Timestamp>().unwrap(), "{run}");
    let why = run["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("interrupted") && why.contains("killed"),
        "{why}"
    );
    // Kala's stats show it as a failed run.
    let stats = req(&c, "GET", &s.url(&format!("/api/v1/job/stats/{id}/")), None)
        .await
        .json();
    assert_eq!(stats["job_stats"][0]["success"], false, "{stats}");
    // Before the journal, the restart caught the point up and ran it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lines(&started), 1, "the interrupted point is not run again");
    assert_eq!(lines(&work.path().join("done")), 0);
    let job = get_job(&c, &s, &id).await;
    assert_eq!(job["metadata"]["number_of_finished_runs"], 1, "{job}");
    assert_eq!(job["metadata"]["error_count"], 1, "{job}");
    let metrics = req(&c, "GET", &s.url("/metrics"), None).await.text();
    assert!(
        metrics.contains("kala_runs_total{result=\"interrupted\"} 1"),
        "{metrics}"
    );
    s.stop();
}

/// The same after SIGTERM with a short grace period: the run that did not
/// finish is recorded as interrupted at the next start, and a one-off job
/// does not start again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_by_shutdown_is_recorded_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().display().to_string();
    let s = Server::start(dir.path(), &["--grace-period", "1"]);
    let c = client();
    let id = create(
        &c,
        &s,
        json!({"name": "once", "command": long_command(work.path())}),
    )
    .await;
    let started = work.path().join("started");
    eventually(15, || async { (lines(&started) == 1).then_some(()) }).await;
    let t = Instant::now();
    s.stop();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let s = Server::start(dir.path(), &["--grace-period", "1"]);
    eventually(10, || async {
        processes_with(&marker).is_empty().then_some(())
    })
    .await;
    let runs = interrupted_runs(&c, &s, &id).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["outcome"], "interrupted", "{:?}", runs[0]);
    assert_eq!(runs[0]["trigger"], "once", "{:?}", runs[0]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lines(&started), 1, "the one-off job does not start again");
    s.stop();
}

/// Issue 16, point 6 (on one instance too): a run tells its command who it
/// is, so that jobs can be idempotent; retries keep the run id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_tells_its_command_who_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--node-id", "node-under-test"]);
    let c = client();
    let log = work.path().join("runs");
    let command = format!(
        r#"bash -c 'echo "$KALA_JOB_ID $KALA_RUN_ID $KALA_SCHEDULED_AT $KALA_ATTEMPT $KALA_NODE" >> {}; [ "$KALA_ATTEMPT" = 2 ]'"#,
        log.display()
    );
    let id = create(
        &c,
        &s,
        json!({"name": "who", "command": command, "retries": 1, "schedule": starts_in(1, "R1", "PT1H")}),
    )
    .await;
    let runs = eventually(20, || async {
        let runs = interrupted_runs(&c, &s, &id).await;
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    let run = &runs[0];
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(run["number_of_retries"], 1, "{run}");
    let lines: Vec<Vec<String>> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(lines.len(), 2, "two attempts: {lines:?}");
    for (k, l) in lines.iter().enumerate() {
        assert_eq!(l[0], id);
        assert_eq!(l[1], lines[0][1], "one run id for both attempts");
        assert_eq!(
            l[2],
            run["scheduled_at"].as_str().unwrap(),
            "as in the record"
        );
        assert_eq!(l[3], (k + 1).to_string());
        assert_eq!(l[4], "node-under-test");
    }
    assert_eq!(lines[0][1].len(), 36, "a UUID: {}", lines[0][1]);
    s.stop();
}
