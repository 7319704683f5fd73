//! The README's shell examples run as written, in order, in one shell,
//! against the server its quick start starts (the same binary with the
//! same defaults, on a free port instead of 8000). A block that cannot
//! run here (it starts other servers, installs things) is marked with
//! `<!-- readme-test: skip: why -->` on the line before it.

mod common;

use std::process::Command;

use common::Server;

/// (the line a block starts at, its text, why it is skipped).
fn shell_blocks(readme: &str) -> Vec<(usize, String, Option<String>)> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "```sh" {
            let skip = i
                .checked_sub(1)
                .and_then(|p| lines[p].trim().strip_prefix("<!-- readme-test: skip:"))
                .map(|r| r.trim_end_matches("-->").trim().to_string());
            let start = i + 1;
            let mut j = start;
            while j < lines.len() && lines[j].trim() != "```" {
                j += 1;
            }
            out.push((start + 1, lines[start..j].join("\n"), skip));
            i = j;
        }
        i += 1;
    }
    out
}

#[test]
fn every_shell_example_in_the_readme_runs_against_a_fresh_server() {
    let readme = include_str!("../README.md");
    let blocks = shell_blocks(readme);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    // Every curl fails on an HTTP error (the README's use -s, which
    // would hide a 400) and gives up after 30 s.
    let mut script = String::from(
        "set -euo pipefail\ncurl() { command curl --fail-with-body --max-time 30 \"$@\"; }\n",
    );
    let mut ran = 0;
    for (line, text, skip) in &blocks {
        match skip {
            Some(why) => assert!(!why.is_empty(), "README.md:{line}: a skip says why"),
            None => {
                ran += 1;
                script.push_str(&format!("echo '--- README.md:{line}' >&2\n"));
                script.push_str(
                    &text
                        .replace("localhost:8000", &addr)
                        .replace("127.0.0.1:8000", &addr),
                );
                script.push('\n');
            }
        }
    }
    assert!(
        ran >= 3,
        "the quick start and notification examples run: {ran}"
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .expect("bash");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "a README example failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    // The quick start's job ran and said hello.
    assert!(stdout.contains("\"output\":\"hello\\n\""), "{stdout}");
    server.stop();
}

#[test]
fn the_skip_marker_is_read() {
    let blocks =
        shell_blocks("a\n<!-- readme-test: skip: because -->\n```sh\nx\n```\n```sh\ny\nz\n```\n");
    assert_eq!(
        blocks,
        [
            (4, "x".to_string(), Some("because".to_string())),
            (7, "y\nz".to_string(), None)
        ]
    );
}
