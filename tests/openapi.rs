//! The OpenAPI 3.1 document: served at `/api/v1/openapi.json`, valid for a
//! real validator (openapi-spec-validator), and the live server conforms to
//! it under a real property-based API tester (schemathesis): no server
//! error, every status code documented, every body matching its schema.
//!
//! The tools come from PyPI, in the venv `.ci/run` makes
//! (`~/.cache/kala-apitest`, or `KALA_APITEST_BIN`); without them these
//! tests fail and say how to install them.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("KALA_APITEST_BIN").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/kala-apitest/bin")
        },
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: python3 -m venv ~/.cache/kala-apitest && ~/.cache/kala-apitest/bin/pip install schemathesis openapi-spec-validator (.ci/run does this), or set KALA_APITEST_BIN",
        path.display()
    );
    path
}

/// A server whose local jobs cannot start anything: the API tester creates
/// jobs with made-up commands.
fn sandboxed_server(dir: &std::path::Path) -> Server {
    Server(
        kala_testkit::ServerProcess::start_with_env(
            std::path::Path::new(BIN),
            dir,
            // Email targets are accepted (and their deliveries fail: no
            // SMTP server listens on port 1).
            &["--smtp-url", "smtp://127.0.0.1:1"],
            &[("PATH", "/nonexistent")],
        )
        .expect("kala-server"),
    )
}

#[tokio::test]
async fn the_document_is_served_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let r = req(&c, "GET", &s.url("/api/v1/openapi.json"), None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, r.text()).unwrap();
    let out = Command::new(tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success() && text.contains("OK"), "{text}");
    let page = req(&c, "GET", &s.url("/webui/"), None).await.text();
    assert!(
        page.contains(r#"href="/api/v1/openapi.json""#),
        "the web UI links the document"
    );
    s.stop();
}

#[tokio::test]
async fn the_live_server_conforms_to_its_document() {
    let dir = tempfile::tempdir().unwrap();
    let s = sandboxed_server(dir.path());
    let seed = std::env::var("KALA_APITEST_SEED").unwrap_or_else(|_| "20261130".into());
    let examples = std::env::var("KALA_APITEST_EXAMPLES").unwrap_or_else(|_| "50".into());
    // Longer stateful scenarios (6 steps by default): with the audit log's
    // job ids among the inferred links (many of deleted jobs, rightly
    // 404), six steps too often end before every operation on one job
    // was reached.
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        "[phases.stateful]\nmax-steps = 20\n",
    )
    .expect("schemathesis.toml");
    let out = Command::new(tool("schemathesis"))
        .args(["run", &s.url("/api/v1/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--no-color", "--generation-database", "none"])
        .args(["--request-timeout", "10"])
        // Every warning but `validation_mismatch`: whether a create is
        // valid depends on the server's configuration, which no schema
        // can say (a publish job names a broker of `--broker`; alone,
        // `run_on` must match the instance's own tags), so most generated
        // jobs are rightly refused with a documented 400.
        .args([
            "--warnings",
            "missing_auth,missing_test_data,base_url_mismatch,missing_deserializer,unused_openapi_auth,unsupported_regex,method_not_allowed,unresolvable_reference,rate_limited,timeout_units",
        ])
        // `start` runs the job inside the request, as Kala does (204 when
        // the run is over): a generated job with `retries: 10^18` holds it
        // for ever. tests/api.rs covers it.
        .args(["--exclude-operation-id", "start_job"])
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("schemathesis, seed {seed}, max examples {examples} per operation:\n{text}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems (above)");
    assert!(text.contains("No issues found"), "{text}");
    assert!(
        text.contains("17 selected / 18 total"),
        "every operation but start: {text}"
    );
    s.stop();
}
