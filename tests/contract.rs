//! The wire contract: every response shape Kala's clients read has exactly
//! the keys the real Kala sends. The reference is
//! `tests/contract/kala-transcripts.md` (recorded from Kala @ 4eb4f7a, a
//! copy of shared/spec/kala-transcripts.md); its JSON bodies are grouped by
//! shape and flattened into key paths, and the same shapes from a running
//! kala-server must have the same set. A key kala adds to a Kala shape
//! fails this test (strict clients such as kala-python reject unknown keys),
//! and so does a key it drops.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::{Value, json};

type Shapes = BTreeMap<&'static str, BTreeSet<String>>;

/// Key paths of `v`: `job.metadata.success_count`, `job.stats[].job_id`…
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                // Keys that are data: header names, and the list's ids
                // (its jobs count as the "job" shape, see `add`).
                if k == "headers" || k == "jobs" {
                    continue;
                }
                paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Which shape a response body is, by its top-level key.
fn shape(v: &Value) -> Option<&'static str> {
    let m = v.as_object()?;
    let only = |k: &str| m.len() == 1 && m.contains_key(k);
    if m.contains_key("job") {
        Some("job")
    } else if only("jobs") {
        Some("job list")
    } else if m.contains_key("job_stats") {
        Some("job stats")
    } else if m.contains_key("Stats") {
        Some("app stats")
    } else if only("id") {
        Some("created")
    } else if only("error") {
        Some("error")
    } else {
        None
    }
}

fn add(shapes: &mut Shapes, v: &Value) {
    let Some(s) = shape(v) else { return };
    paths(v, "", shapes.entry(s).or_default());
    // A listed job is the same shape as `{"job": …}`.
    if let Some(jobs) = v.get("jobs").and_then(Value::as_object) {
        for job in jobs.values() {
            paths(&json!({ "job": job }), "", shapes.entry("job").or_default());
        }
    }
}

/// Every JSON body of the transcripts, by shape.
fn kala_shapes() -> Shapes {
    let text = include_str!("contract/kala-transcripts.md");
    let mut shapes = Shapes::new();
    for block in text.split("```console").skip(1) {
        let block = block.split("```").next().unwrap_or("");
        // The body follows the headers' blank line.
        let Some((_, body)) = block.split_once("\n\n") else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(body.trim()) {
            add(&mut shapes, &v);
        }
    }
    shapes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kala_shape_has_exactly_kalas_keys() {
    let kala = kala_shapes();
    for s in [
        "job",
        "job list",
        "job stats",
        "app stats",
        "created",
        "error",
    ] {
        assert!(kala.contains_key(s), "the transcripts have no {s} body");
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let mut ours = Shapes::new();
    let mut record = |r: Resp| {
        let v = r.json();
        add(&mut ours, &v);
        v
    };
    // The same kinds of jobs the transcripts show: a one-off that ran, a
    // scheduled one, a failing one with retries, a parent with a child, a
    // remote job with headers and expected codes.
    let mut ids = Vec::new();
    for body in [
        json!({"name": "once", "command": "bash -c 'echo hello'"}),
        json!({"name": "sched", "command": "true", "schedule": starts_in(3600, "R2", "PT2S"), "epsilon": "PT5S"}),
        json!({"name": "fails", "command": "false", "retries": 1}),
        json!({"name": "remote", "type": 1, "remote_properties": {"url": "http://127.0.0.1:1/", "method": "GET", "headers": {"X-A": ["1"]}, "expected_response_codes": [200]}}),
    ] {
        let v = record(req(&c, "POST", &s.url("/api/v1/job/"), Some(&body.to_string())).await);
        ids.push(v["id"].as_str().unwrap_or_default().to_string());
    }
    let child = json!({"name": "child", "command": "true", "parent_jobs": [ids[1]]});
    let v = record(req(&c, "POST", &s.url("/api/v1/job/"), Some(&child.to_string())).await);
    ids.push(v["id"].as_str().unwrap_or_default().to_string());
    eventually(20, || {
        let (c, url) = (c.clone(), s.url(&format!("/api/v1/job/{}/", ids[0])));
        async move {
            let v = req(&c, "GET", &url, None).await.json();
            (v["job"]["metadata"]["success_count"] == 1).then_some(())
        }
    })
    .await;
    for id in &ids {
        record(req(&c, "GET", &s.url(&format!("/api/v1/job/{id}/")), None).await);
        record(req(&c, "GET", &s.url(&format!("/api/v1/job/stats/{id}/")), None).await);
    }
    record(req(&c, "GET", &s.url("/api/v1/job/"), None).await);
    record(req(&c, "GET", &s.url("/api/v1/stats/"), None).await);
    record(req(&c, "POST", &s.url("/api/v1/job/"), Some("{not json")).await);

    for (shape, want) in &kala {
        let Some(got) = ours.get(shape) else {
            panic!("kala produced no {shape} body to compare");
        };
        let extra: Vec<_> = got.difference(want).collect();
        let missing: Vec<_> = want.difference(got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{shape}: keys Kala never sends {extra:?}; Kala's keys kala lacks {missing:?}"
        );
    }
}
