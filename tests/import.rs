//! `kala-server import --from URL`: jobs copied from a running server (the
//! API is Kala's) into a stopped server's store, with their ids, parents
//! before children; a second import skips what exists.

mod common;

use std::process::Command;

use common::*;
use kala_client::{Client, Job, JobType};

fn import(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("import")
        .args(args)
        .output()
        .expect("run kala-server import");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_come_over_with_their_ids_and_links() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = Server::start(src_dir.path(), &["--auth-token", "old-secret"]);
    let src_base = src.base.clone();
    let old = Client::builder(&src.base)
        .token("old-secret")
        .build()
        .unwrap();
    let mut parent = Job::new("parent", "true");
    parent.schedule = starts_in(3600, "R", "PT1H");
    let parent_id = old.create(&parent).await.unwrap();
    let mut child = Job::new("child", "echo child");
    child.parent_jobs = Some(vec![parent_id.clone()]);
    let child_id = old.create(&child).await.unwrap();
    let mut paused = Job::new("paused", "true");
    paused.schedule = starts_in(7200, "R", "P1D");
    paused.disabled = true;
    let paused_id = old.create(&paused).await.unwrap();
    let mut remote = Job::new("remote", "");
    remote.job_type = JobType::Remote;
    std::sync::Arc::make_mut(&mut remote.remote_properties).url = "http://127.0.0.1:9/ping".into();
    std::sync::Arc::make_mut(&mut remote.remote_properties).method = "POST".into();
    remote.schedule = starts_in(3600, "R", "PT2H");
    let remote_id = old.create(&remote).await.unwrap();

    let dst = tempfile::tempdir().unwrap();
    let d = dst.path().to_str().unwrap();
    // Without the source's token: a clear error, nothing written.
    let (ok, text) = import(&["--from", &src.base, "--bolt-path", d]);
    assert!(!ok, "{text}");
    assert!(text.contains("401"), "{text}");

    let (ok, text) = import(&[
        "--from",
        &src.base,
        "--auth-token",
        "old-secret",
        "--bolt-path",
        d,
        "--dry-run",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("would import 4 jobs"), "{text}");
    let pos = |id: &str| {
        text.find(id)
            .unwrap_or_else(|| panic!("{id} not listed: {text}"))
    };
    assert!(pos(&parent_id) < pos(&child_id), "parents first: {text}");

    let (ok, text) = import(&[
        "--from",
        &src.base,
        "--auth-token",
        "old-secret",
        "--bolt-path",
        d,
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("imported 4 jobs"), "{text}");
    let (ok, text) = import(&[
        "--from",
        &src.base,
        "--auth-token",
        "old-secret",
        "--bolt-path",
        d,
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("imported 0 jobs, skipped 4"), "{text}");
    src.stop();

    let s = Server::start(dst.path(), &[]);
    let here = s.api();
    let jobs = here.list().await.unwrap();
    assert_eq!(jobs.len(), 4);
    // Each imported job has its audit entry, naming where it came from.
    let audit = req(&client(), "GET", &s.url("/api/v1/audit/"), None)
        .await
        .json();
    let imported: Vec<&serde_json::Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "import")
        .collect();
    assert_eq!(imported.len(), 4, "{audit}");
    assert!(
        imported.iter().all(|e| e["source"]
            .as_str()
            .is_some_and(|s| s.trim_end_matches('/') == src_base.trim_end_matches('/'))),
        "{audit}"
    );
    assert!(imported.iter().any(|e| e["job_id"] == parent_id.as_str()));
    let p = &jobs[&parent_id].job;
    assert_eq!(p.dependent_jobs.as_deref(), Some(&[child_id.clone()][..]));
    assert!(p.next_run_at.is_some(), "scheduled here");
    let c = &jobs[&child_id].job;
    assert_eq!(c.parent_jobs.as_deref(), Some(&[parent_id.clone()][..]));
    assert_eq!(c.command, "echo child");
    assert!(jobs[&paused_id].job.disabled);
    let r = &jobs[&remote_id].job;
    assert_eq!(r.job_type, JobType::Remote);
    assert_eq!(r.remote_properties.url, "http://127.0.0.1:9/ping");
    assert_eq!(r.remote_properties.method, "POST");
    // The link works: starting the parent runs the child.
    here.start(&parent_id).await.unwrap();
    let runs = eventually(10, || async {
        let runs = here.runs(&child_id, None).await.unwrap();
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    assert_eq!(runs[0].output, "child\n");
    s.stop();
}
