//! The web UI in a real browser: Debian's chromium driven by playwright-core
//! (`tests/webui/run.mjs`) against a kala-server started here. Creates a job
//! through the form, watches it run and its history appear, disables it,
//! deletes it; a bad schedule shows the server's error in the form. Once
//! without and once with `--auth-token`; and with role tokens
//! (`tests/webui/roles.mjs`): who is signed in, buttons a role may not
//! use, a 403's message. Screenshots of every page go to
//! `test-output/webui/`. `.ci/run` installs chromium and the npm package;
//! without them this test fails and says what is missing.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn drive(base: &str, shots: &str, token: Option<&str>) {
    drive_script(
        "run.mjs",
        base,
        shots,
        token.as_slice(),
        "webui: all checks passed",
    );
}

fn drive_script(script: &str, base: &str, shots: &str, args: &[&str], done: &str) {
    let dir = root().join("tests/webui");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/webui (.ci/run does)"
    );
    let chromium = std::env::var("KALA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no browser at {chromium}: apt-get install chromium (.ci/run does), or set KALA_CHROMIUM"
    );
    let out_dir = root().join("test-output/webui").join(shots);
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg(script)
        .arg(base)
        .arg(&out_dir)
        .args(args)
        .env("KALA_CHROMIUM", &chromium);
    let out = cmd.output().expect("node must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        out_dir.display()
    );
    assert!(stdout.contains(done), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webui_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(
        dir.path(),
        &[
            "--tag",
            "role=browser-test",
            "--broker",
            "events=nats://127.0.0.1:4222",
        ],
    );
    let c = client();
    // The assets are served from the binary with a strict CSP.
    let r = req(&c, "GET", &s.url("/webui/"), None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(
        r.header("content-security-policy")
            .contains("default-src 'self'")
    );
    for asset in ["/webui/app.js", "/webui/app.css"] {
        assert_eq!(
            req(&c, "GET", &s.url(asset), None).await.status,
            200,
            "{asset}"
        );
    }
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || drive(&base, "plain", None))
        .await
        .expect("driver");
    assert_eq!(s.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webui_asks_for_the_token_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(
        dir.path(),
        &[
            "--auth-token",
            "s3cret-token",
            "--tag",
            "role=browser-test",
            "--broker",
            "events=nats://127.0.0.1:4222",
        ],
    );
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || drive(&base, "auth", Some("s3cret-token")))
        .await
        .expect("driver");
    assert_eq!(s.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webui_follows_the_role_of_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kala.toml");
    let mut text = String::new();
    for (name, role, token) in [
        ("ui-reader", "reader", "reader-token-1"),
        ("ui-operator", "operator", "operator-token-1"),
        ("ui-admin", "admin", "admin-token-1"),
    ] {
        text += &format!(
            "[[tokens]]\nname = {name:?}\nrole = {role:?}\nhash = {:?}\n\n",
            kala_api::hash_of(token)
        );
    }
    std::fs::write(&config, text).expect("write config");
    let s = Server::start(dir.path(), &["--config", config.to_str().expect("utf8")]);
    let c = client();
    let body = serde_json::json!({"name": "roles", "command": "true", "schedule": starts_in(3600, "R", "PT1H")});
    let r = c
        .post(s.url("/api/v1/job/"))
        .bearer_auth("admin-token-1")
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || {
        drive_script(
            "roles.mjs",
            &base,
            "roles",
            &["reader-token-1", "operator-token-1", &id],
            "webui roles: all checks passed",
        )
    })
    .await
    .expect("driver");
    // The operator's disable went through; the reader changed nothing.
    let r = c
        .get(s.url("/api/v1/job/?stats=false"))
        .bearer_auth("admin-token-1")
        .send()
        .await
        .expect("list");
    let jobs = r.json::<serde_json::Value>().await.expect("json");
    let jobs = jobs["jobs"].as_object().expect("jobs");
    assert_eq!(jobs.len(), 1, "the operator's create was refused");
    assert!(jobs.values().all(|j| j["disabled"] == true));
    assert_eq!(s.stop(), Some(0));
}
