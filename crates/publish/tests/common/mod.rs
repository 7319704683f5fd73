//! What the publish tests share: an executor with named brokers, a
//! publish job, a run's context, unique names, an MQTT subscriber.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use kala_executor::{Executor, RunContext};
use kala_job::{Job, JobType, Publish};
use kala_publish::{BrokerConfig, Brokers};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish as MqttPublish};

pub fn executor(brokers: &[(&str, String)]) -> (Executor, Arc<Brokers>) {
    let configs = brokers
        .iter()
        .map(|(name, url)| BrokerConfig {
            name: name.to_string(),
            url: url.clone(),
            ca_file: None,
        })
        .collect();
    let brokers = Arc::new(Brokers::new(configs, "test-node").expect("brokers"));
    let ex = Executor::new().expect("executor");
    ex.set_publisher(kala_publish::publisher(brokers.clone()));
    (ex, brokers)
}

pub fn job(broker: &str, to: &str) -> Job {
    let mut j = Job::new("publisher", "");
    j.job_type = JobType::Publish;
    j.publish = Some(Box::new(Publish {
        broker: broker.into(),
        to: to.into(),
        payload: r#"{"job":"{{.Name}}","point":"{{.Run.ScheduledAt}}"}"#.into(),
        headers: [("X-Team".to_string(), "billing".to_string())].into(),
        ..Publish::default()
    }));
    j.validate(None).expect("valid");
    j
}

pub fn ctx(job: &Job, point_s: i64) -> RunContext {
    RunContext {
        job_id: job.id.clone(),
        job_name: job.name.clone(),
        run_id: uuid::Uuid::new_v4().to_string(),
        scheduled_at: Some(jiff::Timestamp::from_second(point_s).expect("time")),
        attempt: 1,
        node: "test-node".into(),
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// A subscriber to `topic` on the broker at 127.0.0.1:`port`, subscribed
/// when this returns; each message arrives on the receiver as
/// `Some(publish)`. Abort the handle when done.
pub async fn mqtt_subscriber(
    port: u16,
    topic: &str,
    qos: QoS,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Option<MqttPublish>>,
    tokio::task::JoinHandle<()>,
) {
    let mut opts = rumqttc::v5::MqttOptions::new(unique("sub-"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (sub, mut events) = rumqttc::v5::AsyncClient::new(opts, 64);
    sub.subscribe(topic.to_string(), qos)
        .await
        .expect("subscribe");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let poller = tokio::spawn(async move {
        let _sub = sub;
        loop {
            match events.poll().await {
                Ok(rumqttc::v5::Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(None);
                }
                Ok(rumqttc::v5::Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Some(p));
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber: {e}"),
            }
        }
    });
    let subscribed = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert!(matches!(subscribed, Ok(Some(None))), "subscribed");
    (rx, poller)
}
