//! MQTT over TLS (`mqtts://`) against a Mosquitto the test starts with a
//! CA of its own: published and confirmed with the broker's CA file,
//! refused (a failed attempt, nothing delivered) without it; a CA file
//! with plain `mqtt://` is a configuration error.

use std::sync::Arc;
use std::time::Duration;

use kala_executor::Executor;
use kala_publish::{BrokerConfig, Brokers};

mod common;
use common::{ctx, executor, job, mqtt_subscriber, unique};

/// A Mosquitto of the test's own with a TLS listener (a CA and a server
/// certificate for 127.0.0.1 made with openssl) and a plain one for the
/// subscriber.
struct TlsMosquitto {
    child: std::process::Child,
    plain: u16,
    tls: u16,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn tls_mosquitto() -> TlsMosquitto {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let files = kala_testkit::tls::ca_and_server_cert(d, "IP:127.0.0.1").expect("certificates");
    let (plain, tls) = (free_port(), free_port());
    let conf = format!(
        "user root\npersistence false\nallow_anonymous true\nlog_dest stderr\n\
         listener {plain} 127.0.0.1\n\
         listener {tls} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n",
        ca = files.ca.display(),
        cert = files.cert.display(),
        key = files.key.display(),
    );
    std::fs::write(d.join("mosquitto.conf"), conf).expect("conf");
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("mosquitto is needed (Debian's mosquitto package; .ci/run checks it)");
    let child = std::process::Command::new(bin)
        .arg("-c")
        .arg(d.join("mosquitto.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let up = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(
            std::time::Instant::now() < up,
            "mosquitto did not listen on {tls}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsMosquitto {
        child,
        plain,
        tls,
        ca: files.ca.clone(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_publishes_over_tls_and_refuses_an_unknown_issuer() {
    use rumqttc::v5::mqttbytes::QoS;
    let m = tls_mosquitto();
    let topic = unique("kala/tls/");
    let (mut rx, poller) = mqtt_subscriber(m.plain, &topic, QoS::AtLeastOnce).await;

    // With the broker's CA: delivered, confirmed.
    let brokers = Arc::new(
        Brokers::new(
            vec![BrokerConfig {
                name: "secure".into(),
                url: format!("mqtts://127.0.0.1:{}", m.tls),
                ca_file: Some(m.ca.clone()),
            }],
            "test-node",
        )
        .expect("brokers"),
    );
    let ex = Executor::new().expect("executor");
    ex.set_publisher(kala_publish::publisher(brokers.clone()));
    let j = job("secure", &topic);
    let a = ex.run_as(&j, None, Some(&ctx(&j, 1_900_000_100))).await;
    assert!(a.success, "over TLS: {a:?}");
    let p = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a message within 5 s")
        .flatten()
        .expect("publish");
    assert!(
        std::str::from_utf8(&p.payload)
            .expect("utf-8")
            .contains("publisher")
    );

    // Without it, the server's certificate is not trusted: a failed
    // attempt, nothing delivered.
    let (ex, _b) = executor(&[("secure", format!("mqtts://127.0.0.1:{}", m.tls))]);
    let j = job("secure", &topic);
    let a = ex.run_as(&j, None, Some(&ctx(&j, 1_900_000_101))).await;
    assert!(!a.success, "an unknown issuer must fail: {a:?}");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "nothing was delivered"
    );
    // A CA file with plain mqtt:// is a configuration error.
    let err = Brokers::new(
        vec![BrokerConfig {
            name: "plain".into(),
            url: format!("mqtt://127.0.0.1:{}", m.plain),
            ca_file: Some(m.ca.clone()),
        }],
        "test-node",
    );
    assert!(err.is_err());
    poller.abort();
}
