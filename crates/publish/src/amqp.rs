//! AMQP 0-9-1 (RabbitMQ): persistent messages (delivery mode 2) on a
//! channel in confirm mode, published `mandatory`: the publish succeeds
//! on the broker's ack; a nack, a return (no queue bound: unroutable), a
//! closed channel (an unknown exchange) or a lost connection is a failed
//! attempt. One connection per broker with a few confirm-mode channels
//! used in turn (one channel's confirms are serial at the broker); a
//! channel that failed is opened again, the connection too if it broke.

use std::path::PathBuf;
use std::time::Duration;

use kala_executor::publish::{Message, PublishResult};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::Mutex;

pub(crate) struct Amqp {
    url: String,
    ca_file: Option<PathBuf>,
    client_name: String,
    /// The open connection and its confirm-mode channels.
    open: Mutex<Option<(Connection, Vec<Option<Channel>>)>>,
    next: std::sync::atomic::AtomicUsize,
}

/// Confirm-mode channels per connection.
const CHANNELS: usize = 4;

async fn confirm_channel(conn: &Connection) -> Result<Channel, String> {
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open an AMQP channel: {e}"))?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("cannot turn publisher confirms on: {e}"))?;
    Ok(ch)
}

impl Amqp {
    pub(crate) fn new(
        url: &url::Url,
        ca_file: Option<PathBuf>,
        client: &str,
    ) -> Result<Amqp, String> {
        crate::take_params(
            url,
            &[
                "heartbeat",
                "connection_timeout",
                "frame_max",
                "channel_max",
            ],
        )?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL names no host".into());
        }
        Ok(Amqp {
            url: url.to_string(),
            ca_file,
            client_name: format!("kala {client}"),
            open: Mutex::new(None),
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A channel to publish on (the channels in turn), opening the
    /// connection if there is none (or it broke) and the channel if it
    /// failed.
    async fn channel(&self, timeout: Duration) -> Result<Channel, String> {
        let slot = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % CHANNELS;
        let mut open = self.open.lock().await;
        if let Some((conn, channels)) = &mut *open
            && conn.status().connected()
        {
            if let Some(ch) = channels[slot].as_ref().filter(|c| c.status().connected()) {
                return Ok(ch.clone());
            }
            let ch = tokio::time::timeout(timeout, confirm_channel(conn))
                .await
                .map_err(|_| format!("cannot open an AMQP channel within {timeout:?}"))??;
            channels[slot] = Some(ch.clone());
            return Ok(ch);
        }
        if let Some((conn, _)) = open.take() {
            let _ = conn.close(0, "reopening".into()).await;
        }
        let connect = async {
            let props = ConnectionProperties::default()
                .with_connection_name(self.client_name.as_str().into());
            let conn = match &self.ca_file {
                None => Connection::connect(&self.url, props).await,
                Some(ca) => {
                    let pem = std::fs::read_to_string(ca)
                        .map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
                    let tls = lapin::tcp::OwnedTLSConfig {
                        cert_chain: Some(pem),
                        ..Default::default()
                    };
                    let rt = lapin::runtime::default_runtime()
                        .map_err(|e| format!("no runtime for AMQP: {e}"))?;
                    Connection::connect_with_config(&self.url, props, tls, rt).await
                }
            }
            .map_err(|e| format!("cannot connect to AMQP: {e}"))?;
            let ch = confirm_channel(&conn).await?;
            Ok::<_, String>((conn, ch))
        };
        let (conn, ch) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| format!("cannot connect to AMQP within {timeout:?}"))??;
        let mut channels = vec![None; CHANNELS];
        channels[slot] = Some(ch.clone());
        *open = Some((conn, channels));
        Ok(ch)
    }

    /// Forgets the channel `failed` (not a newer one another publish
    /// opened meanwhile); the connection too when it is the one broken.
    async fn drop_channel(&self, failed: &Channel) {
        let mut open = self.open.lock().await;
        let Some((conn, channels)) = &mut *open else {
            return;
        };
        for c in channels.iter_mut() {
            if c.as_ref().is_some_and(|c| c.id() == failed.id()) {
                *c = None;
            }
        }
        if !conn.status().connected()
            && let Some((conn, _)) = open.take()
        {
            let _ = conn.close(0, "publish failed".into()).await;
        }
    }

    pub(crate) async fn publish(&self, msg: Message, timeout: Duration) -> PublishResult {
        let ch = self.channel(timeout).await?;
        let mut headers = FieldTable::default();
        for (k, v) in &msg.headers {
            headers.insert(
                ShortString::from(k.as_str()),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(msg.id.as_str().into())
            .with_app_id("kala".into())
            .with_headers(headers);
        let sent = ch
            .basic_publish(
                msg.exchange.as_str().into(),
                msg.to.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &msg.payload,
                props,
            )
            .await;
        let confirm = match sent {
            Ok(c) => c,
            Err(e) => {
                self.drop_channel(&ch).await;
                return Err(format!("AMQP refused the publish: {e}"));
            }
        };
        let where_ = if msg.exchange.is_empty() {
            format!("routing key {:?} (default exchange)", msg.to)
        } else {
            format!("exchange {:?}, routing key {:?}", msg.exchange, msg.to)
        };
        match tokio::time::timeout(timeout, confirm).await {
            Err(_) => {
                self.drop_channel(&ch).await;
                Err(format!("no AMQP confirm within {timeout:?} for {where_}"))
            }
            Ok(Err(e)) => {
                self.drop_channel(&ch).await;
                Err(format!("AMQP did not confirm the publish to {where_}: {e}"))
            }
            Ok(Ok(Confirmation::Ack(None))) => {
                Ok(format!("AMQP confirmed message {} to {where_}", msg.id))
            }
            Ok(Ok(Confirmation::Ack(Some(ret)))) => Err(format!(
                "AMQP returned the message: {} {} (no queue is bound to {where_})",
                ret.reply_code, ret.reply_text
            )),
            Ok(Ok(Confirmation::Nack(_))) => {
                Err(format!("AMQP refused (nack) the message to {where_}"))
            }
            Ok(Ok(Confirmation::NotRequested)) => {
                self.drop_channel(&ch).await;
                Err("the AMQP channel was not in confirm mode".into())
            }
        }
    }

    pub(crate) async fn close(&self) {
        if let Some((conn, _)) = self.open.lock().await.take() {
            let _ = conn.close(200, "kala is stopping".into()).await;
        }
    }
}
