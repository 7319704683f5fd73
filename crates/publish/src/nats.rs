//! NATS: core NATS (the server received the message: a flush's PONG) or
//! JetStream (the stream's publish ack; `Nats-Msg-Id` lets it drop a
//! point published twice within its duplicate window). async-nats keeps
//! the connection and reconnects by itself.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use kala_executor::publish::{Message, PublishResult};
use tokio::sync::OnceCell;

pub(crate) struct Nats {
    url: String,
    jetstream: bool,
    ca_file: Option<PathBuf>,
    client_name: String,
    client: OnceCell<async_nats::Client>,
}

impl Nats {
    pub(crate) fn new(
        url: &url::Url,
        ca_file: Option<PathBuf>,
        client: &str,
    ) -> Result<Nats, String> {
        let (bare, params) = crate::take_params(url, &["jetstream"])?;
        let mut js = false;
        for (k, v) in params {
            if k == "jetstream" {
                js = crate::flag(&v).map_err(|e| format!("jetstream: {e}"))?;
            }
        }
        if bare.host_str().is_none_or(str::is_empty) {
            return Err("the URL names no host".into());
        }
        Ok(Nats {
            url: bare.to_string(),
            jetstream: js,
            ca_file,
            client_name: format!("kala {client}"),
            client: OnceCell::new(),
        })
    }

    pub(crate) fn jetstream(&self) -> bool {
        self.jetstream
    }

    async fn client(&self) -> Result<async_nats::Client, String> {
        self.client
            .get_or_try_init(|| async {
                let mut opts = async_nats::ConnectOptions::new()
                    .name(&self.client_name)
                    .connection_timeout(Duration::from_secs(5))
                    // Connects (and reconnects) in the background: a
                    // broker down at start does not stop the server.
                    .retry_on_initial_connect();
                if let Some(ca) = &self.ca_file {
                    opts = opts.add_root_certificates(ca.clone());
                }
                opts.connect(self.url.as_str())
                    .await
                    .map_err(|e| format!("cannot connect to NATS: {e}"))
            })
            .await
            .cloned()
    }

    pub(crate) async fn publish(&self, msg: Message, timeout: Duration) -> PublishResult {
        let client = self.client().await?;
        let mut headers = async_nats::HeaderMap::new();
        for (k, v) in &msg.headers {
            headers.append(k.as_str(), v.as_str());
        }
        if self.jetstream {
            let mut js = jetstream::new(client);
            js.set_timeout(timeout);
            let publish = jetstream::message::PublishMessage::build()
                .payload(msg.payload.into())
                .headers(headers)
                .message_id(msg.id.as_str());
            let ack = js
                .send_publish(msg.to.clone(), publish)
                .await
                .map_err(|e| format!("JetStream refused the publish to {:?}: {e}", msg.to))?
                .await
                .map_err(|e| format!("no JetStream ack for {:?}: {e}", msg.to))?;
            Ok(if ack.duplicate {
                format!(
                    "JetStream stream {} already holds message {} (a duplicate, not stored again)",
                    ack.stream, msg.id
                )
            } else {
                format!(
                    "JetStream stream {} stored message {} as #{}",
                    ack.stream, msg.id, ack.sequence
                )
            })
        } else {
            headers.insert("Nats-Msg-Id", msg.id.as_str());
            client
                .publish_with_headers(msg.to.clone(), headers, msg.payload.into())
                .await
                .map_err(|e| format!("cannot publish to {:?}: {e}", msg.to))?;
            match tokio::time::timeout(timeout, client.flush()).await {
                Ok(Ok(())) => Ok(format!("NATS received message {} on {}", msg.id, msg.to)),
                Ok(Err(e)) => Err(format!("NATS did not confirm the publish: {e}")),
                Err(_) => Err(format!(
                    "NATS did not confirm the publish within {timeout:?} (disconnected?)"
                )),
            }
        }
    }

    pub(crate) async fn close(&self) {
        if let Some(c) = self.client.get() {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.drain()).await;
        }
    }
}
