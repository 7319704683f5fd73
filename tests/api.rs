//! Kala's HTTP API, route by route, against the real binary.

mod common;

use std::io::Read;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn every_route_with_kala_status_codes_and_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--default-owner", "ops@example.com"]);
    let c = client();

    let r = req(&c, "GET", &s.url("/api/v1/job/"), None).await;
    assert_eq!((r.status, r.text()), (200, "{\"jobs\":{}}\n".to_string()));
    let r = req(&c, "GET", &s.url("/api/v1/stats/"), None).await;
    assert_eq!(r.json()["Stats"]["jobs"], 0);
    assert_eq!(r.json()["Stats"]["next_run_at"], "0001-01-01T00:00:00Z");

    let id = create(&c, &s, json!({"name": "sched", "command": "true", "schedule": starts_in(3600, "R2", "PT10S"), "epsilon": "PT5S"})).await;
    let job = get_job(&c, &s, &id).await;
    assert_eq!(job["name"], "sched");
    assert_eq!(job["owner"], "ops@example.com", "default owner");
    assert_eq!(job["stats"], Value::Null);
    assert_ne!(job["next_run_at"], "0001-01-01T00:00:00Z");
    let keys: Vec<&str> = job
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "name",
        "id",
        "command",
        "owner",
        "disabled",
        "dependent_jobs",
        "parent_jobs",
        "on_failure_job",
        "schedule",
        "retries",
        "epsilon",
        "next_run_at",
        "TemplateDelimiters",
        "resume_at_next_scheduled_time",
        "metadata",
        "type",
        "remote_properties",
        "stats",
        "is_done",
    ] {
        assert!(keys.contains(&k), "job has {k}");
    }
    let list = req(&c, "GET", &s.url("/api/v1/job/"), None).await.json();
    assert_eq!(list["jobs"][&id]["schedule"], job["schedule"]);

    // Start runs synchronously: the counters are there when the 204 comes.
    let r = action(&c, &s, "start", &id).await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    let job = get_job(&c, &s, &id).await;
    assert_eq!(job["metadata"]["success_count"], 1);
    assert_eq!(
        job.get("success_count"),
        None,
        "counters under metadata only, as Kala"
    );
    let stats = req(&c, "GET", &s.url(&format!("/api/v1/job/stats/{id}/")), None)
        .await
        .json();
    let stat = &stats["job_stats"][0];
    assert_eq!(
        (
            stat["job_id"].as_str(),
            stat["success"].as_bool(),
            stat["number_of_retries"].as_u64()
        ),
        (Some(id.as_str()), Some(true), Some(0))
    );
    assert_eq!(stat.get("JobId"), None, "snake_case only, as Kala");
    assert!(stat["execution_duration"].as_u64().unwrap() > 0);
    let runs = req(&c, "GET", &s.url(&format!("/api/v1/job/{id}/runs/")), None)
        .await
        .json();
    assert_eq!(runs["runs"][0]["trigger"], "manual");

    for (path, flag) in [("disable", true), ("enable", false)] {
        let r = req(
            &c,
            "POST",
            &s.url(&format!("/api/v1/job/{path}/{id}/")),
            None,
        )
        .await;
        assert_eq!(r.status, 204);
        assert_eq!(get_job(&c, &s, &id).await["disabled"], flag);
    }
    let app = req(&c, "GET", &s.url("/api/v1/stats/"), None).await.json();
    assert_eq!(
        (
            app["Stats"]["jobs"].as_u64(),
            app["Stats"]["active_jobs"].as_u64(),
            app["Stats"]["success_count"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(
        app["Stats"].get("ActiveJobs"),
        None,
        "snake_case only, as Kala"
    );
    assert_eq!(app["Stats"]["next_run_at"], job["next_run_at"]);

    let r = req(&c, "DELETE", &s.url(&format!("/api/v1/job/{id}/")), None).await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(
        req(&c, "GET", &s.url(&format!("/api/v1/job/{id}/")), None)
            .await
            .status,
        404
    );

    create(
        &c,
        &s,
        json!({"name": "a", "command": "true", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
    create(
        &c,
        &s,
        json!({"name": "b", "command": "true", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
    assert_eq!(
        req(&c, "DELETE", &s.url("/api/v1/job/all/"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        req(&c, "GET", &s.url("/api/v1/job/"), None).await.json()["jobs"],
        json!({})
    );
}

#[tokio::test]
async fn routes_answer_with_and_without_the_trailing_slash() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let body = json!({"name": "x", "command": "true", "schedule": starts_in(3600, "R", "PT1H")})
        .to_string();
    let r = req(&c, "POST", &s.url("/api/v1/job"), Some(&body)).await;
    assert_eq!(r.status, 201, "POST without slash is answered directly");
    let id = r.json()["id"].as_str().unwrap().to_string();
    for path in [
        format!("/api/v1/job/{id}"),
        "/api/v1/job".into(),
        "/api/v1/stats".into(),
        format!("/api/v1/job/stats/{id}"),
    ] {
        assert_eq!(
            req(&c, "GET", &s.url(&path), None).await.status,
            200,
            "{path}"
        );
    }
    assert_eq!(
        req(
            &c,
            "POST",
            &s.url(&format!("/api/v1/job/disable/{id}")),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        req(&c, "DELETE", &s.url(&format!("/api/v1/job/{id}")), None)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_naming_the_problem_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--max-body-bytes", "2048"]);
    let c = client();
    let past = "R2/2017-06-04T19:25:16.828696-07:00/PT10S";
    let future = starts_in(3600, "R", "PT1H");
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "body: invalid JSON"),
        ("".into(), 400, "body: is empty"),
        ("[]".into(), 400, "found an array"),
        ("\"job\"".into(), 400, "found a string"),
        ("null".into(), 400, "name: is required"),
        (
            json!({"name": 5, "command": "true"}).to_string(),
            400,
            "name: expected a string",
        ),
        (
            json!({"name": "x", "command": "true", "retries": -1}).to_string(),
            400,
            "retries:",
        ),
        (
            json!({"name": "x", "command": "true", "type": "1"}).to_string(),
            400,
            "type: expected a whole number",
        ),
        (
            json!({"command": "true"}).to_string(),
            400,
            "name: is required",
        ),
        (
            json!({"name": "x"}).to_string(),
            400,
            "command: is required",
        ),
        (
            json!({"name": "x", "type": 1}).to_string(),
            400,
            "remote_properties.url: is required",
        ),
        (
            json!({"name": "x", "command": "true", "type": 7}).to_string(),
            400,
            "type: unknown job type 7",
        ),
        (
            json!({"name": "x", "command": "true", "schedule": "garbage"}).to_string(),
            400,
            "schedule:",
        ),
        (
            json!({"name": "x", "command": "true", "schedule": "r/2030-01-01T00:00:00Z/PT1S"})
                .to_string(),
            400,
            "schedule: repeat",
        ),
        (
            json!({"name": "x", "command": "true", "schedule": past}).to_string(),
            400,
            "is in the past",
        ),
        (
            json!({"name": "x", "command": "true", "schedule": future, "epsilon": "soon"})
                .to_string(),
            400,
            "epsilon:",
        ),
        (
            json!({"name": "x", "command": "true", "parent_jobs": ["no-such-parent"]}).to_string(),
            400,
            "parent_jobs: job no-such-parent does not exist",
        ),
        (
            format!("{{\"name\":\"{}\",\"command\":\"true\"}}", "x".repeat(4096)),
            413,
            "body: larger than the limit of 2048 bytes",
        ),
    ];
    for (body, status, want) in cases {
        let r = req(&c, "POST", &s.url("/api/v1/job/"), Some(&body)).await;
        assert_eq!(r.status, status, "{body:.60}: {}", r.text());
        assert!(
            r.header("content-type").starts_with("application/json"),
            "{body:.60}"
        );
        let err = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            err.contains(want),
            "{body:.60}: {err:?} should contain {want:?}"
        );
    }
    assert_eq!(
        req(&c, "GET", &s.url("/api/v1/job/"), None).await.json()["jobs"],
        json!({}),
        "nothing was stored"
    );
    // The preview route obeys --max-body-bytes too, with a JSON 413.
    let big = json!({"schedule": "x".repeat(4096)}).to_string();
    let r = req(&c, "POST", &s.url("/api/v1/schedule/preview/"), Some(&big)).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than the limit")
    );

    let r = req(&c, "PUT", &s.url("/api/v1/job/"), Some("{}")).await;
    assert_eq!(r.status, 405);
    assert!(
        r.header("allow").contains("POST"),
        "Allow: {}",
        r.header("allow")
    );
    assert_eq!(
        r.json()["error"],
        "method PUT is not allowed on /api/v1/job",
        "a JSON body naming the method and the path"
    );
    assert!(r.json()["error"].as_str().unwrap().contains("PUT"));
    let unknown = "00000000-0000-0000-0000-000000000000";
    for (m, p) in [
        ("GET", format!("/api/v1/job/{unknown}/")),
        ("DELETE", format!("/api/v1/job/{unknown}/")),
        ("GET", format!("/api/v1/job/stats/{unknown}/")),
        ("POST", format!("/api/v1/job/start/{unknown}/")),
        ("POST", format!("/api/v1/job/enable/{unknown}/")),
        ("POST", format!("/api/v1/job/disable/{unknown}/")),
        ("GET", "/api/v1/nope/".into()),
    ] {
        let r = req(&c, m, &s.url(&p), None).await;
        assert_eq!(r.status, 404, "{m} {p}");
        assert!(r.json()["error"].is_string());
    }
    // Still serving.
    create(
        &c,
        &s,
        json!({"name": "ok", "command": "true", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
}

/// The full list streamed while jobs are created, deleted and run: every
/// answer, plain or gzip, is whole JSON; it holds every job that existed
/// for the whole stream and nothing that never existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamed_list_holds_while_jobs_change() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = kala_store_redb::RedbStore::open_dir(dir.path()).unwrap();
        let start = starts_in(24 * 3600, "R", "PT1H");
        let jobs = (0..1_200)
            .map(|k| {
                let mut j = kala_job::Job::new(format!("stable {k}"), "true");
                j.schedule = start.clone();
                j
            })
            .collect();
        kala_store::JobStore::apply(
            &store,
            kala_store::Batch {
                put: jobs,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        kala_store::JobStore::close(&store).await.unwrap();
    }
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let stable: std::collections::BTreeSet<String> =
        req(&c, "GET", &s.url("/api/v1/job/?stats=false"), None)
            .await
            .json()["jobs"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    assert_eq!(stable.len(), 1_200);
    // Jobs that run every second, and a churn of creates and deletes.
    for k in 0..5 {
        create(
            &c,
            &s,
            json!({"name": format!("runs {k}"), "command": "true", "schedule": starts_in(1, "R", "PT1S")}),
        )
        .await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (c, s_base, stop) = (c.clone(), s.base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut made = std::collections::BTreeSet::new();
            let mut k = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"name": format!("churn {k}"), "command": "true"});
                let r = req(
                    &c,
                    "POST",
                    &format!("{s_base}/api/v1/job/"),
                    Some(&body.to_string()),
                )
                .await;
                assert_eq!(r.status, 201, "{}", r.text());
                let id = r.json()["id"].as_str().unwrap().to_string();
                if k.is_multiple_of(2) {
                    let r = req(&c, "DELETE", &format!("{s_base}/api/v1/job/{id}/"), None).await;
                    assert_eq!(r.status, 204, "{}", r.text());
                }
                made.insert(id);
                k += 1;
            }
            made
        })
    };
    let mut lists = Vec::new();
    for round in 0..6 {
        let url = s.url(if round % 3 == 2 {
            "/api/v1/job/?stats=false"
        } else {
            "/api/v1/job/"
        });
        let r = if round % 2 == 0 {
            get_gzip(&c, &url).await
        } else {
            req(&c, "GET", &url, None).await
        };
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let keys: std::collections::BTreeSet<String> =
            v["jobs"].as_object().unwrap().keys().cloned().collect();
        assert!(
            keys.is_superset(&stable),
            "round {round}: a job that existed throughout is missing"
        );
        for (id, job) in v["jobs"].as_object().unwrap() {
            assert_eq!(job["id"].as_str(), Some(id.as_str()), "round {round}");
        }
        lists.push(keys);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let made = churn.await.unwrap();
    assert!(
        made.len() > 10,
        "the churn ran during the lists ({})",
        made.len()
    );
    for keys in &lists {
        let strangers: Vec<_> = keys
            .iter()
            .filter(|k| !stable.contains(*k) && !made.contains(*k))
            .collect();
        assert!(
            strangers.len() <= 5,
            "only the five running jobs are new: {strangers:?}"
        );
    }
    s.stop();
}

/// A run record names the run (the `KALA_RUN_ID` its command saw) and
/// the instance (`KALA_NODE`) on kala's runs route; Kala's stats shapes
/// stay as Kala's.
#[tokio::test]
async fn run_records_name_their_run_and_node() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--node-name", "node-a"]);
    let c = client();
    let id = create(
        &c,
        &s,
        json!({"name": "who", "command": "sh -c 'echo \"$KALA_RUN_ID $KALA_NODE\"'", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
    assert_eq!(action(&c, &s, "start", &id).await.status, 204);
    wait_for_successes(&c, &s, &id, 1).await;
    let runs = req(&c, "GET", &s.url(&format!("/api/v1/job/{id}/runs/")), None)
        .await
        .json();
    let run = &runs["runs"][0];
    let out = run["output"].as_str().unwrap().trim().to_string();
    let run_id = run["run_id"].as_str().expect("run_id in the record");
    assert_eq!(out, format!("{run_id} node-a"), "{run}");
    assert_eq!(run["node"], "node-a");
    let stats = req(&c, "GET", &s.url(&format!("/api/v1/job/stats/{id}/")), None)
        .await
        .json();
    let stat = stats["job_stats"][0].as_object().unwrap();
    assert!(
        !stat.contains_key("run_id") && !stat.contains_key("node"),
        "{stat:?}"
    );
    let job = get_job(&c, &s, &id).await;
    let stat = job["stats"][0].as_object().unwrap();
    assert!(
        !stat.contains_key("run_id") && !stat.contains_key("node"),
        "{stat:?}"
    );
    s.stop();
}

#[tokio::test]
async fn gzip_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let r = c
        .get(s.url("/api/v1/stats/"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.starts_with("{\"Stats\":{"), "{text}");
    let plain = req(&c, "GET", &s.url("/api/v1/stats/"), None).await;
    assert!(plain.header("content-encoding").is_empty());
    // A job, its runs, its stats and the list read with gzip are the same
    // JSON as without.
    let id = create(
        &c,
        &s,
        json!({"name": "gz", "command": "echo zipped", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
    assert_eq!(action(&c, &s, "start", &id).await.status, 204);
    wait_for_successes(&c, &s, &id, 1).await;
    for path in [
        "/api/v1/job/".to_string(),
        "/api/v1/job/?limit=5".into(),
        format!("/api/v1/job/{id}/"),
        format!("/api/v1/job/{id}/runs/"),
        format!("/api/v1/job/stats/{id}/"),
        "/api/v1/stats/".into(),
    ] {
        let z = get_gzip(&c, &s.url(&path)).await;
        let p = req(&c, "GET", &s.url(&path), None).await;
        assert_eq!((z.status, p.status), (200, 200), "{path}");
        let (mut zj, mut pj) = (z.json(), p.json());
        if path == "/api/v1/stats/" {
            // Counters move between two reads.
            zj = zj["Stats"]["jobs"].clone();
            pj = pj["Stats"]["jobs"].clone();
        }
        assert_eq!(zj, pj, "{path}");
    }
}

#[tokio::test]
async fn scheduled_one_off_dependent_and_failing_jobs_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    // A one-off runs at once; output is kept.
    let once = create(
        &c,
        &s,
        json!({"name": "once", "command": "bash -c 'echo hello'"}),
    )
    .await;
    let runs = eventually(10, || async {
        let r = req(
            &c,
            "GET",
            &s.url(&format!("/api/v1/job/{once}/runs/")),
            None,
        )
        .await
        .json();
        r["runs"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    assert_eq!(
        (runs[0]["output"].as_str(), runs[0]["outcome"].as_str()),
        (Some("hello\n"), Some("succeeded"))
    );
    assert_eq!(get_job(&c, &s, &once).await["is_done"], true);
    // R1 = two runs, one second apart, starting in one second.
    let sched = create(
        &c,
        &s,
        json!({"name": "twice", "command": "true", "schedule": starts_in(1, "R1", "PT1S")}),
    )
    .await;
    let stats = eventually(15, || async {
        let r = req(
            &c,
            "GET",
            &s.url(&format!("/api/v1/job/stats/{sched}/")),
            None,
        )
        .await
        .json();
        r["job_stats"].as_array().filter(|a| a.len() == 2).cloned()
    })
    .await;
    assert!(stats.iter().all(|s| s["success"] == true));
    eventually(5, || async {
        (get_job(&c, &s, &sched).await["is_done"] == true).then_some(())
    })
    .await;
    // Retries: one stat, every failed attempt counted.
    let fails = create(
        &c,
        &s,
        json!({"name": "fails", "command": "bash -c 'exit 3'", "retries": 2}),
    )
    .await;
    let job = eventually(10, || async {
        let j = get_job(&c, &s, &fails).await;
        (j["metadata"]["number_of_finished_runs"] == 1).then_some(j)
    })
    .await;
    assert_eq!(job["metadata"]["error_count"], 3);
    assert_eq!(job["stats"][0]["number_of_retries"], 2);
    assert_eq!(job["stats"][0]["success"], false);
    // A child runs after its parent's successful run.
    let (parent, child) = create_parent_and_child(&c, &s).await;
    assert_eq!(
        get_job(&c, &s, &parent).await["dependent_jobs"],
        json!([child])
    );
    assert_eq!(action(&c, &s, "start", &parent).await.status, 204);
    assert_eq!(
        get_job(&c, &s, &child).await["metadata"]["success_count"],
        1
    );
    // Deleting the parent deletes its only child.
    let deleted = req(
        &c,
        "DELETE",
        &s.url(&format!("/api/v1/job/{parent}/")),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        req(&c, "GET", &s.url(&format!("/api/v1/job/{child}/")), None)
            .await
            .status,
        404
    );
    // A remote job against the server's own health endpoint.
    let remote = create(
        &c,
        &s,
        json!({"name": "remote", "type": 1, "remote_properties": {"url": s.url("/healthz")}}),
    )
    .await;
    eventually(10, || async {
        (get_job(&c, &s, &remote).await["metadata"]["success_count"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn restart_keeps_jobs_history_flags_children_and_one_offs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let (parent, child) = create_parent_and_child(&c, &s).await;
    let off = create(&c, &s, json!({"name": "off", "command": "true", "schedule": starts_in(3600, "R", "PT1H"), "disabled": true})).await;
    let once = create(&c, &s, json!({"name": "once", "command": "true"})).await;
    action(&c, &s, "start", &parent).await;
    eventually(10, || async {
        (get_job(&c, &s, &once).await["is_done"] == true).then_some(())
    })
    .await;
    let before = get_job(&c, &s, &parent).await;
    assert_eq!(s.stop(), Some(0), "SIGTERM exits 0");

    let s = Server::start(dir.path(), &[]);
    let after = get_job(&c, &s, &parent).await;
    assert_eq!(after["dependent_jobs"], json!([child]));
    assert_eq!(after["metadata"], before["metadata"]);
    assert_eq!(
        after["stats"].as_array().unwrap().len(),
        1,
        "history survives"
    );
    assert_eq!(after["next_run_at"], before["next_run_at"]);
    assert_eq!(get_job(&c, &s, &off).await["disabled"], true);
    let once_after = get_job(&c, &s, &once).await;
    assert_eq!(
        once_after["metadata"]["success_count"], 1,
        "a one-off that ran does not run again"
    );
    assert_eq!(
        get_job(&c, &s, &child).await["metadata"]["success_count"],
        1
    );
    // Children still work after the restart.
    action(&c, &s, "start", &parent).await;
    assert_eq!(
        get_job(&c, &s, &child).await["metadata"]["success_count"],
        2
    );
    // And a job disabled before the restart can be enabled.
    assert_eq!(action(&c, &s, "enable", &off).await.status, 204);
    assert_eq!(get_job(&c, &s, &off).await["disabled"], false);
}

#[tokio::test]
async fn auth_token_guards_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--auth-token", "s3cret"]);
    let c = client();
    let r = req(&c, "GET", &s.url("/api/v1/job/"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), "Bearer");
    let r = c
        .get(s.url("/api/v1/job/"))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(s.url("/api/v1/job/"))
        .header("Authorization", "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        req(&c, "GET", &s.url("/healthz"), None).await.status,
        200,
        "health stays open"
    );
}

#[tokio::test]
async fn health_metrics_pagination_and_preview() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    for k in 0..5 {
        create(&c, &s, json!({"name": format!("j{k}"), "command": "true", "schedule": starts_in(3600, "R", "PT1H")})).await;
    }
    let h = req(&c, "GET", &s.url("/healthz"), None).await.json();
    assert_eq!(
        (
            h["status"].as_str(),
            h["jobs"].as_u64(),
            h["store"].as_str()
        ),
        (Some("ok"), Some(5), Some("redb"))
    );
    let m = req(&c, "GET", &s.url("/metrics"), None).await.text();
    assert!(m.contains("kala_jobs{state=\"enabled\"} 5"), "{m}");
    assert!(m.contains("kala_run_lateness_seconds_bucket"));
    assert!(
        m.contains("kala_http_requests_total{method=\"POST\",status=\"201\"} 5"),
        "{m}"
    );
    let p1 = req(&c, "GET", &s.url("/api/v1/job/?limit=3"), None)
        .await
        .json();
    assert_eq!(p1["jobs"].as_object().unwrap().len(), 3);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let p2 = req(
        &c,
        "GET",
        &s.url(&format!("/api/v1/job/?limit=3&cursor={cursor}")),
        None,
    )
    .await
    .json();
    assert_eq!(p2["jobs"].as_object().unwrap().len(), 2);
    assert_eq!(p2["next_cursor"], Value::Null);
    let pv = req(
        &c,
        "POST",
        &s.url("/api/v1/schedule/preview/"),
        Some(
            &json!({"schedule": "0 9 * * *", "time_zone": "Europe/Berlin", "count": 3}).to_string(),
        ),
    )
    .await;
    assert_eq!(pv.status, 200);
    assert_eq!(pv.json()["next"].as_array().unwrap().len(), 3);
    let bad = req(
        &c,
        "POST",
        &s.url("/api/v1/schedule/preview/"),
        Some(&json!({"schedule": "R/x/PT1S"}).to_string()),
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn tls_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let tls = kala_testkit::tls::ca_and_server_cert(dir.path(), "DNS:localhost").unwrap();
    let (cert, key) = (tls.cert, tls.key);
    let s = Server::start(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let c = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = c.get(s.url("/api/v1/stats/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(s.url("/api/v1/job/"))
        .body(json!({"name": "tls", "command": "true"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Plain HTTP on the TLS port gets no answer.
    let plain = s.base.replacen("https://", "http://", 1);
    assert!(
        client()
            .get(format!("{plain}/api/v1/stats/"))
            .send()
            .await
            .is_err()
    );
    let (code, _, err) = {
        let out = std::process::Command::new(BIN)
            .args([
                "serve",
                "--port",
                "0",
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.pem",
                "--bolt-path",
            ])
            .arg(dir.path().join("other"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::new(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_ne!(code, Some(0));
    assert!(err.contains("--tls-cert /nonexistent.pem"), "{err}");
}

/// A web page elsewhere cannot reach the server (Origin, Sec-Fetch-Site,
/// the content types a browser sends without a preflight, DNS rebinding),
/// while curl's defaults and Kala's clients still work.
#[tokio::test]
async fn cross_site_and_rebinding_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--allowed-host", "kala.internal"]);
    let c = client();
    let body =
        json!({"name": "owned", "command": "true", "schedule": starts_in(3600, "R1", "PT10S")})
            .to_string();
    let post = |headers: &[(&'static str, &'static str)]| {
        let mut r = c.post(s.url("/api/v1/job/")).body(body.clone());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    // A "simple" cross-site POST a page can make with fetch() or a form.
    let r = post(&[
        ("origin", "http://evil.example"),
        ("content-type", "text/plain"),
    ])
    .await
    .unwrap();
    assert_eq!(status(r), 403);
    let r = post(&[
        ("sec-fetch-site", "cross-site"),
        ("content-type", "application/x-www-form-urlencoded"),
    ])
    .await
    .unwrap();
    assert_eq!(status(r), 403);
    let r = post(&[("content-type", "text/plain;charset=UTF-8")])
        .await
        .unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(st, 415, "{text}");
    assert!(text.contains("content-type"), "{text}");
    // DNS rebinding: the page's own name in Host.
    let r = post(&[("host", "evil.example:8000")]).await.unwrap();
    assert_eq!(status(r), 421);
    let r = c
        .get(s.url("/api/v1/job/"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 421, "reads too");
    let listed = req(&c, "GET", &s.url("/api/v1/job/"), None).await.json();
    assert_eq!(listed["jobs"], json!({}), "nothing was created");
    // curl -d (form content type, no browser headers), no content type,
    // JSON, a name given with --allowed-host: all fine.
    for headers in [
        &[("content-type", "application/x-www-form-urlencoded")][..],
        &[][..],
        &[("content-type", "application/json")][..],
        &[
            ("host", "kala.internal:8000"),
            ("content-type", "application/json"),
        ][..],
    ] {
        let r = post(headers).await.unwrap();
        assert_eq!(status(r), 201, "{headers:?}");
    }
}

/// Templates that could crash or stall the server are refused at creation
/// with a 400 naming the field; nothing is stored and the server answers on.
#[tokio::test]
async fn dangerous_templates_are_refused_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let nested = format!("{{{{{}1{}}}}}", "(".repeat(10_000), ")".repeat(10_000));
    for (body, field) in [
        (
            json!({"name": "r", "command": r#"{{define "a"}}{{template "a"}}{{end}}{{template "a"}}"#, "TemplateDelimiters": "{{ }}"}),
            "command",
        ),
        (
            json!({"name": "p", "command": r#"echo {{printf "%70000d" 1}}"#, "TemplateDelimiters": "{{ }}"}),
            "command",
        ),
        (
            json!({"name": "n", "command": nested, "TemplateDelimiters": "{{ }}"}),
            "command",
        ),
        (
            json!({"name": "u", "type": 1, "remote_properties": {"url": "http://127.0.0.1:1/", "body": r#"<<template "x">>"#}, "TemplateDelimiters": "<< >>"}),
            "remote_properties.body",
        ),
    ] {
        let r = req(&c, "POST", &s.url("/api/v1/job/"), Some(&body.to_string())).await;
        assert_eq!(r.status, 400, "{}", r.text());
        let err = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(err.starts_with(field), "{err}");
    }
    let r = req(&c, "GET", &s.url("/healthz"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["jobs"], 0, "nothing was stored");
}

/// A command that cannot start, with many retries, does not spin: each
/// retry waits at least the engine's minimum delay (100 ms), and the
/// server keeps answering meanwhile.
#[tokio::test]
async fn retries_of_a_command_that_cannot_start_are_paced() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let mut ids = Vec::new();
    for k in 0..4 {
        let body =
            json!({"name": format!("broken {k}"), "command": "/nonexistent/x", "retries": 20});
        ids.push(create(&c, &s, body).await);
    }
    let stats_url = s.url(&format!("/api/v1/job/stats/{}/", ids[0]));
    let health_url = s.url("/healthz");
    let stat = eventually(60, || {
        let (c, stats_url, health_url) = (c.clone(), stats_url.clone(), health_url.clone());
        async move {
            assert_eq!(req(&c, "GET", &health_url, None).await.status, 200);
            req(&c, "GET", &stats_url, None).await.json()["job_stats"]
                .get(0)
                .cloned()
        }
    })
    .await;
    assert_eq!(stat["number_of_retries"], 20);
    assert_eq!(stat["success"], false);
    let took_ns = stat["execution_duration"].as_u64().unwrap_or(0);
    assert!(
        took_ns >= 20 * 100_000_000,
        "20 retries took {took_ns} ns: the minimum delay was not kept"
    );
}

/// A client that never finishes its headers, or sits idle on a kept-alive
/// connection, is disconnected after `--header-timeout`.
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--header-timeout", "1"]);
    let addr = s.base.trim_start_matches("http://").to_string();
    // Half a request line and a header, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // A whole request, then idle on the kept-alive connection.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    for (name, conn) in [("slow", &mut slow), ("idle", &mut idle)] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut buf),
        )
        .await;
        assert!(read.is_ok(), "{name}: the server kept the connection open");
        let text = String::from_utf8_lossy(&buf);
        if name == "idle" {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        }
    }
    // A 413 says that the connection ends.
    let big = "x".repeat(2 << 20);
    let r = req(&client(), "POST", &s.url("/api/v1/job/"), Some(&big)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), "close");
}

/// SIGTERM with a short --grace-period: a half-sent request and a long
/// command do not keep the process alive past the grace period.
#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--grace-period", "2"]);
    let c = client();
    create(
        &c,
        &s,
        json!({"name": "long", "command": "bash -c 'sleep 30; true'"}),
    )
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(
        b"POST /api/v1/job/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"na",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut s = s;
    std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "still running 8 s after SIGTERM with a 2 s grace period"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

/// Two full listings of 50,000 jobs at once do not block the runtime: a
/// `/healthz` sent after them is answered before either listing's body
/// has ended (the full list is streamed a few hundred jobs at a time;
/// encoded in one piece on a runtime worker, `/healthz` waited for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_listings_do_not_block_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = kala_store_redb::RedbStore::open_dir(dir.path()).unwrap();
        let start = starts_in(24 * 3600, "R", "PT1H");
        for chunk in 0..5 {
            let jobs = (0..10_000)
                .map(|k| {
                    let mut j = kala_job::Job::new(format!("job {chunk}-{k}"), "true");
                    j.schedule = start.clone();
                    j
                })
                .collect();
            kala_store::JobStore::apply(
                &store,
                kala_store::Batch {
                    put: jobs,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        kala_store::JobStore::close(&store).await.unwrap();
    }
    let s = Server::start(dir.path(), &[]);
    let c = client();
    // Each listing notes when its body ended.
    let lists: Vec<_> = (0..2)
        .map(|_| {
            let (c, url) = (c.clone(), s.url("/api/v1/job/?stats=false"));
            tokio::spawn(async move {
                let mut r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                // Read slowly, so that a listing lasts well past the
                // /healthz below however busy the machine is.
                let mut body = Vec::new();
                while let Some(chunk) = r.chunk().await.unwrap() {
                    body.extend_from_slice(&chunk);
                    tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                }
                let ended = std::time::Instant::now();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["jobs"].as_object().unwrap().len(), 50_000);
                ended
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let h = req(&c, "GET", &s.url("/healthz"), None).await;
    let answered = std::time::Instant::now();
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["jobs"], 50_000);
    for l in lists {
        let ended = l.await.unwrap();
        assert!(
            answered < ended,
            "/healthz was answered only after a whole listing"
        );
    }
}

/// The full list of more than 1,000 jobs is streamed; it is the same JSON
/// as the same jobs in one page (encoded in one piece), stats included
/// for the jobs that ran and `null` for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamed_list_is_the_paged_list() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = kala_store_redb::RedbStore::open_dir(dir.path()).unwrap();
        let start = starts_in(24 * 3600, "R", "PT1H");
        let jobs = (0..1_500)
            .map(|k| {
                let mut j = kala_job::Job::new(format!("job \"{k}\""), "true");
                j.schedule = start.clone();
                j
            })
            .collect();
        kala_store::JobStore::apply(
            &store,
            kala_store::Batch {
                put: jobs,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        kala_store::JobStore::close(&store).await.unwrap();
    }
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let paged = req(&c, "GET", &s.url("/api/v1/job/?limit=10000"), None)
        .await
        .json();
    let ids: Vec<String> = paged["jobs"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(ids.len(), 1_500);
    for id in &ids[..2] {
        assert_eq!(action(&c, &s, "start", id).await.status, 204);
    }
    let paged = req(&c, "GET", &s.url("/api/v1/job/?limit=10000"), None).await;
    let whole = req(&c, "GET", &s.url("/api/v1/job/"), None).await;
    assert_eq!(whole.status, 200);
    // As every common client asks for it: gzip, whole, the same JSON.
    let zipped = get_gzip(&c, &s.url("/api/v1/job/")).await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), "gzip");
    assert_eq!(
        zipped.json(),
        whole.json(),
        "the gzip list is the plain list"
    );
    assert_eq!(
        whole.header("content-type"),
        "application/json;charset=UTF-8"
    );
    let (paged, whole) = (paged.json(), whole.json());
    assert_eq!(whole["jobs"], paged["jobs"], "the same jobs, stats and all");
    assert!(
        whole.get("next_cursor").is_none(),
        "Kala's shape: jobs only"
    );
    let with_stats = whole["jobs"]
        .as_object()
        .unwrap()
        .values()
        .filter(|j| j["stats"].is_array())
        .count();
    assert_eq!(
        with_stats, 2,
        "the two jobs that ran have stats, the rest null"
    );
    // In id order, as Kala's (Go's sorted map) and the one-piece answer.
    let text = req(&c, "GET", &s.url("/api/v1/job/"), None).await.text();
    let at: Vec<usize> = ids
        .iter()
        .map(|id| {
            text.find(&format!("\"{id}\":{{"))
                .expect("every id is a key")
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "keys in id order");
    s.stop();
}
