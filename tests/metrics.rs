//! `/metrics` is valid Prometheus exposition by Prometheus's own linter
//! (`promtool check metrics`, from Debian's prometheus package; `.ci/run`
//! unpacks it into `~/.cache/kala-promtool`, `KALA_PROMTOOL` names
//! another), with runs, failures, skips and notifications counted, and
//! every metric the shipped Grafana dashboard (`docs/grafana-kala.json`)
//! queries is there.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Server, client, create, eventually, req, starts_in};
use serde_json::json;

fn promtool() -> String {
    std::env::var("KALA_PROMTOOL").unwrap_or_else(|_| {
        format!(
            "{}/.cache/kala-promtool/promtool",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_cover_the_grafana_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    for (name, command) in [("ok", "true"), ("bad", "false")] {
        create(
            &c,
            &s,
            json!({"name": name, "command": command, "schedule": starts_in(1, "R2", "PT1S"), "epsilon": "PT10S"}),
        )
        .await;
    }
    let text = eventually(20, || async {
        let t = req(&c, "GET", &format!("{}/metrics", s.base), None)
            .await
            .text();
        let failed = t
            .lines()
            .any(|l| l.starts_with("kala_runs_total{result=\"failed\"}") && !l.ends_with(" 0"));
        failed.then_some(t)
    })
    .await;
    let bin = promtool();
    let mut child = Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool ({bin}) must be installed (.ci/run does it): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- the exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The runs of the last minute are there at first sight.
    let last = text
        .lines()
        .find(|l| l.starts_with("kala_runs_last_minute{result=\"all\"}"))
        .unwrap_or_else(|| panic!("kala_runs_last_minute: {text}"));
    assert!(!last.ends_with(" 0"), "{last}");

    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../docs/grafana-kala.json")).expect("dashboard JSON");
    let mut used = std::collections::BTreeSet::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            for (i, _) in expr.match_indices("kala_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used.insert(name);
            }
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    // Shown only by an instance on a store that coordinates a cluster.
    let cluster_only = ["kala_partitions_held"];
    for name in used.iter().filter(|n| !cluster_only.contains(&n.as_str())) {
        assert!(
            text.lines().any(|l| l.starts_with(name.as_str())),
            "the dashboard queries {name}, which /metrics does not have"
        );
    }
    s.stop();
}
