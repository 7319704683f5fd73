//! Notifications against real receivers: an HTTP server in the test that
//! checks each webhook's body and signature (and fails the first two
//! deliveries), a real SMTP server (aiosmtpd, from PyPI) that receives the
//! email, the email rate limit's summary, and a kill -9 between the run
//! and the delivery.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use serde_json::{Value, json};

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Answer 500 to this many requests first.
    fail_first: usize,
}

impl Receiver {
    fn all(&self) -> Vec<Got> {
        self.got.lock().expect("receiver lock").clone()
    }
}

async fn hook(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let mut got = r.got.lock().expect("receiver lock");
    got.push(Got {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
    });
    if got.len() <= r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// An HTTP receiver on `addr` (a free port when `None`).
async fn receiver(fail_first: usize, addr: Option<SocketAddr>) -> (Receiver, SocketAddr) {
    let r = Receiver {
        fail_first,
        ..Receiver::default()
    };
    let listener = tokio::net::TcpListener::bind(
        addr.unwrap_or_else(|| "127.0.0.1:0".parse().expect("an address")),
    )
    .await
    .expect("bind the receiver");
    let addr = listener.local_addr().expect("local address");
    let app = axum::Router::new()
        .route("/{*path}", post(hook))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, addr)
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

async fn runs(s: &Server, id: &str) -> Vec<Value> {
    let c = client();
    let r = req(
        &c,
        "GET",
        &format!("{}/api/v1/job/{id}/runs/", s.base),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["runs"].as_array().cloned().unwrap_or_default()
}

/// The notifications of the job's first run, once `done` holds for them.
async fn notifications_when(s: &Server, id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(60, || async {
        let runs = runs(s, id).await;
        let n = runs.first()?.get("notifications")?.as_array()?.clone();
        done(&n).then_some(n)
    })
    .await
}

fn failing_job(name: &str, notify: Value) -> Value {
    json!({
        "name": name,
        "command": "sh -c 'echo boom; exit 3'",
        "notify": notify,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_reaches_its_webhooks_signed_after_retries() {
    let (r, addr) = receiver(2, None).await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--notify-secret", "s3cret"]);
    let id = create(
        &client(),
        &s,
        failing_job(
            "nightly backup",
            json!([
                {"on": ["failure"], "webhook": format!("http://{addr}/hook")},
                {"on": ["success"], "webhook": format!("http://{addr}/never")},
            ]),
        ),
    )
    .await;
    let n = notifications_when(&s, &id, |n| n.iter().any(|x| x["state"] == "delivered")).await;
    assert_eq!(n.len(), 1, "only the failure target wants this run: {n:?}");
    assert_eq!(n[0]["kind"], "webhook");
    assert_eq!(n[0]["event"], "failure");
    assert_eq!(n[0]["attempts"], 3, "two 500s, then delivered: {n:?}");
    assert!(
        n[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 500"),
        "{n:?}"
    );
    let got = r.all();
    assert_eq!(got.len(), 3, "three attempts, no more after the delivery");
    let first_id = got[0].headers["kala-delivery"].clone();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.path, "/hook");
        assert_eq!(g.headers["content-type"], "application/json");
        assert_eq!(g.headers["kala-event"], "failure");
        assert_eq!(
            g.headers["kala-delivery"], first_id,
            "one delivery id across retries (receivers drop duplicates by it)"
        );
        assert_eq!(
            g.headers["kala-signature"].to_str().unwrap(),
            hmac_hex(b"s3cret", &g.body),
            "attempt {i}: the signature is the HMAC-SHA256 of the body"
        );
        let body: Value = serde_json::from_slice(&g.body).expect("a JSON body");
        assert_eq!(body["event"], "failure");
        assert_eq!(body["attempt"], i + 1);
        assert_eq!(body["job"], json!({"id": id, "name": "nightly backup"}));
        assert_eq!(body["run"]["outcome"], "failed");
        assert_eq!(body["run"]["exit_code"], 3);
        assert!(body["run"]["output"].as_str().unwrap().contains("boom"));
        assert!(body["node"].as_str().is_some_and(|n| !n.is_empty()));
        assert_eq!(body["run"]["node"], body["node"], "the run names its node");
        assert!(
            body["run"]["run_id"]
                .as_str()
                .is_some_and(|r| r.len() == 36),
            "the run names its id (KALA_RUN_ID): {body}"
        );
        assert_eq!(body["id"], n[0]["id"]);
    }
    let metrics = req(&client(), "GET", &format!("{}/metrics", s.base), None)
        .await
        .text();
    assert!(
        metrics.contains("kala_notifications_delivered_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kala_notification_attempts_failed_total 2"),
        "{metrics}"
    );
    // The job itself renders its targets; a job without them does not
    // have the key at all (Kala's shape).
    let job = get_job(&client(), &s, &id).await;
    assert_eq!(job["notify"][0]["on"], json!(["failure"]));
    let plain = create(&client(), &s, json!({"name": "plain", "command": "true"})).await;
    assert!(get_job(&client(), &s, &plain).await.get("notify").is_none());
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_bodies_and_server_wide_targets() {
    let (r, addr) = receiver(0, None).await;
    let dir = tempfile::tempdir().unwrap();
    let hook = format!("http://{addr}/default");
    let s = Server::start(
        dir.path(),
        &["--notify-webhook", &hook, "--notify-on", "failure,success"],
    );
    let id = create(
        &client(),
        &s,
        failing_job(
            "etl",
            json!([{"on": ["failure"], "webhook": format!("http://{addr}/slack"), "format": "slack"}]),
        ),
    )
    .await;
    notifications_when(&s, &id, |n| {
        n.len() == 2 && n.iter().all(|x| x["state"] == "delivered")
    })
    .await;
    let got = r.all();
    let slack = got
        .iter()
        .find(|g| g.path == "/slack")
        .expect("the slack target");
    let body: Value = serde_json::from_slice(&slack.body).unwrap();
    let text = body["text"].as_str().expect("{\"text\": …}");
    assert!(
        text.contains("job \"etl\" failed") && text.contains("exit code 3"),
        "{text}"
    );
    assert!(
        got.iter().any(|g| g.path == "/default"),
        "the server-wide target too"
    );
    assert!(
        slack.headers.get("kala-signature").is_none(),
        "no secret, no signature"
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    for (notify, field) in [
        (
            json!([{"on": ["failure"], "email": "ops@example.com"}]),
            "notify[0].email",
        ),
        (
            json!([{"on": ["failure"], "webhook": "ftp://x"}]),
            "notify[0].webhook",
        ),
        (
            json!([{"on": ["nope"], "webhook": "http://x"}]),
            "notify[0].on",
        ),
        (
            json!([{"on": ["failure"], "webhook": "http://x", "email": "a@b.c"}]),
            "notify[0]",
        ),
        (json!({"on": ["failure"]}), "notify"),
    ] {
        let body = json!({"name": "x", "command": "true", "notify": notify}).to_string();
        let r = req(&c, "POST", &format!("{}/api/v1/job/", s.base), Some(&body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(
            r.text().contains(&format!("{field}:")),
            "{body}: the error names {field}: {}",
            r.text()
        );
    }
    assert_eq!(s.api().list().await.unwrap().len(), 0, "no half-made job");
    s.stop();
}

/// aiosmtpd (PyPI) on a free port, writing each message into a Maildir.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    fn start() -> Smtp {
        let python = std::env::var("KALA_AIOSMTPD_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/kala-smtp/bin/python")
            });
        assert!(
            python.exists(),
            "no aiosmtpd for this test: {} is missing (.ci/run installs it: python3 -m venv ~/.cache/kala-smtp && ~/.cache/kala-smtp/bin/pip install aiosmtpd)",
            python.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let maildir = dir.path().join("mail");
        let child = Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Smtp {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.maildir.join("new"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        out.sort();
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reaches_a_real_smtp_server_and_bursts_become_a_summary() {
    let smtp = Smtp::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let s = Server::start(
        dir.path(),
        &[
            "--smtp-url",
            &url,
            "--notify-from",
            "kala@example.com",
            "--notify-email-burst",
            "2",
            "--notify-email-window",
            "4",
        ],
    );
    let id = create(
        &client(),
        &s,
        failing_job(
            "db dump",
            json!([{"on": ["failure"], "email": "ops@example.com"}]),
        ),
    )
    .await;
    let n = notifications_when(&s, &id, |n| n.iter().any(|x| x["state"] == "delivered")).await;
    assert_eq!(n[0]["kind"], "email");
    let mail = eventually(30, || async { smtp.messages().into_iter().next() }).await;
    for want in [
        "From: kala@example.com",
        "To: ops@example.com",
        "Subject: [kala] failure: db dump",
        "Exit code:  3",
        "boom",
        &id,
    ] {
        assert!(mail.contains(want), "the email has {want:?}:\n{mail}");
    }
    // RFC 5322's Message-ID, made from the notification's id (the same on
    // every retry of it).
    let notice_id = n[0]["id"].as_str().expect("notification id").to_string();
    let message_id = mail
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .unwrap_or_else(|| panic!("no Message-ID:\n{mail}"));
    assert!(
        message_id.contains(&format!("<kala.{notice_id}@example.com>")),
        "{message_id} (notification {notice_id})"
    );
    // A job failing every second: two emails in the window, then one
    // summary of the rest when it ends.
    let every = json!({
        "name": "flapping",
        "command": "false",
        "schedule": starts_in(1, "R6", "PT1S"),
        "notify": [{"on": ["failure"], "email": "oncall@example.com"}],
    });
    let flapping = create(&client(), &s, every).await;
    let summary = eventually(60, || async {
        smtp.messages()
            .into_iter()
            .find(|m| m.contains("To: oncall@example.com") && m.contains("(summary)"))
    })
    .await;
    assert!(summary.contains("events of job flapping"), "{summary}");
    // Once the job is done, every failure's notice ends delivered or in a
    // summary, and fewer emails than failures were sent.
    let (states, failures) = eventually(60, || async {
        if get_job(&client(), &s, &flapping).await["is_done"] != true {
            return None;
        }
        let runs = runs(&s, &flapping).await;
        let states: Vec<String> = runs
            .iter()
            .flat_map(|r| r["notifications"].as_array().cloned().unwrap_or_default())
            .map(|n| n["state"].as_str().unwrap_or("").to_string())
            .collect();
        (states.len() == runs.len() && states.iter().all(|s| s == "delivered" || s == "summarized"))
            .then_some((states, runs.len()))
    })
    .await;
    assert!(
        failures >= 6,
        "R6: every run failed and was recorded: {states:?}"
    );
    let emails = smtp
        .messages()
        .into_iter()
        .filter(|m| m.contains("To: oncall@example.com"))
        .count();
    let summarized = states.iter().filter(|s| *s == "summarized").count();
    assert!(
        summarized >= 2,
        "a summary stands for several failures: {states:?}"
    );
    assert!(
        emails < failures,
        "{emails} emails for {failures} failures: {states:?}"
    );
    assert!(states.iter().any(|s| s == "summarized"), "{states:?}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_the_run_and_the_delivery_still_delivers() {
    // The receiver is down at first: the delivery fails and is retried.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let id = create(
        &client(),
        &s,
        failing_job(
            "report",
            json!([{"on": ["failure"], "webhook": format!("http://{port}/late")}]),
        ),
    )
    .await;
    let n = notifications_when(&s, &id, |n| {
        n.iter().any(|x| x["attempts"].as_u64() >= Some(1))
    })
    .await;
    assert_eq!(n[0]["state"], "pending", "{n:?}");
    s.kill9();
    let (r, _) = receiver(0, Some(port)).await;
    let s = Server::start(dir.path(), &[]);
    let n = notifications_when(&s, &id, |n| n.iter().any(|x| x["state"] == "delivered")).await;
    assert!(n[0]["attempts"].as_u64() >= Some(2), "{n:?}");
    let got = r.all();
    assert_eq!(got.len(), 1, "delivered once the receiver is up");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["job"]["id"], id);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_replaced_with_put() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let id = create(
        &c,
        &s,
        json!({"name": "later", "command": "true", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
    let url = format!("{}/api/v1/job/{id}/notify/", s.base);
    let targets =
        json!([{"on": ["failure", "interrupted"], "webhook": "https://hooks.example.com/x"}]);
    let r = req(&c, "PUT", &url, Some(&targets.to_string())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["notify"], targets);
    assert_eq!(get_job(&c, &s, &id).await["notify"], targets);
    let bad = req(
        &c,
        "PUT",
        &url,
        Some(r#"[{"on": ["failure"], "webhook": "gopher://x"}]"#),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("notify[0].webhook:"), "{}", bad.text());
    assert_eq!(
        get_job(&c, &s, &id).await["notify"],
        targets,
        "unchanged by a refused change"
    );
    let missing = req(
        &c,
        "PUT",
        &format!("{}/api/v1/job/nope/notify/", s.base),
        Some("[]"),
    )
    .await;
    assert_eq!(missing.status, 404);
    // Survives a restart; [] removes the key again (Kala's shape).
    s.stop();
    let s = Server::start(dir.path(), &[]);
    assert_eq!(get_job(&c, &s, &id).await["notify"], targets);
    let url = format!("{}/api/v1/job/{id}/notify/", s.base);
    assert_eq!(req(&c, "PUT", &url, Some("[]")).await.status, 200);
    assert!(get_job(&c, &s, &id).await.get("notify").is_none());
    s.stop();
}
