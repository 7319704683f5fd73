//! A publish job's message (`"type": 3`, kala's extension): what is sent
//! to which named broker connection. The connection itself (URL,
//! credentials, protocol) is the server's configuration, never the job's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JobError;

/// The most headers a message may carry.
pub const MAX_HEADERS: usize = 64;
/// The longest a payload template may be.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// A publish job's `publish` object.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The named broker connection (`--broker NAME=URL`); its URL's
    /// scheme picks the protocol (`nats://`, `amqp://`, `mqtt://`).
    pub broker: String,
    /// The NATS subject, the AMQP routing key, or the MQTT topic.
    pub to: String,
    /// AMQP only: the exchange (empty: the default exchange).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exchange: String,
    /// The message body: a Go template with the run's context (`{{ }}`
    /// unless the job sets `TemplateDelimiters`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub payload: String,
    /// Message headers (NATS headers, AMQP headers, MQTT v5 user
    /// properties).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// MQTT only: 0, 1 (the default) or 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    /// MQTT only: the broker keeps the message as the topic's last.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retain: bool,
}

impl Publish {
    /// Checks what can be checked without the server's brokers.
    pub fn validate(&self) -> Result<(), JobError> {
        if self.broker.trim().is_empty() {
            return Err(JobError::new(
                "publish.broker",
                "is required for a publish job (type 3): the name of a broker the server was started with (--broker NAME=URL)",
            ));
        }
        if self.to.trim().is_empty() {
            return Err(JobError::new(
                "publish.to",
                "is required: the subject, routing key or topic",
            ));
        }
        if self.to.len() > 1024 || self.exchange.len() > 255 {
            return Err(JobError::new(
                "publish.to",
                "the destination (or exchange) is too long",
            ));
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(JobError::new(
                "publish.payload",
                format!("is longer than {MAX_PAYLOAD_BYTES} bytes"),
            ));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(JobError::new(
                "publish.headers",
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        for (name, value) in &self.headers {
            let ok = !name.is_empty()
                && name.len() <= 256
                && value.len() <= 4096
                && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                && !value.bytes().any(|b| b == b'\r' || b == b'\n');
            if !ok {
                return Err(JobError::new(
                    format!("publish.headers.{name}"),
                    "a header name is printable ASCII without ':' (at most 256 bytes), its value one line (at most 4096 bytes)",
                ));
            }
        }
        if let Some(q) = self.qos
            && q > 2
        {
            return Err(JobError::new(
                "publish.qos",
                format!("{q} is not an MQTT QoS (0, 1 or 2)"),
            ));
        }
        Ok(())
    }
}

/// `publish` from a request's JSON. Unlike Kala's fields, unknown keys
/// are errors (a misspelt `paylaod` must not publish an empty message).
pub fn publish_from_value(field: &str, v: Value) -> Result<Publish, JobError> {
    let Value::Object(obj) = v else {
        return Err(JobError::new(field, "expected an object"));
    };
    const KEYS: [&str; 7] = [
        "broker", "to", "exchange", "payload", "headers", "qos", "retain",
    ];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(JobError::new(
            format!("{field}.{k}"),
            format!("unknown field (expected one of {})", KEYS.join(", ")),
        ));
    }
    serde_json::from_value(Value::Object(obj)).map_err(|e| JobError::new(field, e.to_string()))
}
