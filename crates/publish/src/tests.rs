use super::*;

#[test]
fn a_flag_is_name_equals_url() {
    let c = parse_flag("events=amqp://u:p@127.0.0.1:5672/%2f").expect("parses");
    assert_eq!(c.name, "events");
    assert_eq!(c.url, "amqp://u:p@127.0.0.1:5672/%2f");
    for bad in ["events", "=nats://x", "events=", ""] {
        assert!(parse_flag(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn credentials_are_never_shown() {
    assert_eq!(
        redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
        "amqp://guest:***@127.0.0.1:5672/%2f"
    );
    assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    let e = parse_flag("nope-secret").expect_err("no =").to_string();
    assert!(!e.contains("secret") || e.contains("nope-secret"), "{e}");
    let err = Brokers::new(
        vec![BrokerConfig {
            name: "x".into(),
            url: "kafka://user:hunter2@127.0.0.1:9092".into(),
            ca_file: None,
        }],
        "n",
    )
    .err()
    .expect("kafka is refused")
    .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("unsupported scheme \"kafka\""), "{err}");
}

#[test]
fn names_and_options_are_checked() {
    let one = |name: &str, url: &str| {
        Brokers::new(
            vec![BrokerConfig {
                name: name.into(),
                url: url.into(),
                ca_file: None,
            }],
            "n",
        )
        .map(|b| b.list())
    };
    assert!(matches!(
        one("bad name", "nats://127.0.0.1:4222"),
        Err(BrokerError::Name { .. })
    ));
    let e = one("a", "nats://127.0.0.1:4222?jetstrem=true").expect_err("typo");
    assert!(e.to_string().contains("unknown option \"jetstrem\""), "{e}");
    let listed = one("a", "nats://127.0.0.1:4222?jetstream=true").expect("fine");
    assert_eq!(listed[0].protocol, "jetstream");
    assert!(one("m", "mqtt://127.0.0.1:1883").is_ok());
    assert!(one("r", "amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
    let twice = Brokers::new(
        vec![
            BrokerConfig {
                name: "a".into(),
                url: "nats://127.0.0.1:4222".into(),
                ca_file: None,
            },
            BrokerConfig {
                name: "a".into(),
                url: "mqtt://127.0.0.1:1883".into(),
                ca_file: None,
            },
        ],
        "n",
    );
    assert!(matches!(twice, Err(BrokerError::Duplicate { .. })));
}
