//! The command line: `kala-server run`, flag errors.

mod common;

use std::process::Command;

use common::BIN;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run kala-server");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn run_reports_success_like_kala() {
    let (code, out, _) = run(&["run", "bash -c 'echo hi there'"]);
    assert_eq!(code, 0);
    assert_eq!(out, "Command Succeeded!\nOutput:  hi there\n");
}

#[test]
fn run_reports_failure_with_a_non_zero_exit() {
    let (code, _, err) = run(&["run", "bash -c 'echo oops; exit 3'"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Command Failed with err: exit status 3: oops"),
        "{err}"
    );
    let (code, _, err) = run(&["run"]);
    assert_eq!((code, err.trim()), (1, "Must include a command"));
    let (code, _, err) = run(&["run", "a", "b"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Must only include a command"));
}

#[test]
fn bad_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = run(&[
        "serve",
        "--jobdb",
        "nosuchdb",
        "--bolt-path",
        d,
        "--port",
        "0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown --jobdb \"nosuchdb\"; valid values: boltdb, redis, postgres, mysql, mariadb, mongo"), "{err}");
    let (code, _, err) = run(&["serve", "--port", "eighty", "--bolt-path", d]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--port \"eighty\" is not a port number"),
        "{err}"
    );
    let (code, _, err) = run(&["serve", "--nonsense"]);
    assert_ne!(code, 0);
    assert!(err.contains("--nonsense"), "{err}");
}

#[test]
fn kala_port_form_and_boltpath_alias_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "-p", ":0", "--boltpath"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(
        line.starts_with("kala-server listening on http://127.0.0.1:"),
        "{line}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(dir.path().join("kala.redb").exists());
}
