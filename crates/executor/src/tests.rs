use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

#[tokio::test]
async fn quotes_survive_and_exit_codes_are_reported() {
    let a = run_command("bash -c 'exit 3'", secs(10)).await;
    assert!(!a.success);
    assert_eq!(a.exit_code, Some(3));
    assert_eq!(a.error.as_deref(), Some("exit status 3: "));
    let a = run_command("echo 'a  b'", secs(10)).await;
    assert!(a.success, "{a:?}");
    assert_eq!(a.output, "a  b\n");
    let a = run_command(r#"bash -c "echo out; echo err >&2; exit 1""#, secs(10)).await;
    assert_eq!(a.output, "out\nerr\n", "stdout and stderr share one stream");
    assert_eq!(a.error.as_deref(), Some("exit status 1: out\nerr"));
}

#[tokio::test]
async fn no_shell_and_bad_commands() {
    let a = run_command("echo hi > f", secs(10)).await;
    assert_eq!(a.output, "hi > f\n", "redirects are plain arguments");
    let a = run_command("asdf-no-such-program", secs(10)).await;
    assert_eq!(
        a.error.as_deref(),
        Some("exec: \"asdf-no-such-program\": executable file not found in $PATH")
    );
    assert!(
        run_command("   ", secs(10))
            .await
            .error
            .unwrap()
            .contains("empty")
    );
    assert_eq!(
        run_command("echo 'unbalanced", secs(10))
            .await
            .error
            .as_deref(),
        Some("invalid command line string")
    );
}

#[test]
fn env_expansion_skips_single_quotes() {
    let env = |n: &str| match n {
        "X" => Some("outer value".to_string()),
        "Q" => Some("it's \"q\"".to_string()),
        _ => None,
    };
    let words = |s: &str| shell_words::split(&expand_env(s, env)).unwrap();
    assert_eq!(words("echo $X"), ["echo", "outer value"]);
    assert_eq!(words("echo ${X}!"), ["echo", "outer value!"]);
    assert_eq!(words("echo \"[$X]\""), ["echo", "[outer value]"]);
    assert_eq!(
        words("bash -c 'X=inner; echo $X'"),
        ["bash", "-c", "X=inner; echo $X"]
    );
    assert_eq!(
        words("echo $Q \"$Q\""),
        ["echo", "it's \"q\"", "it's \"q\""]
    );
    assert_eq!(
        words("echo $UNSET. \\$X $ ${"),
        ["echo", ".", "$X", "$", "${"]
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let marker = std::env::temp_dir().join(format!("kala-exec-{}", std::process::id()));
    let cmd = format!("bash -c 'sleep 2 && touch {} & sleep 30'", marker.display());
    let started = Instant::now();
    let a = run_command(&cmd, Some(Duration::from_millis(300))).await;
    assert!(!a.success);
    assert!(a.error.unwrap().starts_with("timed out"));
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !marker.exists(),
        "the background grandchild was killed with the group"
    );
}

#[tokio::test]
async fn output_is_a_bounded_tail() {
    let a = run_command("bash -c 'seq 1 100000'", secs(10)).await;
    assert!(a.success);
    assert!(a.output.len() <= OUTPUT_TAIL);
    assert!(a.output.ends_with("99999\n100000\n"));
}

#[tokio::test]
async fn templated_local_command() {
    let mut j = Job::new("tmpl", "echo {{.Name}} {{.Owner}}");
    j.owner = "o@x".into();
    j.template_delimiters = "{{ }}".into();
    let a = Executor::new().unwrap().run(&j, secs(10)).await;
    assert_eq!(a.output, "tmpl o@x\n");
}

/// A one-request-at-a-time HTTP server that answers with the status in the
/// path (`/status/404`) and echoes the request head and body.
async fn http_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 65536];
            let mut n = 0;
            loop {
                let m = sock.read(&mut buf[n..]).await.unwrap();
                n += m;
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if n >= end + 4 + len || m == 0 {
                        break;
                    }
                }
                if m == 0 {
                    break;
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let status: u16 = path
                .strip_prefix("/status/")
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            let body = req.replace("\r\n", "\n");
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), h)
}

fn remote(url: &str) -> Job {
    let mut j = Job::new("remote", "");
    j.job_type = JobType::Remote;
    std::sync::Arc::make_mut(&mut j.remote_properties).url = url.to_string();
    j
}

#[tokio::test]
async fn remote_success_is_an_expected_status() {
    let (base, _h) = http_server().await;
    let ex = Executor::new().unwrap();
    let a = ex.run(&remote(&format!("{base}/ok")), None).await;
    assert!(a.success, "{a:?}");
    assert!(a.output.starts_with("GET /ok HTTP/1.1"));
    assert!(
        a.output
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "Kala's default content type"
    );
    let a = ex.run(&remote(&format!("{base}/status/500")), None).await;
    assert!(!a.success);
    assert_eq!(a.exit_code, Some(500));
    assert!(a.error.unwrap().starts_with("500 Internal Server Error"));
    let mut j = remote(&format!("{base}/status/500"));
    std::sync::Arc::make_mut(&mut j.remote_properties).expected_response_codes = Some(vec![500]);
    assert!(ex.run(&j, None).await.success);
    let mut j = remote(&format!("{base}/post?val=a_{{{{$.Name}}}}"));
    j.template_delimiters = "{{ }}".into();
    std::sync::Arc::make_mut(&mut j.remote_properties).method = "post".into();
    std::sync::Arc::make_mut(&mut j.remote_properties).body = "{\"n\":\"{{.Name}}\"}".into();
    std::sync::Arc::make_mut(&mut j.remote_properties).headers =
        Some([("content-type".to_string(), vec!["text/plain".to_string()])].into());
    let a = ex.run(&j, None).await;
    assert!(a.success, "{a:?}");
    assert!(
        a.output.starts_with("POST /post?val=a_remote HTTP/1.1"),
        "{}",
        a.output
    );
    assert!(a.output.ends_with("{\"n\":\"remote\"}"), "{}", a.output);
    assert_eq!(
        a.output
            .to_ascii_lowercase()
            .matches("content-type")
            .count(),
        1,
        "no duplicate content type"
    );
    // Transport errors are failures.
    let a = ex.run(&remote("http://127.0.0.1:1/"), None).await;
    assert!(!a.success && a.error.is_some());
}

#[tokio::test]
async fn in_process_handlers() {
    let ex = Executor::new().unwrap();
    ex.register("greet", |job: Job| async move {
        Ok(format!("hello {}", job.name))
    });
    ex.register("fail", |_job: Job| async move { Err("nope".to_string()) });
    let mut j = Job::new("world", "greet");
    j.job_type = JobType::InProcess;
    let a = ex.run(&j, None).await;
    assert!(a.success);
    assert_eq!(a.output, "hello world");
    j.command = "fail".into();
    assert_eq!(ex.run(&j, None).await.error.as_deref(), Some("nope"));
    j.command = "missing".into();
    assert!(!ex.run(&j, None).await.success);
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A command that leaves a process running in the background (holding its
/// output pipe) finishes with its output, pins no thread, and does not
/// take another run's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_processes_pin_nothing_and_outputs_stay_apart() {
    let before = threads();
    let mut runs = Vec::new();
    for k in 0..40 {
        runs.push(tokio::spawn(async move {
            let cmd = format!("bash -c 'sleep 37 & echo started {k}'");
            (k, run_command(&cmd, secs(10)).await)
        }));
    }
    for r in runs {
        let (k, a) = r.await.unwrap();
        assert!(a.success, "{a:?}");
        assert_eq!(a.output.trim(), format!("started {k}"));
        assert!(a.duration < Duration::from_secs(10), "{a:?}");
    }
    // spawn_blocking threads linger for a while when idle; a thread per
    // pinned pipe would be 40 more.
    let after = threads();
    assert!(
        after < before + 20,
        "threads: {before} before, {after} after 40 runs"
    );
    let _ = std::process::Command::new("pkill")
        .args(["-f", "^sleep 37$"])
        .status();
}

fn context(scheduled: bool) -> RunContext {
    RunContext {
        job_id: "job-1".into(),
        job_name: "the name".into(),
        run_id: "run-9".into(),
        scheduled_at: scheduled.then(|| "2030-01-01T00:00:00Z".parse().unwrap()),
        attempt: 2,
        node: "node-a".into(),
    }
}

#[tokio::test]
async fn a_local_command_is_told_who_its_run_is() {
    let mut j = Job::new("who", "");
    j.command = r#"bash -c 'echo "$KALA_JOB_ID|$KALA_JOB_NAME|$KALA_RUN_ID|$KALA_SCHEDULED_AT|$KALA_ATTEMPT|$KALA_NODE"'"#.into();
    let ex = Executor::new().unwrap();
    let a = ex.run_as(&j, secs(10), Some(&context(true))).await;
    assert_eq!(
        a.output, "job-1|the name|run-9|2030-01-01T00:00:00Z|2|node-a\n",
        "{a:?}"
    );
    let a = ex.run_as(&j, secs(10), Some(&context(false))).await;
    assert_eq!(a.output, "job-1|the name|run-9||2|node-a\n", "{a:?}");
}

#[tokio::test]
async fn a_remote_request_is_told_who_its_run_is() {
    let (base, _h) = http_server().await;
    let ex = Executor::new().unwrap();
    let a = ex
        .run_as(&remote(&format!("{base}/ok")), None, Some(&context(true)))
        .await;
    let head = a.output.to_ascii_lowercase();
    for h in [
        "kala-job-id: job-1",
        "kala-run-id: run-9",
        "kala-scheduled-at: 2030-01-01t00:00:00z",
        "kala-attempt: 2",
        "kala-node: node-a",
    ] {
        assert!(head.contains(h), "{h} missing: {}", a.output);
    }
}

#[tokio::test]
async fn templates_see_the_run() {
    let mut j = Job::new(
        "who",
        "echo {{.Run.JobId}} {{.Run.RunId}} {{.Run.ScheduledAt}} {{.Run.Attempt}} {{.Run.Node}} {{.Run.JobName}}",
    );
    j.template_delimiters = "{{ }}".into();
    let ex = Executor::new().unwrap();
    let a = ex.run_as(&j, secs(10), Some(&context(true))).await;
    assert_eq!(
        a.output, "job-1 run-9 2030-01-01T00:00:00Z 2 node-a the name\n",
        "{a:?}"
    );
    let (base, _h) = http_server().await;
    let mut r = remote(&format!("{base}/{{{{.Run.Node}}}}/{{{{.Run.Attempt}}}}"));
    r.template_delimiters = "{{ }}".into();
    let a = ex.run_as(&r, None, Some(&context(false))).await;
    assert!(a.output.starts_with("GET /node-a/2 HTTP/1.1"), "{a:?}");
}

/// A template with a `range` goes to a blocking thread, one without is
/// rendered in place: both give the text the template says.
#[tokio::test]
async fn templates_render_the_same_in_place_and_on_a_thread() {
    let mut job = Job::new("ranged", "echo");
    job.template_delimiters = "{{ }}".into();
    job.parent_jobs = Some(vec!["a".into(), "b".into()]);
    let ranged = "{{range .ParentJobs}}{{.}},{{end}}{{.Name}}";
    assert!(!template::renders_quickly(ranged, "{{ }}", &job, None));
    assert_eq!(render(ranged, &job, None).await.unwrap(), "a,b,ranged");
    let plain = "{{.Name}}/{{.Owner}}";
    assert!(template::renders_quickly(plain, "{{ }}", &job, None));
    assert_eq!(render(plain, &job, None).await.unwrap(), "ranged/");
    job.template_delimiters = "broken".into();
    assert!(
        render(plain, &job, None)
            .await
            .unwrap_err()
            .contains("invalid templating delimiters")
    );
}
