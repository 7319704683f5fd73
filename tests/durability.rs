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
