//! # kala-publish
//!
//! The named broker connections behind kala's publish jobs (`"type": 3`):
//! `--broker events=amqp://…` on the server, `"broker": "events"` in a
//! job. Each name keeps one connection (opened at the first publish,
//! reopened by itself after a failure) and each publish succeeds only
//! when its broker confirmed it:
//!
//! | scheme | protocol | confirmation | duplicates of a point |
//! |---|---|---|---|
//! | `nats://`, `tls://` | core NATS | the server received it (flush) | `Nats-Msg-Id` header, for consumers |
//! | `…?jetstream=true` | JetStream | the stream's publish ack | dropped by the stream within its duplicate window |
//! | `amqp://`, `amqps://` | AMQP 0-9-1 | publisher confirm; `mandatory`, a return is a failure | `message_id`, for consumers |
//! | `mqtt://`, `mqtts://` | MQTT v5 | PUBACK (QoS 1), PUBCOMP (QoS 2), written (QoS 0) | `kala-message-id` user property, for consumers |
//!
//! The clients are each protocol's maintained crate: `async-nats`,
//! `lapin`, `rumqttc`. No credential of a broker URL is ever shown: errors
//! and logs print the URL with its password replaced ([`redact`]).

mod amqp;
mod mqtt;
mod nats;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kala_executor::publish::{Message, PublishResult, Publisher};

/// One named connection, as the server's configuration gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    pub name: String,
    pub url: String,
    /// A PEM file of CA certificates to trust for TLS (`tls://`,
    /// `amqps://`), in addition to the system's.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("--broker {0:?}: expected NAME=URL (like events=nats://127.0.0.1:4222)")]
    Syntax(String),
    #[error("broker {name:?}: the name may hold only letters, digits, '-' and '_' (at most 64)")]
    Name { name: String },
    #[error("broker {name:?} is configured twice")]
    Duplicate { name: String },
    #[error("broker {name:?}: {url} is not a URL: {why}")]
    Url {
        name: String,
        url: String,
        why: String,
    },
    #[error(
        "broker {name:?}: {url}: unsupported scheme {scheme:?} (nats://, tls://, amqp://, amqps://, mqtt://, mqtts://)"
    )]
    Scheme {
        name: String,
        url: String,
        scheme: String,
    },
    #[error("broker {name:?}: {url}: {why}")]
    Option {
        name: String,
        url: String,
        why: String,
    },
}

/// `NAME=URL` (the `--broker` flag).
pub fn parse_flag(arg: &str) -> Result<BrokerConfig, BrokerError> {
    let (name, url) = arg
        .split_once('=')
        .filter(|(n, u)| !n.is_empty() && !u.is_empty())
        .ok_or_else(|| BrokerError::Syntax(redact(arg)))?;
    Ok(BrokerConfig {
        name: name.trim().to_string(),
        url: url.trim().to_string(),
        ca_file: None,
    })
}

/// `url` with its password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // Not a URL: hide whatever follows a `:` before an `@`.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let userinfo = &url[s + 3..at];
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{}{user}:***{}", &url[..s + 3], &url[at..])
            }
            _ => url.to_string(),
        },
    }
}

enum Conn {
    Nats(nats::Nats),
    Amqp(amqp::Amqp),
    Mqtt(mqtt::Mqtt),
}

/// What a broker is, for `/api/v1/brokers`-style listings: its name,
/// protocol and redacted URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub name: String,
    pub protocol: &'static str,
    pub url: String,
}

/// Every named broker of this instance.
pub struct Brokers {
    map: BTreeMap<String, (BrokerInfo, Conn)>,
}

impl Brokers {
    /// Checks every configuration; connections open at the first publish.
    /// `client` names this instance to the brokers (the node name).
    pub fn new(configs: Vec<BrokerConfig>, client: &str) -> Result<Brokers, BrokerError> {
        let mut map = BTreeMap::new();
        for c in configs {
            let name = c.name.clone();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(BrokerError::Name { name });
            }
            if map.contains_key(&name) {
                return Err(BrokerError::Duplicate { name });
            }
            let shown = redact(&c.url);
            let url = url::Url::parse(&c.url).map_err(|e| BrokerError::Url {
                name: name.clone(),
                url: shown.clone(),
                why: e.to_string(),
            })?;
            let bad = |why: String| BrokerError::Option {
                name: name.clone(),
                url: shown.clone(),
                why,
            };
            let (protocol, conn) = match url.scheme() {
                "nats" | "tls" => {
                    let n = nats::Nats::new(&url, c.ca_file.clone(), client).map_err(bad)?;
                    let p = if n.jetstream() { "jetstream" } else { "nats" };
                    (p, Conn::Nats(n))
                }
                "amqp" | "amqps" => (
                    "amqp",
                    Conn::Amqp(amqp::Amqp::new(&url, c.ca_file.clone(), client).map_err(bad)?),
                ),
                "mqtt" | "mqtts" => (
                    "mqtt",
                    Conn::Mqtt(
                        mqtt::Mqtt::new(&url, c.ca_file.as_deref(), client, &name).map_err(bad)?,
                    ),
                ),
                other => {
                    return Err(BrokerError::Scheme {
                        name,
                        url: shown,
                        scheme: other.to_string(),
                    });
                }
            };
            let info = BrokerInfo {
                name: name.clone(),
                protocol,
                url: shown,
            };
            map.insert(name, (info, conn));
        }
        Ok(Brokers { map })
    }

    /// The configured brokers (URLs redacted).
    pub fn list(&self) -> Vec<BrokerInfo> {
        self.map.values().map(|(i, _)| i.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Publishes `msg` through its named broker.
    pub async fn send(&self, msg: Message, timeout: Duration) -> PublishResult {
        let Some((_, conn)) = self.map.get(&msg.broker) else {
            return Err(format!("no broker named {:?} on this instance", msg.broker));
        };
        match conn {
            Conn::Nats(n) => n.publish(msg, timeout).await,
            Conn::Amqp(a) => a.publish(msg, timeout).await,
            Conn::Mqtt(m) => m.publish(msg, timeout).await,
        }
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        for (_, conn) in self.map.values() {
            match conn {
                Conn::Nats(n) => n.close().await,
                Conn::Amqp(a) => a.close().await,
                Conn::Mqtt(m) => m.close().await,
            }
        }
    }
}

impl Publisher for Brokers {
    fn has(&self, broker: &str) -> bool {
        self.map.contains_key(broker)
    }

    fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    fn publish<'a>(
        &'a self,
        msg: Message,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = PublishResult> + Send + 'a>> {
        Box::pin(self.send(msg, timeout))
    }
}

/// `brokers` as the executor's publisher.
pub fn publisher(brokers: Arc<Brokers>) -> Arc<dyn Publisher> {
    brokers
}

/// The query parameters of `url` kala reads (removed from what the
/// client library sees), each with its value; unknown ones are errors.
fn take_params(
    url: &url::Url,
    known: &[&str],
) -> Result<(url::Url, Vec<(String, String)>), String> {
    let mut params = Vec::new();
    for (k, v) in url.query_pairs() {
        if !known.contains(&k.as_ref()) {
            return Err(format!(
                "unknown option {k:?} (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    let mut bare = url.clone();
    bare.set_query(None);
    Ok((bare, params))
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

#[cfg(test)]
mod tests;
