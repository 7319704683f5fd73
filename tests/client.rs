//! kala-client against a real kala-server: every route, typed errors with
//! the server's message, the token, HTTPS with a private CA, and the job
//! list as a stream of pages.

mod common;

use std::time::Duration;

use common::*;
use futures_util::TryStreamExt;
use kala_client::{Client, Error, Job, Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_through_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--auth-token", "s3cret"]);

    // Without the token: a typed 401 carrying the server's message.
    let anonymous = Client::new(&s.base).unwrap();
    let err = anonymous.app_stats().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401), "{err}");
    assert!(matches!(err, Error::Api { .. }), "{err:?}");
    // Health and metrics need no token.
    let health = anonymous.health().await.unwrap();
    assert_eq!(health.status, "ok");
    let started = health.started.expect("started");
    assert!(started <= jiff::Timestamp::now());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        anonymous.health().await.unwrap().started,
        Some(started),
        "the start, not the time of the request"
    );
    // With a token, /metrics is a reader's too.
    assert!(
        anonymous.metrics().await.is_err(),
        "/metrics needs the token"
    );

    let kala = Client::builder(&s.base).token("s3cret").build().unwrap();
    assert!(kala.metrics().await.unwrap().contains("kala_runs_total"));
    assert_eq!(kala.openapi().await.unwrap()["openapi"], "3.1.0");
    let preview = kala
        .preview("R3/2030-01-01T00:00:00Z/PT1H", "", 2)
        .await
        .unwrap();
    assert_eq!(preview.next.len(), 2);
    assert_eq!(preview.next[1].to_string(), "2030-01-01T01:00:00Z");

    // A bad job: 400 naming the field, nothing stored.
    let mut bad = Job::new("bad", "true");
    bad.schedule = "R/2001-01-01T00:00:00Z/PT1H".into();
    let err = kala.create(&bad).await.unwrap_err();
    match &err {
        Error::Api {
            status, message, ..
        } => {
            assert_eq!(status.as_u16(), 400);
            assert!(message.starts_with("schedule:"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // A one-off job: created from the model's type, run once, read back.
    let mut once = Job::new("hello", "echo hello from kala-client");
    once.retries = 1;
    once.time_zone = "Europe/Berlin".into();
    let id = kala.create(&once).await.unwrap();
    let run = eventually(20, || async {
        kala.runs(&id, Some(1)).await.unwrap().pop()
    })
    .await;
    assert_eq!(run.outcome, Outcome::Succeeded, "{run:?}");
    assert_eq!(run.output, "hello from kala-client\n");
    let view = kala.get(&id).await.unwrap();
    assert_eq!(view.job.name, "hello");
    assert_eq!(view.job.retries, 1);
    assert_eq!(view.job.time_zone, "Europe/Berlin");
    assert_eq!(view.job.metadata.success_count, 1);
    assert!(view.job.metadata.last_success.is_some());
    let stats = view.stats.expect("stats");
    assert_eq!(stats.len(), 1);
    assert!(stats[0].success);
    assert_eq!(kala.stats(&id).await.unwrap(), stats);
    assert!(kala.get_without_stats(&id).await.unwrap().stats.is_none());

    // Start, disable, enable on a scheduled job.
    let mut hourly = Job::new("hourly", "true");
    hourly.schedule = starts_in(3600, "R", "PT1H");
    let hourly_id = kala.create(&hourly).await.unwrap();
    kala.start(&hourly_id).await.unwrap();
    assert_eq!(kala.stats(&hourly_id).await.unwrap().len(), 1);
    kala.disable(&hourly_id).await.unwrap();
    assert!(kala.get(&hourly_id).await.unwrap().job.disabled);
    kala.enable(&hourly_id).await.unwrap();
    let enabled = kala.get(&hourly_id).await.unwrap().job;
    assert!(!enabled.disabled);
    assert!(enabled.next_run_at.is_some());
    let app = kala.app_stats().await.unwrap();
    assert_eq!(app.jobs, 2);
    assert_eq!(app.success_count, 2);

    // The list, whole and as a stream of pages.
    for k in 0..23 {
        let mut j = Job::new(format!("bulk {k}"), "true");
        j.schedule = starts_in(3600, "R", "PT1H");
        kala.create(&j).await.unwrap();
    }
    let all = kala.list().await.unwrap();
    assert_eq!(all.len(), 25);
    let streamed: Vec<_> = kala.jobs(10).try_collect().await.unwrap();
    assert_eq!(streamed.len(), 25, "three pages of 10, 10 and 5");
    let mut ids: Vec<_> = streamed.iter().map(|v| v.job.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 25, "no job twice");
    let first = kala.list_page(None, 10).await.unwrap();
    assert_eq!(first.jobs.len(), 10);
    assert!(first.next_cursor.is_some());

    // Delete: then a typed 404.
    kala.delete(&id).await.unwrap();
    let err = kala.get(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    kala.delete_all().await.unwrap();
    assert!(kala.list().await.unwrap().is_empty());
    s.stop();
}

/// A create answers Kala's content type.
#[tokio::test]
async fn create_answers_kalas_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let r = req(
        &client(),
        "POST",
        &s.url("/api/v1/job/"),
        Some(r#"{"name":"x","command":"true","schedule":"R/2099-01-01T00:00:00Z/PT1H"}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), "application/json;charset=UTF-8");
    s.stop();
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tls = kala_testkit::tls::ca_and_server_cert(d, "IP:127.0.0.1,DNS:localhost").unwrap();
    let s = Server::start(
        d,
        &[
            "--tls-cert",
            tls.cert.to_str().unwrap(),
            "--tls-key",
            tls.key.to_str().unwrap(),
        ],
    );
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let ca = std::fs::read(&tls.ca).unwrap();
    let kala = Client::builder(&s.base)
        .root_certificate_pem(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(kala.app_stats().await.unwrap().jobs, 0);
    // Without the CA the server is not trusted.
    let untrusted = Client::new(&s.base).unwrap();
    assert!(matches!(
        untrusted.app_stats().await.unwrap_err(),
        Error::Http(_)
    ));
    assert!(matches!(
        Client::new("127.0.0.1:8000").unwrap_err(),
        Error::Config(_)
    ));
    s.stop();
}
