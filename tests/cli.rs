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

/// `kala-server serve` on `bolt`, which must exit by itself within 20 s
/// (a server that started is killed and the test fails).
fn serve_expecting_exit(bolt: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--bolt-path", bolt])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kala-server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kala-server started on a damaged store instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A damaged embedded store stops the server at start with one line and a
/// non-zero exit: an empty file is not taken for an empty store, and a
/// zeroed page is not a panic.
#[test]
fn a_damaged_store_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kala.redb");
    std::fs::write(&file, b"").unwrap();
    let bolt = dir.path().to_str().unwrap();
    let (code, out, err) = serve_expecting_exit(bolt);
    assert_ne!(code, 0);
    assert!(!out.contains("listening"), "{out}");
    assert!(err.contains("empty (0 bytes)"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A real store with its third page zeroed.
    std::fs::remove_file(&file).unwrap();
    let s = common::Server::start(dir.path(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = common::client();
        for k in 0..200 {
            let body = serde_json::json!({"name": format!("j{k}"), "command": "true", "schedule": common::starts_in(3600, "R", "PT1H")});
            common::create(&c, &s, body).await;
        }
    });
    assert_eq!(s.stop(), Some(0));
    let (code, out, err) = run(&["check", "--bolt-path", bolt]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("200 jobs") && out.contains("all intact"),
        "{out}"
    );
    // One byte changed inside one stored job (its name j17 -> j1?; a
    // packed job holds its name as a length and the bytes, then its
    // command the same way).
    let mut bytes = std::fs::read(&file).unwrap();
    let needle = b"\x03j17\x04true";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the packed job is in the file");
    bytes[at + 3] = b'?';
    std::fs::write(&file, &bytes).unwrap();
    let (code, out, _) = run(&["check", "--bolt-path", bolt]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("damaged: job ") && out.contains("checksum mismatch"),
        "{out}"
    );
    assert_eq!(out.matches("damaged: ").count(), 1, "{out}");
    let (code, out, err) = serve_expecting_exit(bolt);
    assert_ne!(code, 0);
    assert!(!out.contains("listening"), "{out}");
    assert!(err.contains("checksum mismatch"), "{err}");
    // Everything after redb's header page zeroed: the tables' roots are gone.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096..].fill(0);
    std::fs::write(&file, &bytes).unwrap();
    let (code, out, err) = serve_expecting_exit(bolt);
    assert_ne!(code, 0);
    assert!(!out.contains("listening"), "{out}");
    assert!(err.contains("damaged"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_jobdb_is_refused_also_without_persistence() {
    let (code, _, err) = run(&["serve", "--jobdb", "sqlite", "-n", "--port", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown --jobdb \"sqlite\""), "{err}");
}

#[test]
fn no_persist_with_another_store_is_refused() {
    let (code, _, err) = run(&["serve", "--jobdb", "redis", "--no-persist", "--port", "0"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--no-persist keeps every job in memory only, so it cannot be combined with --jobdb=redis"),
        "{err}"
    );
}

/// An unreachable database: the error names the address tried and the
/// cause, for every backend (a closed port: connection refused).
#[test]
fn an_unreachable_database_is_named_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (jobdb, address, names) in [
        ("postgres", "127.0.0.1:1/test", "127.0.0.1:1/test"),
        ("mysql", "tcp(127.0.0.1:1)/test", "127.0.0.1:1/test"),
        ("redis", "127.0.0.1:1", "127.0.0.1:1"),
        ("mongo", "127.0.0.1:1", "127.0.0.1:1"),
        ("consul", "127.0.0.1:1", "127.0.0.1:1"),
    ] {
        let (code, _, err) = run(&[
            "serve",
            "--jobdb",
            jobdb,
            "--jobdb-address",
            address,
            "--port",
            "0",
            "--bolt-path",
            d,
        ]);
        assert_ne!(code, 0, "{jobdb}");
        assert!(
            err.contains(names) && err.contains("Connection refused"),
            "{jobdb}: the address and the cause: {err}"
        );
    }
    let (code, _, err) = run(&[
        "serve",
        "--jobdb",
        "postgres",
        "--jobdb-address",
        "nosuchhost.invalid:5432/test",
        "--port",
        "0",
        "--bolt-path",
        d,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("nosuchhost.invalid:5432"), "{err}");
}

#[test]
fn bad_tags_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (tags, want) in [
        (vec!["--tag", "role"], "--tag \"role\": expected key=value"),
        (vec!["--tag", "a b=c"], "the key must be 1-63 letters"),
        (vec!["--tag", "role=x y"], "without spaces"),
        (
            vec!["--tag", "role=a", "--tag", "role=b"],
            "--tag role: given twice",
        ),
    ] {
        let mut args = vec!["serve", "--port", "0", "--bolt-path", d];
        args.extend(tags);
        let (code, _, err) = run(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Tags from the config file (`tags = {…}`) and from `KALA_TAGS` reach
/// the cluster route, which shows this instance's tags alone too.
#[tokio::test]
async fn tags_come_from_the_config_file_and_the_environment() {
    for (file_tags, env) in [
        ("tags = { role = \"etl\", zone = \"eu-1\" }\n", None),
        ("", Some("role=etl,zone=eu-1")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kala.toml");
        std::fs::write(
            &file,
            format!(
                "port = \"0\"\nbolt-path = {:?}\n{file_tags}",
                dir.path().display().to_string()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(&file)
            .env_remove("KALA_TAGS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(e) = env {
            cmd.env("KALA_TAGS", e);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let base = line
            .trim()
            .strip_prefix("kala-server listening on ")
            .unwrap()
            .to_string();
        let r = common::req(
            &common::client(),
            "GET",
            &format!("{base}/api/v1/cluster/"),
            None,
        )
        .await;
        terminate(child);
        assert_eq!(
            r.json()["tags"],
            serde_json::json!({"role": "etl", "zone": "eu-1"}),
            "{file_tags}{env:?}: {}",
            r.text()
        );
    }
}

#[test]
fn every_subcommand_has_its_own_help_line() {
    let (code, out, err) = run(&["--help"]);
    assert_eq!(code, 0, "{err}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {out}"))
            .to_string()
    };
    assert!(
        line("config").contains("Print the effective configuration"),
        "{out}"
    );
    assert!(line("import").contains("Copy every job"), "{out}");
    for name in ["serve", "run", "check", "completions", "man", "token"] {
        if out.contains(&format!("  {name} ")) {
            assert!(
                line(name).split_whitespace().count() > 2,
                "{name} has no help: {out}"
            );
        }
    }
}

#[test]
fn completions_and_man_page_come_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("kala-server"), "{shell}");
        assert!(out.contains("jobdb-address"), "{shell}: every flag");
    }
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_ne!(code, 0);
    assert!(err.contains("tcsh"), "{err}");
    let (code, out, _) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(".ie") || out.contains(".TH kala-server"),
        "{out:.200}"
    );
    assert!(out.contains("serve"), "subcommands listed");
}

/// Starts `kala-server serve` with its log in `log` (not a terminal).
fn serve_logging_to(
    dir: &std::path::Path,
    log: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--bolt-path"])
        .arg(dir)
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("kala-server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("listening line");
    let base = line
        .trim()
        .strip_prefix("kala-server listening on ")
        .expect("listening")
        .to_string();
    (child, base)
}

fn terminate(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::test]
async fn logs_are_json_lines_with_ids_or_plain_text_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("json.log");
    let (child, base) = serve_logging_to(dir.path(), &log, &["--log-format", "json"]);
    let api = kala_client::Client::new(&base).unwrap();
    let id = api
        .create(&kala_client::Job::new("logged", "true"))
        .await
        .unwrap();
    let bad = api.create(&kala_client::Job::new("", "true")).await;
    assert!(bad.is_err());
    common::eventually(20, || async {
        (!api.runs(&id, None).await.unwrap().is_empty()).then_some(())
    })
    .await;
    terminate(child);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let run = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run finished")
        .unwrap_or_else(|| panic!("no run line: {text}"));
    assert_eq!(run["fields"]["job"], id.as_str(), "{run}");
    assert_eq!(run["fields"]["outcome"], "Succeeded", "{run}");
    assert_eq!(
        run["fields"]["run"].as_str().map(str::len),
        Some(36),
        "{run}"
    );
    assert!(run["fields"]["node"].is_string(), "{run}");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "request refused" && l["fields"]["status"] == 400),
        "the 400 is logged: {text}"
    );

    let log = dir.path().join("text.log");
    let (child, base) = serve_logging_to(dir.path(), &log, &[]);
    let api = kala_client::Client::new(&base).unwrap();
    let _ = api.create(&kala_client::Job::new("", "true")).await;
    terminate(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("request refused"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes off a terminal: {text:?}"
    );
}

#[test]
fn the_config_file_sets_defaults_below_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kala.toml");
    std::fs::write(
        &file,
        "max-body-bytes = 2048\njobdb-password = \"hunter2\"\nallowed-host = [\"a.example\", \"b.example\"]\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = run(&["config", "--config", f]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max-body-bytes = 2048\n"), "{out}");
    assert!(
        out.contains("allowed-host = [\"a.example\", \"b.example\"]"),
        "{out}"
    );
    assert!(out.contains("jobdb-password = \"********\""), "{out}");
    assert!(!out.contains("hunter2"), "secrets are masked");
    assert!(
        out.contains("keep-runs = 1000\n"),
        "defaults are shown: {out}"
    );
    let out = Command::new(BIN)
        .args(["config", "--config", f])
        .env("KALA_MAX_BODY_BYTES", "4096")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("max-body-bytes = 4096\n"),
        "environment beats the file"
    );
    let out = Command::new(BIN)
        .args(["config", "--config", f, "--max-body-bytes", "8192"])
        .env("KALA_MAX_BODY_BYTES", "4096")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("max-body-bytes = 8192\n"),
        "a flag beats both"
    );

    std::fs::write(&file, "max-body-bytez = 1\n").unwrap();
    let (code, _, err) = run(&["serve", "--config", f]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown key \"max-body-bytez\""), "{err}");
    let (code, _, err) = run(&["serve", "--config", "/nonexistent/kala.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/kala.toml"), "{err}");
}

#[tokio::test]
async fn serve_takes_its_settings_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kala.toml");
    std::fs::write(
        &file,
        format!(
            "port = \"0\"\nbolt-path = {:?}\nmax-body-bytes = 64\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("kala-server listening on ")
        .unwrap()
        .to_string();
    let body = format!("{{\"name\":\"{}\",\"command\":\"true\"}}", "x".repeat(100));
    let r = common::req(
        &common::client(),
        "POST",
        &format!("{base}/api/v1/job/"),
        Some(&body),
    )
    .await;
    terminate(child);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("limit of 64 bytes"), "{}", r.text());
    assert!(
        dir.path().join("kala.redb").exists(),
        "bolt-path from the file"
    );
}

/// The embedded store is for one process: a second server on the same
/// directory refuses to start and says what to use instead.
#[test]
fn a_second_server_on_the_embedded_store_is_refused_with_a_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let first = common::Server::start(dir.path(), &[]);
    let bolt = dir.path().to_string_lossy().to_string();
    let (code, _, err) = serve_expecting_exit(&bolt);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("another process") && err.contains("PostgreSQL"),
        "the message says why and what to use: {err}"
    );
    assert_eq!(first.stop(), Some(0));
}

#[test]
fn bad_notification_flags_stop_the_start_before_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let bolt = dir.path().to_str().unwrap();
    for (args, want) in [
        (
            vec!["--notify-webhook", "ftp://x"],
            "--notify-webhook: \"ftp://x\" must start with http://",
        ),
        (
            vec!["--notify-email", "ops@example.com"],
            "--notify-email needs --smtp-url",
        ),
        (
            vec!["--notify-on", "never"],
            "--notify-on: \"never\" is not one of",
        ),
        (vec!["--smtp-url", "http://mail"], "--smtp-url:"),
        (
            vec![
                "--smtp-url",
                "smtp://mail:25",
                "--notify-from",
                "not an address",
            ],
            "--notify-from:",
        ),
    ] {
        let mut all = vec!["serve", "--port", "0", "--bolt-path", bolt];
        all.extend(&args);
        let (code, _, err) = run(&all);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            !dir.path().join("kala.redb").exists(),
            "{args:?}: no store was created"
        );
    }
}

/// `[brokers.NAME]` tables in the config file become `--broker` flags;
/// `kala-server config` shows them with the password masked; a bad table
/// is refused naming it.
#[test]
fn brokers_come_from_the_config_file_with_passwords_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kala.toml");
    std::fs::write(
        &file,
        "[brokers.events]\nurl = \"amqp://guest:hunter2@127.0.0.1:5672/%2f\"\n[brokers.ticks]\nurl = \"nats://127.0.0.1:4222?jetstream=true\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = run(&["config", "--config", f]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("events=amqp://guest:***@127.0.0.1:5672/%2f"),
        "{out}"
    );
    assert!(
        out.contains("ticks=nats://127.0.0.1:4222?jetstream=true"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "the password is masked: {out}");

    std::fs::write(&file, "[brokers.events]\nurll = \"nats://x\"\n").unwrap();
    let (code, _, err) = run(&["config", "--config", f]);
    assert_ne!(code, 0);
    assert!(
        err.contains("brokers.events: unknown key \"urll\""),
        "{err}"
    );
}
