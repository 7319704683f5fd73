//! The audit log against a real `kala-server`: each kind of change makes
//! exactly one entry with the right actor, source, request id and diff;
//! refusals and token reloads are recorded; filters and pages work; an
//! owner-scoped reader sees its owners' entries only; `--audit-log`
//! holds the same entries as JSON lines; a change and its entry survive
//! kill -9 together; in a cluster every instance shows the same entries,
//! each written by the instance that made the change.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn block(name: &str, role: &str, token: &str, owners: Option<&str>) -> String {
    let mut b = format!(
        "[[tokens]]\nname = {name:?}\nrole = {role:?}\nhash = {:?}\n",
        kala_api::hash_of(token)
    );
    if let Some(o) = owners {
        b += &format!("owners = [{o:?}]\n");
    }
    b + "\n"
}

async fn call(
    c: &reqwest::Client,
    s: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    request_id: Option<&str>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut r = c.request(m, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    if let Some(id) = request_id {
        r = r.header("x-request-id", id);
    }
    let resp = r.send().await.expect("request");
    let st = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every entry, page by page.
async fn all_entries(c: &reqwest::Client, s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(cur) => format!("?limit=1000&cursor={cur}"),
            None => "?limit=1000".into(),
        };
        let (st, v) = call(c, s, "", "GET", &format!("/api/v1/audit/{q}"), None, None).await;
        assert_eq!(st, 200, "{v}");
        out.extend(v["entries"].as_array().expect("entries").clone());
        match v["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => return out,
        }
    }
}

async fn entries(c: &reqwest::Client, s: &Server, token: &str, query: &str) -> Vec<Value> {
    let (st, v) = call(
        c,
        s,
        token,
        "GET",
        &format!("/api/v1/audit/{query}"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["entries"].as_array().expect("entries").clone()
}

fn remote(name: &str, owner: &str) -> Value {
    json!({"name": name, "owner": owner, "type": 1, "schedule": starts_in(3600, "R", "PT1H"),
        "remote_properties": {"url": "https://user:hunter2@127.0.0.1:9/x", "timeout": 1,
            "headers": {"Authorization": ["Bearer topsecret"], "Accept": ["text/plain"]}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_has_one_entry_with_its_actor_and_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kala.toml");
    let file = dir.path().join("audit.jsonl");
    std::fs::write(
        &config,
        [
            block("root", "admin", "admin-1", None),
            block("ed", "editor", "editor-1", None),
            block("op", "operator", "operator-1", None),
            block("team-a-reader", "reader", "reader-a", Some("team-a")),
        ]
        .concat(),
    )
    .expect("config");
    let s = Server::start(
        dir.path(),
        &[
            "--config",
            config.to_str().expect("utf8"),
            "--audit-log",
            file.to_str().expect("utf8"),
        ],
    );
    let c = client();

    let (st, v) = call(
        &c,
        &s,
        "editor-1",
        "POST",
        "/api/v1/job/",
        Some(remote("a", "team-a")),
        Some("req-create-1"),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let a = v["id"].as_str().expect("id").to_string();
    let (st, v) = call(
        &c,
        &s,
        "editor-1",
        "POST",
        "/api/v1/job/",
        Some(remote("b", "team-b")),
        None,
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let b = v["id"].as_str().expect("id").to_string();
    for (what, who) in [
        ("disable", "operator-1"),
        ("enable", "operator-1"),
        ("start", "operator-1"),
    ] {
        let (st, v) = call(
            &c,
            &s,
            who,
            "POST",
            &format!("/api/v1/job/{what}/{a}/"),
            None,
            None,
        )
        .await;
        assert_eq!(st, 204, "{what}: {v}");
    }
    let targets = json!([{"on": ["failure"], "webhook": "https://hooks.example.com/x?token=abc"}]);
    let (st, v) = call(
        &c,
        &s,
        "editor-1",
        "PUT",
        &format!("/api/v1/job/{a}/notify/"),
        Some(targets),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = call(
        &c,
        &s,
        "editor-1",
        "DELETE",
        &format!("/api/v1/job/{b}/"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 204);
    // Refusals: a reader's create, a wrong token.
    let (st, _) = call(
        &c,
        &s,
        "reader-a",
        "POST",
        "/api/v1/job/",
        Some(remote("c", "team-a")),
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(&c, &s, "nope", "GET", "/api/v1/job/", None, None).await;
    assert_eq!(st, 401);
    // A token reload.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());

    let all = eventually(10, || async {
        let e = entries(&c, &s, "admin-1", "").await;
        (e.iter().any(|x| x["action"] == "tokens_reloaded")
            && e.iter().filter(|x| x["action"] == "refused").count() == 2)
            .then_some(e)
    })
    .await;
    let actions: Vec<&str> = all
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| !["refused", "tokens_reloaded"].contains(a))
            .copied()
            .collect::<Vec<_>>(),
        [
            "create", "create", "disable", "enable", "start", "notify", "delete"
        ],
        "one entry per change, in order: {actions:?}"
    );
    let one = |action: &str, job: &str| -> Value {
        let found: Vec<&Value> = all
            .iter()
            .filter(|e| e["action"] == action && e["job_id"] == job)
            .collect();
        assert_eq!(found.len(), 1, "{action} {job}: {found:?}");
        found[0].clone()
    };
    let created = one("create", &a);
    assert_eq!(created["actor"], "ed");
    assert_eq!(created["request_id"], "req-create-1");
    assert_eq!(created["job_name"], "a");
    assert!(
        created["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("127.0.0.1:"),
        "{created}"
    );
    assert_eq!(created["diff"]["name"]["after"], "a");
    let text = created.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("topsecret"),
        "secrets are masked: {text}"
    );
    assert!(text.contains("text/plain"));
    let disabled = one("disable", &a);
    assert_eq!(disabled["actor"], "op");
    assert_eq!(
        disabled["diff"]["disabled"],
        json!({"before": false, "after": true})
    );
    assert_eq!(
        one("enable", &a)["diff"]["disabled"],
        json!({"before": true, "after": false})
    );
    assert_eq!(one("start", &a)["actor"], "op");
    let notify = one("notify", &a);
    assert!(notify["diff"]["notify"]["after"].is_array(), "{notify}");
    assert!(
        !notify.to_string().contains("token=abc"),
        "the webhook's query is masked: {notify}"
    );
    assert_eq!(one("delete", &b)["diff"]["name"]["before"], "b");
    let refused: Vec<&Value> = all.iter().filter(|e| e["action"] == "refused").collect();
    assert!(
        refused
            .iter()
            .any(|e| e["actor"] == "team-a-reader" && e["diff"]["status"] == 403),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|e| e["diff"]["status"] == 401),
        "{refused:?}"
    );

    // Filters and pages.
    let of_a = entries(&c, &s, "admin-1", &format!("?job={a}")).await;
    assert_eq!(
        of_a.len(),
        5,
        "create, disable, enable, start, notify: {of_a:?}"
    );
    assert!(
        entries(&c, &s, "admin-1", "?actor=op")
            .await
            .iter()
            .all(|e| e["actor"] == "op")
    );
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(cur) => format!("/api/v1/audit/?limit=2&cursor={cur}"),
            None => "/api/v1/audit/?limit=2".into(),
        };
        let (st, v) = call(&c, &s, "admin-1", "GET", &q, None, None).await;
        assert_eq!(st, 200);
        paged.extend(v["entries"].as_array().expect("entries").clone());
        match v["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    let now_all = entries(&c, &s, "admin-1", "?limit=1000").await;
    assert_eq!(paged, now_all, "pages of 2 give the whole log once");
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    assert!(
        entries(&c, &s, "admin-1", &format!("?since={future}"))
            .await
            .is_empty()
    );
    let (st, _) = call(
        &c,
        &s,
        "admin-1",
        "GET",
        "/api/v1/audit/?since=yesterday",
        None,
        None,
    )
    .await;
    assert_eq!(st, 400);
    // The owner-scoped reader: team-a's entries only.
    let scoped = entries(&c, &s, "reader-a", "").await;
    assert!(!scoped.is_empty());
    assert!(
        scoped.iter().all(|e| e["job_id"] == a.as_str()),
        "{scoped:?}"
    );
    // Entries cannot be changed through the API.
    for m in ["POST", "PUT", "DELETE"] {
        let (st, _) = call(
            &c,
            &s,
            "admin-1",
            m,
            "/api/v1/audit/",
            Some(json!({})),
            None,
        )
        .await;
        assert_eq!(st, 405, "{m} /api/v1/audit/");
    }
    // Delete all: one entry, by its actor, with the number of jobs; the
    // log stays.
    let before = entries(&c, &s, "admin-1", "?limit=1000").await.len();
    let (st, _) = call(&c, &s, "admin-1", "DELETE", "/api/v1/job/all/", None, None).await;
    assert_eq!(st, 204);
    let after = entries(&c, &s, "admin-1", "?limit=1000").await;
    assert_eq!(after.len(), before + 1, "one entry for delete all");
    assert_eq!(after[0]["action"], "delete_all");
    assert_eq!(after[0]["actor"], "root");
    assert_eq!(after[0]["diff"], json!({"jobs": 1}));
    assert!(after[0].get("job_id").is_none(), "no job: {}", after[0]);
    let now_all = after;
    // The file holds the same entries.
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let file_ids: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l["id"].as_str()).collect();
    let api_ids: std::collections::BTreeSet<&str> =
        now_all.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(file_ids, api_ids, "--audit-log has every entry once");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_and_its_entry_survive_sigkill_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for w in 0..8 {
        let (acked, base) = (acked.clone(), s.base.clone());
        writers.push(tokio::spawn(async move {
            let c = client();
            let mut k = 0;
            loop {
                let body = json!({"name": format!("w{w}-{k}"), "command": "true", "schedule": starts_in(3600, "R", "PT1H")});
                match c.post(format!("{base}/api/v1/job/")).json(&body).send().await {
                    Ok(r) if r.status() == 201 => {
                        let v: Value = r.json().await.unwrap_or_default();
                        if let Some(id) = v["id"].as_str() {
                            acked.lock().expect("lock").push(id.to_string());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
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
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 20, "the stream was running ({})", acked.len());
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let list = req(&c, "GET", &s.url("/api/v1/job/?stats=false"), None)
        .await
        .json();
    let jobs = list["jobs"].as_object().expect("jobs");
    let created: std::collections::BTreeSet<String> = all_entries(&c, &s)
        .await
        .iter()
        .filter(|e| e["action"] == "create")
        .filter_map(|e| e["job_id"].as_str().map(str::to_string))
        .collect();
    let stored: std::collections::BTreeSet<String> = jobs.keys().cloned().collect();
    assert!(
        acked.iter().all(|id| stored.contains(id)),
        "every acknowledged job is there"
    );
    let no_entry: Vec<&String> = stored.difference(&created).take(5).collect();
    let no_job: Vec<&String> = created.difference(&stored).take(5).collect();
    assert!(
        no_entry.is_empty() && no_job.is_empty(),
        "each stored job has its create entry ({no_entry:?} have none), and each entry its job ({no_job:?} have none); {} jobs",
        stored.len()
    );
    eprintln!(
        "{} acknowledged creates; {} jobs and as many create entries after kill -9",
        acked.len(),
        stored.len()
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_shows_the_same_entries() {
    let url = postgres_url();
    let schema = unique("kala_audit_");
    let start = |name: &str, dir: &std::path::Path| {
        Server::start(
            dir,
            &[
                "--jobdb",
                "postgres",
                "--jobdb-address",
                &url,
                "--jobdb-namespace",
                &schema,
                "--node-name",
                name,
            ],
        )
    };
    let (d1, d2) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let n1 = start("audit-n1", d1.path());
    let n2 = start("audit-n2", d2.path());
    let c = client();
    let (st, v) = call(
        &c,
        &n1,
        "",
        "POST",
        "/api/v1/job/",
        Some(remote("on n1", "x")),
        None,
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    eventually(10, || async {
        (call(
            &c,
            &n2,
            "",
            "GET",
            &format!("/api/v1/job/{id}/"),
            None,
            None,
        )
        .await
        .0 == 200)
            .then_some(())
    })
    .await;
    let (st, _) = call(
        &c,
        &n2,
        "",
        "POST",
        &format!("/api/v1/job/disable/{id}/"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 204);
    let on1 = entries(&c, &n1, "", "").await;
    let on2 = entries(&c, &n2, "", "").await;
    assert_eq!(on1, on2, "both instances show the same log");
    let node_of = |action: &str| {
        on1.iter()
            .find(|e| e["action"] == action)
            .map(|e| e["node"].clone())
    };
    assert_eq!(node_of("create"), Some(json!("audit-n1")));
    assert_eq!(node_of("disable"), Some(json!("audit-n2")));
    assert_eq!(on1.len(), 2, "{on1:?}");
    n1.stop();
    n2.stop();
    drop_pg_schema(&url, &schema).await;
}
