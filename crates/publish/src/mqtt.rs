//! MQTT v5 (rumqttc): QoS 1 succeeds on the broker's PUBACK, QoS 2 on its
//! PUBCOMP, QoS 0 once written to the socket (MQTT has no confirmation
//! for it). The message id and the headers travel as user properties.
//! `mqtts://` (port 8883 by default) speaks TLS (rustls, aws-lc-rs) and
//! trusts the system's roots and the broker's `ca_file`.
//!
//! rumqttc's event loop reports the packet id of each publish it sends,
//! in the order the publishes were queued; publishes are queued under a
//! lock together with their waiter, so the n-th reported id is the n-th
//! waiter's. On any connection error every waiting publish fails and the
//! client is dropped; the next publish connects afresh (no packet is
//! retransmitted into a new session behind a waiter's back).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use kala_executor::publish::{Message, PublishResult};
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Packet, PubAckReason, PubCompReason, PubRecReason, PublishProperties,
};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{Mutex, oneshot};

/// How many publishes may wait in rumqttc's queue.
const QUEUE: usize = 4096;

type Done = oneshot::Sender<Result<(), String>>;

struct Waiter {
    qos: u8,
    done: Done,
}

/// One connection's client and the publishes waiting for their packet id.
struct Live {
    client: AsyncClient,
    queued: Arc<StdMutex<VecDeque<Waiter>>>,
    dead: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) struct Mqtt {
    host: String,
    port: u16,
    login: Option<(String, String)>,
    /// `mqtts://`: TLS with the system's roots and the broker's CA file.
    tls: Option<Arc<rustls::ClientConfig>>,
    client_id: String,
    live: Mutex<Option<Live>>,
}

/// The TLS settings of `mqtts://`: the system's root certificates and
/// those of `ca_file` (PEM), rustls with aws-lc-rs, TLS 1.2 and 1.3.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the CA file {} is not PEM: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "the CA file {} holds no certificate",
                path.display()
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("the CA file {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Mqtt {
    pub(crate) fn new(
        url: &url::Url,
        ca_file: Option<&std::path::Path>,
        client: &str,
        broker: &str,
    ) -> Result<Mqtt, String> {
        crate::take_params(url, &[])?;
        let tls = match url.scheme() {
            "mqtts" => Some(Arc::new(tls_config(ca_file)?)),
            _ if ca_file.is_some() => {
                return Err("a CA file is for mqtts:// (TLS); this URL is mqtt://".into());
            }
            _ => None,
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let login = (!url.username().is_empty()).then(|| {
            (
                url.username().to_string(),
                url.password().unwrap_or_default().to_string(),
            )
        });
        let node: String = client
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(24)
            .collect();
        Ok(Mqtt {
            host,
            port: url
                .port()
                .unwrap_or(if tls.is_some() { 8883 } else { 1883 }),
            login,
            tls,
            client_id: format!("kala-{node}-{broker}-{:x}", std::process::id()),
            live: Mutex::new(None),
        })
    }

    fn connect(&self) -> Live {
        let mut opts = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        opts.set_keep_alive(Duration::from_secs(15));
        opts.set_clean_start(true);
        if let Some((u, p)) = &self.login {
            opts.set_credentials(u.clone(), p.clone());
        }
        if let Some(tls) = &self.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        let (client, mut events) = AsyncClient::new(opts, QUEUE);
        let queued: Arc<StdMutex<VecDeque<Waiter>>> = Arc::default();
        let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (q, d) = (queued.clone(), dead.clone());
        let task = tokio::spawn(async move {
            let mut sent: HashMap<u16, Waiter> = HashMap::new();
            loop {
                match events.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let next = q.lock().ok().and_then(|mut q| q.pop_front());
                        if let Some(w) = next {
                            if w.qos == 0 {
                                let _ = w.done.send(Ok(()));
                            } else {
                                sent.insert(pkid, w);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(w) = sent.remove(&ack.pkid) {
                            let r = match ack.reason {
                                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                                    Ok(())
                                }
                                other => Err(format!("the MQTT broker refused it: {other:?}")),
                            };
                            let _ = w.done.send(r);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubRec(rec))) => {
                        if !matches!(
                            rec.reason,
                            PubRecReason::Success | PubRecReason::NoMatchingSubscribers
                        ) && let Some(w) = sent.remove(&rec.pkid)
                        {
                            let _ = w
                                .done
                                .send(Err(format!("the MQTT broker refused it: {:?}", rec.reason)));
                        }
                    }
                    Ok(Event::Incoming(Packet::PubComp(comp))) => {
                        if let Some(w) = sent.remove(&comp.pkid) {
                            let r = match comp.reason {
                                PubCompReason::Success => Ok(()),
                                other => {
                                    Err(format!("the MQTT broker did not complete it: {other:?}"))
                                }
                            };
                            let _ = w.done.send(r);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        d.store(true, std::sync::atomic::Ordering::SeqCst);
                        let why = format!("MQTT connection: {e}");
                        for (_, w) in sent.drain() {
                            let _ = w.done.send(Err(why.clone()));
                        }
                        if let Ok(mut q) = q.lock() {
                            for w in q.drain(..) {
                                let _ = w.done.send(Err(why.clone()));
                            }
                        }
                        tracing::debug!(error = %e, "MQTT connection ended");
                        return;
                    }
                }
            }
        });
        Live {
            client,
            queued,
            dead,
            task,
        }
    }

    pub(crate) async fn publish(&self, msg: Message, timeout: Duration) -> PublishResult {
        let qos = match msg.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            q => return Err(format!("{q} is not an MQTT QoS")),
        };
        let mut properties = PublishProperties {
            user_properties: msg.headers.clone(),
            ..PublishProperties::default()
        };
        properties
            .user_properties
            .push(("kala-message-id".to_string(), msg.id.clone()));
        let (done, confirmed) = oneshot::channel();
        {
            let mut live = self.live.lock().await;
            if live
                .as_ref()
                .is_none_or(|l| l.dead.load(std::sync::atomic::Ordering::SeqCst))
            {
                if let Some(old) = live.take() {
                    old.task.abort();
                }
                *live = Some(self.connect());
            }
            let Some(l) = live.as_ref() else {
                return Err("no MQTT client".into());
            };
            let Ok(mut q) = l.queued.lock() else {
                return Err("the MQTT publish queue is poisoned".into());
            };
            q.push_back(Waiter { qos: msg.qos, done });
            if let Err(e) = l.client.try_publish_with_properties(
                msg.to.clone(),
                qos,
                msg.retain,
                msg.payload.clone(),
                properties,
            ) {
                q.pop_back();
                return Err(format!("cannot queue the MQTT publish: {e}"));
            }
        }
        match tokio::time::timeout(timeout, confirmed).await {
            Ok(Ok(Ok(()))) => Ok(match msg.qos {
                0 => format!(
                    "MQTT sent message {} to {} (QoS 0: no confirmation)",
                    msg.id, msg.to
                ),
                1 => format!(
                    "MQTT broker acknowledged message {} to {} (PUBACK)",
                    msg.id, msg.to
                ),
                _ => format!(
                    "MQTT broker completed message {} to {} (PUBCOMP)",
                    msg.id, msg.to
                ),
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err("the MQTT connection ended before the broker confirmed".into()),
            Err(_) => Err(format!("no MQTT confirmation within {timeout:?}")),
        }
    }

    pub(crate) async fn close(&self) {
        if let Some(l) = self.live.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), l.client.disconnect()).await;
            l.task.abort();
        }
    }
}
