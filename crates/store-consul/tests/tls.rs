//! HTTPS to Consul with the `--jobdb-tls-*` options: a private CA, and a
//! server name verified instead of the address's host.

use kala_store::{Batch, JobStore};
use kala_store_consul::test_server::ConsulUnderTest;
use kala_store_consul::{ConsulOptions, ConsulStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_a_server_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let files = kala_testkit::tls::ca_and_server_cert(d, "DNS:consul.test").expect("certificates");
    let server = ConsulUnderTest::start_tls(&files.cert, &files.key);
    let port = server.https_port.expect("https port");
    let tls = |servername: Option<&str>, ca: bool| ConsulOptions {
        address: format!("127.0.0.1:{port}"),
        prefix: "kala_tls".into(),
        tls_ca: ca.then(|| files.ca.clone()),
        tls_servername: servername.map(str::to_string),
        ..ConsulOptions::default()
    };
    // The certificate names consul.test, not 127.0.0.1: verified as that name.
    let store = ConsulStore::connect(&tls(Some("consul.test"), true))
        .await
        .expect("https with the CA and the server name");
    let job = kala_job::Job::new("over tls", "true");
    store.apply(Batch::put(job.clone())).await.expect("write");
    assert_eq!(
        store.get(&job.id).await.expect("read").map(|j| j.name),
        Some("over tls".into())
    );
    // Without the server name the address does not match the certificate;
    // without the CA the certificate is not trusted: errors, not panics.
    for o in [tls(None, true), tls(Some("consul.test"), false)] {
        let err = ConsulStore::connect(&o).await.err().expect("refused");
        assert!(err.to_string().contains("consul"), "{err}");
    }
}
