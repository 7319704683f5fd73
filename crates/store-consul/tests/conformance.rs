//! The shared conformance suite, large staged batches, and Kala's own
//! layout, against a real Consul agent started on free loopback ports.

use std::sync::Arc;

use kala_store::{Batch, JobStore};
use kala_store_consul::test_server::ConsulUnderTest;
use kala_store_consul::{ConsulOptions, ConsulStore};

fn http() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::new()
}

fn options(server: &ConsulUnderTest, prefix: &str) -> ConsulOptions {
    ConsulOptions {
        address: server.address.clone(),
        prefix: prefix.into(),
        ..ConsulOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_passes_the_conformance_suite() {
    let server = ConsulUnderTest::start();
    let o = options(&server, "kala_conformance");
    let open = || {
        let o = o.clone();
        async move {
            let s = ConsulStore::connect(&o)
                .await
                .unwrap_or_else(|e| panic!("consul at {}: {e}", o.address));
            Arc::new(s) as Arc<dyn JobStore>
        }
    };
    kala_store::conformance::run_all(open, 2_000).await;
}

/// A batch far over one transaction (64 operations): all of it lands, and
/// a store that connects while it is staged but not committed sees none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_a_transaction_is_all_or_nothing() {
    let server = ConsulUnderTest::start();
    let o = options(&server, "kala_big");
    let store = ConsulStore::connect(&o).await.unwrap();
    let jobs: Vec<_> = (0..500)
        .map(|k| kala_job::Job::new(format!("job {k}"), "x".repeat(2_000)))
        .collect();
    store
        .apply(Batch {
            put: jobs.clone(),
            ..Batch::default()
        })
        .await
        .unwrap();
    assert_eq!(store.load_all().await.unwrap().len(), 500);
    // Delete them all in one batch (1,500 operations).
    store
        .apply(Batch {
            delete: jobs.iter().map(|j| j.id.clone()).collect(),
            ..Batch::default()
        })
        .await
        .unwrap();
    assert!(store.load_all().await.unwrap().is_empty());

    // Staging left by a crash before the commit point is dropped at the
    // next connect; nothing of it is visible.
    let http = http();
    let chunk = serde_json::json!([{"s": ["kala_big/jobs/0000ghost", "{}"]}]);
    let r = http
        .put(format!(
            "http://{}/v1/kv/kala_big/staged/deadbeef/000000",
            server.address
        ))
        .body(chunk.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let store = ConsulStore::connect(&o).await.unwrap();
    assert!(store.load_all().await.unwrap().is_empty());
    let left = http
        .get(format!(
            "http://{}/v1/kv/kala_big/staged/?keys",
            server.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 404, "the abandoned staging is gone");

    // A committed batch a crash interrupted is finished at the next connect.
    let job = kala_job::Job::new("committed", "true");
    let value = serde_json::to_string(&job).unwrap();
    let chunk = serde_json::json!([{"s": [format!("kala_big/jobs/{}", job.id), value]}]);
    for (key, body) in [
        ("kala_big/staged/cafe/000000", chunk.to_string()),
        ("kala_big/committed/cafe", "1".to_string()),
    ] {
        let r = http
            .put(format!("http://{}/v1/kv/{key}", server.address))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let store = ConsulStore::connect(&o).await.unwrap();
    let loaded = store.load_all().await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].name, "committed");
}

/// Kala keeps `kala/jobs/<id>` with the job as its API renders it: such a
/// store loads into kala.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_kala_loads() {
    let server = ConsulUnderTest::start();
    let kala_json = r#"{"name":"test_job","id":"93b65499-b211-49ce-57e0-19e735cc5abd","command":"bash -c 'date'","owner":"","disabled":false,"dependent_jobs":null,"parent_jobs":null,"on_failure_job":"","schedule":"R2/2017-06-04T19:25:16.828696-07:00/PT10S","retries":0,"epsilon":"","next_run_at":"2017-06-04T19:25:16.828696-07:00","TemplateDelimiters":"","resume_at_next_scheduled_time":false,"metadata":{"success_count":2,"last_success":"2017-06-04T19:25:26.838Z","error_count":0,"last_error":"0001-01-01T00:00:00Z","last_attempted_run":"2017-06-04T19:25:26.838Z","number_of_finished_runs":2},"type":0,"remote_properties":{"url":"","method":"","body":"","headers":null,"timeout":0,"expected_response_codes":null},"stats":null,"is_done":false}
"#;
    let r = http()
        .put(format!(
            "http://{}/v1/kv/kala/jobs/93b65499-b211-49ce-57e0-19e735cc5abd",
            server.address
        ))
        .body(kala_json)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let store = ConsulStore::connect(&options(&server, "kala"))
        .await
        .unwrap();
    let jobs = store.load_all().await.unwrap();
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!(j.id, "93b65499-b211-49ce-57e0-19e735cc5abd");
    assert_eq!(j.name, "test_job");
    assert_eq!(j.command, "bash -c 'date'");
    assert_eq!(j.schedule, "R2/2017-06-04T19:25:16.828696-07:00/PT10S");
    assert_eq!(j.metadata.success_count, 2);
    assert_eq!(j.metadata.number_of_finished_runs, 2);
    assert!(j.metadata.last_error.is_none());
    assert!(j.metadata.last_success.is_some());
    assert_eq!(
        store.get(&j.id).await.unwrap().map(|g| g.name),
        Some("test_job".into())
    );
}

#[tokio::test]
async fn no_agent_is_unavailable_not_a_panic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = ConsulOptions {
        address: format!("127.0.0.1:{port}"),
        ..ConsulOptions::default()
    };
    let err = ConsulStore::connect(&o).await.err().expect("no agent");
    assert!(
        matches!(err, kala_store::StoreError::Unavailable(_)),
        "{err}"
    );
}
