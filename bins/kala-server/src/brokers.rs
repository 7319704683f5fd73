//! `--broker NAME=URL`: the named broker connections publish jobs (type
//! 3) send through. Checked before anything starts; connections open at
//! the first publish. The config file's `[brokers.NAME]` tables (`url`,
//! `ca_file`) become these flags (see `config.rs`).

use std::sync::Arc;

use kala_publish::{BrokerConfig, Brokers};

#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// A broker publish jobs (type 3) may name, `NAME=URL` (repeatable;
    /// `KALA_BROKERS` takes `a=URL,b=URL`; the config file
    /// `[brokers.NAME] url = "…"`). The scheme picks the protocol:
    /// `nats://` (`?jetstream=true` for JetStream acks), `amqp://`/`amqps://`
    /// (RabbitMQ), `mqtt://` (MQTT v5). Passwords in the URL are never
    /// shown by the API, logs or `kala-server config`.
    #[arg(
        long = "broker",
        env = "KALA_BROKERS",
        value_delimiter = ',',
        value_name = "NAME=URL"
    )]
    pub brokers: Vec<String>,
    /// A PEM file of CA certificates for a broker's TLS, `NAME=PATH`
    /// (repeatable; the config file `[brokers.NAME] ca_file = "…"`).
    #[arg(long = "broker-ca-file", value_name = "NAME=PATH")]
    pub ca_files: Vec<String>,
}

impl BrokerArgs {
    /// The brokers, checked; `None` when there are none.
    pub fn open(&self, node: &str) -> anyhow::Result<Option<Arc<Brokers>>> {
        let mut configs = Vec::new();
        for flag in &self.brokers {
            configs.push(kala_publish::parse_flag(flag)?);
        }
        for flag in &self.ca_files {
            let (name, path) = flag
                .split_once('=')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--broker-ca-file {flag:?}: expected NAME=PATH"))?;
            let Some(c) = configs
                .iter_mut()
                .find(|c: &&mut BrokerConfig| c.name == name)
            else {
                anyhow::bail!("--broker-ca-file {name}: no --broker named {name:?}");
            };
            if !std::path::Path::new(path).is_file() {
                anyhow::bail!("--broker-ca-file {name}: {path} is not a readable file");
            }
            c.ca_file = Some(path.into());
        }
        if configs.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Brokers::new(configs, node)?)))
    }
}

/// Makes `brokers` the executor's publisher (publish jobs fail without).
pub fn install(brokers: Option<&Arc<Brokers>>, executor: &kala_executor::Executor) {
    if let Some(b) = brokers {
        executor.set_publisher(kala_publish::publisher(b.clone()));
        for info in b.list() {
            tracing::info!(broker = %info.name, protocol = info.protocol, url = %info.url, "broker configured");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(brokers: &[&str], ca: &[&str]) -> BrokerArgs {
        BrokerArgs {
            brokers: brokers.iter().map(|s| s.to_string()).collect(),
            ca_files: ca.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn brokers_are_checked_before_the_start() {
        assert!(args(&[], &[]).open("n").expect("none").is_none());
        let b = args(
            &[
                "events=nats://127.0.0.1:4222",
                "q=amqp://g:pw@127.0.0.1/%2f",
            ],
            &[],
        )
        .open("n")
        .expect("fine")
        .expect("some");
        assert_eq!(b.list().len(), 2);
        for (bad, why) in [
            (args(&["nonsense"], &[]), "expected NAME=URL"),
            (args(&["k=kafka://u:pw@h:9092"], &[]), "unsupported scheme"),
            (
                args(&["a=nats://h"], &["b=/etc/hosts"]),
                "no --broker named",
            ),
            (
                args(&["a=nats://h"], &["a=/no/such/file"]),
                "not a readable file",
            ),
        ] {
            let e = bad.open("n").err().expect("refused").to_string();
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("pw@"), "a password is never shown: {e}");
        }
    }
}
