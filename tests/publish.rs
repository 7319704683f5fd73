//! Publish jobs (type 3) through a real `kala-server` to the real NATS
//! (JetStream) of this machine: created over the HTTP API, each scheduled
//! point published once with its payload, headers and message id, the
//! run recorded with the broker's confirmation; an unknown broker is a
//! 400 naming it; a job that uses only Kala's fields shows no `publish`.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;

const NATS: &str = "127.0.0.1:4222";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_job_sends_each_point_to_jetstream_once() {
    let dir = tempfile::tempdir().expect("dir");
    let broker = format!("events=nats://{NATS}?jetstream=true");
    let s = Server::start(dir.path(), &["--broker", &broker]);
    let c = client();
    let nats = async_nats::connect(NATS)
        .await
        .unwrap_or_else(|e| panic!("NATS at {NATS} (this test needs it): {e}"));
    let js = async_nats::jetstream::new(nats.clone());
    let stream = unique("KALA_IT_").replace('-', "_");
    let subject = format!("kala.it.{}", unique("s"));
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .expect("stream");
    let mut sub = nats.subscribe(subject.clone()).await.expect("subscribe");
    nats.flush().await.expect("flush");

    // An unknown broker: 400, naming it and the known ones.
    let bad = req(
        &c,
        "POST",
        &s.url("/api/v1/job/"),
        Some(
            &json!({"name": "p", "type": 3, "schedule": starts_in(1, "R1", "PT1S"),
                    "publish": {"broker": "evnts", "to": subject}})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(
        bad.text().contains("evnts") && bad.text().contains("events"),
        "{}",
        bad.text()
    );
    // Unknown keys in `publish` are refused too (a typo must not publish
    // an empty message).
    let typo = req(
        &c,
        "POST",
        &s.url("/api/v1/job/"),
        Some(
            &json!({"name": "p", "type": 3, "schedule": starts_in(1, "R1", "PT1S"),
                    "publish": {"broker": "events", "to": subject, "paylaod": "x"}})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(typo.status, 400, "{}", typo.text());
    assert!(typo.text().contains("paylaod"), "{}", typo.text());

    let id = create(
        &c,
        &s,
        json!({
            "name": "tick",
            "type": 3,
            "schedule": starts_in(1, "R2", "PT1S"),
            "publish": {
                "broker": "events",
                "to": subject,
                "payload": "{\"point\":\"{{.Run.ScheduledAt}}\",\"job\":\"{{.Name}}\"}",
                "headers": {"X-Team": "billing"}
            }
        }),
    )
    .await;
    let job = get_job(&c, &s, &id).await;
    assert_eq!(job["type"], 3);
    assert_eq!(job["publish"]["broker"], "events");
    assert_eq!(job["publish"]["headers"]["X-Team"], "billing");
    assert!(
        job["publish"].get("qos").is_none(),
        "unset fields are absent: {job}"
    );

    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(15), sub.next())
            .await
            .expect("a message within 15 s")
            .expect("message");
        let body: serde_json::Value =
            serde_json::from_slice(&m.payload).expect("the payload is the rendered JSON");
        assert_eq!(body["job"], "tick");
        let h = m.headers.expect("headers");
        assert_eq!(h.get("X-Team").map(|v| v.as_str()), Some("billing"));
        assert_eq!(h.get("Kala-Job-Id").map(|v| v.as_str()), Some(id.as_str()));
        let msg_id = h
            .get("Nats-Msg-Id")
            .expect("message id")
            .as_str()
            .to_string();
        assert!(msg_id.starts_with(&format!("kala-{id}-")), "{msg_id}");
        ids.push((
            msg_id,
            body["point"].as_str().unwrap_or_default().to_string(),
        ));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        3,
        "three points, three distinct messages: {ids:?}"
    );
    wait_for_successes(&c, &s, &id, 3).await;
    let runs = s.api().runs(&id, None).await.expect("runs");
    assert!(
        runs.iter().all(|r| r.output.contains("stored message")),
        "each record keeps the broker's confirmation: {runs:?}"
    );
    let mut st = js.get_stream(&stream).await.expect("stream");
    assert_eq!(st.info().await.expect("info").state.messages, 3);
    js.delete_stream(&stream).await.expect("delete");

    // A job that uses only Kala's fields renders without `publish`.
    let plain = create(
        &c,
        &s,
        json!({"name": "plain", "command": "true", "schedule": starts_in(3600, "R1", "PT1S")}),
    )
    .await;
    let plain = get_job(&c, &s, &plain).await;
    assert!(plain.get("publish").is_none(), "{plain}");
    assert_eq!(s.stop(), Some(0));
}

#[tokio::test]
async fn a_server_without_brokers_refuses_publish_jobs_and_bad_broker_flags_stop_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let r = req(
        &c,
        "POST",
        &s.url("/api/v1/job/"),
        Some(
            &json!({"name": "p", "type": 3, "publish": {"broker": "events", "to": "x"}})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("--broker events=URL"), "{}", r.text());
    let r = req(
        &c,
        "POST",
        &s.url("/api/v1/job/"),
        Some(&json!({"name": "p", "type": 3}).to_string()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("publish"), "{}", r.text());
    assert_eq!(s.stop(), Some(0));

    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--port",
            "0",
            "--no-persist",
            "--broker",
            "k=kafka://u:hunter2@h:9092",
        ])
        .output()
        .expect("kala-server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported scheme \"kafka\""), "{err}");
    assert!(!err.contains("hunter2"), "a password is never shown: {err}");
}
