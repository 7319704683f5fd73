//! Publish jobs against the real brokers of this machine (NATS with
//! JetStream on 4222, RabbitMQ on 5672 guest/guest, Mosquitto on 1883):
//! a subscriber in the test receives every message and checks its
//! payload, headers and id; refusals and a broker that goes away are
//! failed attempts, and the next attempt succeeds once it is back.
//! A broker that cannot be reached fails the test: it does not skip.

use std::time::Duration;

use futures_util::StreamExt;

mod common;
use common::{ctx, executor, job, mqtt_subscriber, unique};

const NATS: &str = "127.0.0.1:4222";
const AMQP: &str = "127.0.0.1:5672";
const MQTT: &str = "127.0.0.1:1883";

fn reachable(addr: &str) {
    assert!(
        std::net::TcpStream::connect_timeout(
            &addr.parse().expect("address"),
            Duration::from_secs(2)
        )
        .is_ok(),
        "the broker at {addr} is not reachable: these tests need it (see .ci/run)"
    );
}

#[tokio::test]
async fn nats_core_delivers_payload_headers_and_id() {
    reachable(NATS);
    let (ex, _b) = executor(&[("events", format!("nats://{NATS}"))]);
    let sub_client = async_nats::connect(NATS).await.expect("subscriber");
    let subject = unique("kala.test.");
    let mut sub = sub_client
        .subscribe(subject.clone())
        .await
        .expect("subscribe");
    sub_client.flush().await.expect("flush");
    let j = job("events", &subject);
    let c = ctx(&j, 1_900_000_000);
    let a = ex.run_as(&j, None, Some(&c)).await;
    assert!(a.success, "{a:?}");
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message within 5 s")
        .expect("message");
    assert_eq!(
        std::str::from_utf8(&m.payload).expect("utf-8"),
        r#"{"job":"publisher","point":"2030-03-17T17:46:40Z"}"#
    );
    let h = m.headers.expect("headers");
    let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
    assert_eq!(get("X-Team").as_deref(), Some("billing"));
    assert_eq!(get("Kala-Job-Id"), Some(j.id.clone()));
    assert_eq!(get("Kala-Run-Id"), Some(c.run_id.clone()));
    assert_eq!(
        get("Nats-Msg-Id"),
        Some(format!("kala-{}-1900000000000000000", j.id))
    );
}

#[tokio::test]
async fn jetstream_acks_and_drops_a_point_published_twice() {
    reachable(NATS);
    let (ex, _b) = executor(&[("js", format!("nats://{NATS}?jetstream=true"))]);
    let client = async_nats::connect(NATS).await.expect("client");
    let js = async_nats::jetstream::new(client);
    let stream = unique("KALA_TEST_");
    let subject = unique("kala.js.");
    // No stream captures the subject yet: the publish is refused.
    let j = job("js", &subject);
    let c = ctx(&j, 1_900_000_010);
    let refused = ex.run_as(&j, Some(Duration::from_secs(3)), Some(&c)).await;
    assert!(!refused.success, "no stream, no ack: {refused:?}");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("stream");
    let first = ex.run_as(&j, None, Some(&c)).await;
    assert!(first.success, "{first:?}");
    assert!(first.output.contains("stored message"), "{first:?}");
    // The same point again (a retry, or another instance after a
    // takeover, with another run id): the same message id, dropped.
    let again = ctx(&j, 1_900_000_010);
    let second = ex.run_as(&j, None, Some(&again)).await;
    assert!(second.success, "{second:?}");
    assert!(second.output.contains("duplicate"), "{second:?}");
    let next = ex.run_as(&j, None, Some(&ctx(&j, 1_900_000_011))).await;
    assert!(next.success, "{next:?}");
    let mut s = js.get_stream(&stream).await.expect("stream");
    let messages = s.info().await.expect("info").state.messages;
    assert_eq!(
        messages, 2,
        "two points, two messages (the duplicate dropped)"
    );
    js.delete_stream(&stream).await.expect("delete");
}

async fn amqp_channel() -> lapin::Channel {
    let conn = lapin::Connection::connect(
        &format!("amqp://guest:guest@{AMQP}/%2f"),
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ");
    conn.create_channel().await.expect("channel")
}

async fn amqp_get(ch: &lapin::Channel, queue: &str) -> lapin::message::Delivery {
    for _ in 0..50 {
        if let Some(m) = ch
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic_get")
        {
            return m.delivery;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no message in {queue} within 5 s");
}

#[tokio::test]
async fn amqp_confirms_persistent_messages_and_fails_refusals() {
    reachable(AMQP);
    let (ex, _b) = executor(&[("rabbit", format!("amqp://guest:guest@{AMQP}/%2f"))]);
    let ch = amqp_channel().await;
    let queue = unique("kala-test-");
    ch.queue_declare(
        queue.as_str().into(),
        lapin::options::QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("queue");
    let j = job("rabbit", &queue);
    let c = ctx(&j, 1_900_000_020);
    let a = ex.run_as(&j, None, Some(&c)).await;
    assert!(a.success, "{a:?}");
    assert!(a.output.contains("confirmed"), "{a:?}");
    let d = amqp_get(&ch, &queue).await;
    assert_eq!(
        std::str::from_utf8(&d.data).expect("utf-8"),
        r#"{"job":"publisher","point":"2030-03-17T17:47:00Z"}"#
    );
    let p = &d.properties;
    assert_eq!(
        p.message_id().as_ref().map(|s| s.as_str().to_string()),
        Some(format!("kala-{}-1900000020000000000", j.id))
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    let headers = p.headers().clone().expect("headers");
    let header = |k: &str| match headers.inner().get(k) {
        Some(lapin::types::AMQPValue::LongString(s)) => Some(s.to_string()),
        _ => None,
    };
    assert_eq!(header("X-Team").as_deref(), Some("billing"));
    assert_eq!(header("Kala-Job-Id"), Some(j.id.clone()));

    // Unroutable (no queue bound to the key): returned, a failure.
    let nowhere = job("rabbit", &unique("no-such-queue-"));
    let r = ex.run_as(&nowhere, None, Some(&ctx(&nowhere, 1))).await;
    assert!(!r.success, "{r:?}");
    assert!(
        r.error.as_deref().unwrap_or_default().contains("returned"),
        "{r:?}"
    );
    // An exchange that does not exist: the broker closes the channel.
    let mut bad = job("rabbit", &queue);
    if let Some(p) = bad.publish.as_mut() {
        p.exchange = unique("no-such-exchange-");
    }
    let r = ex
        .run_as(&bad, Some(Duration::from_secs(5)), Some(&ctx(&bad, 2)))
        .await;
    assert!(!r.success, "{r:?}");
    // The next publish opens a new channel and succeeds.
    let ok = ex.run_as(&j, None, Some(&ctx(&j, 3))).await;
    assert!(
        ok.success,
        "after a refusal the connection is reopened: {ok:?}"
    );
    amqp_get(&ch, &queue).await;
}

#[tokio::test]
async fn mqtt_qos_1_and_2_are_confirmed_with_the_id_as_a_user_property() {
    use rumqttc::v5::mqttbytes::QoS;
    reachable(MQTT);
    let (ex, _b) = executor(&[("mqtt", format!("mqtt://{MQTT}"))]);
    let topic = unique("kala/test/");
    let (mut rx, poller) = mqtt_subscriber(1883, &topic, QoS::ExactlyOnce).await;
    for qos in [1u8, 2, 0] {
        let mut j = job("mqtt", &topic);
        if let Some(p) = j.publish.as_mut() {
            p.qos = Some(qos);
        }
        let c = ctx(&j, 1_900_000_030 + i64::from(qos));
        let a = ex.run_as(&j, None, Some(&c)).await;
        assert!(a.success, "QoS {qos}: {a:?}");
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
        let props = p.properties.expect("properties").user_properties;
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("X-Team").as_deref(), Some("billing"), "QoS {qos}");
        assert_eq!(
            get("kala-message-id"),
            Some(format!(
                "kala-{}-{}",
                j.id,
                c.scheduled_at.expect("point").as_nanosecond()
            )),
            "QoS {qos}"
        );
    }
    poller.abort();
}

/// Each broker behind a proxy that cuts its connections, then one that
/// stalls them (the link stays open and nothing gets through, as a
/// network partition looks): a publish meanwhile is a failed attempt
/// within its timeout, never a hang, and one after the link is back
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_goes_away_fails_attempts_until_it_is_back() {
    for fault in ["cut", "stall"] {
        for (kind, addr) in [("nats", NATS), ("amqp", AMQP), ("mqtt", MQTT)] {
            reachable(addr);
            let proxy = kala_testkit::faults::FaultProxy::start(addr).expect("proxy");
            let url = match kind {
                "nats" => format!("nats://127.0.0.1:{}?jetstream=true", proxy.port()),
                "amqp" => format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port()),
                _ => format!("mqtt://127.0.0.1:{}", proxy.port()),
            };
            let (ex, _b) = executor(&[("b", url)]);
            let stream = unique("KALA_AWAY_");
            let to = match kind {
                "nats" => unique("kala.away."),
                "amqp" => unique("kala-away-"),
                _ => unique("kala/away/"),
            };
            match kind {
                "nats" => {
                    let js =
                        async_nats::jetstream::new(async_nats::connect(NATS).await.expect("nats"));
                    js.create_stream(async_nats::jetstream::stream::Config {
                        name: stream.clone(),
                        subjects: vec![to.clone()],
                        ..Default::default()
                    })
                    .await
                    .expect("stream");
                }
                "amqp" => {
                    amqp_channel()
                        .await
                        .queue_declare(
                            to.as_str().into(),
                            lapin::options::QueueDeclareOptions::default(),
                            lapin::types::FieldTable::default(),
                        )
                        .await
                        .expect("queue");
                }
                _ => {}
            }
            let j = job("b", &to);
            let before = ex.run_as(&j, None, Some(&ctx(&j, 10))).await;
            assert!(before.success, "{kind} before the cut: {before:?}");
            match fault {
                "cut" => proxy.cut(),
                _ => proxy.stall(),
            }
            let t = Duration::from_secs(3);
            let asked = std::time::Instant::now();
            let during = ex.run_as(&j, Some(t), Some(&ctx(&j, 11))).await;
            assert!(
                !during.success,
                "{kind} while the link is {fault}: {during:?}"
            );
            assert!(
                asked.elapsed() < t + Duration::from_secs(3),
                "{kind}, {fault}: the failed attempt took {:?} (timeout {t:?})",
                asked.elapsed()
            );
            proxy.heal();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut point = 12;
            loop {
                let after = ex.run_as(&j, Some(t), Some(&ctx(&j, point))).await;
                if after.success {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{kind}, {fault}: no success within 30 s of the link coming back: {after:?}"
                );
                point += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            match kind {
                "nats" => {
                    let js =
                        async_nats::jetstream::new(async_nats::connect(NATS).await.expect("nats"));
                    js.delete_stream(&stream).await.expect("delete");
                }
                "amqp" => {
                    amqp_channel()
                        .await
                        .queue_delete(to.as_str().into(), Default::default())
                        .await
                        .expect("delete");
                }
                _ => {}
            }
        }
    }
}
