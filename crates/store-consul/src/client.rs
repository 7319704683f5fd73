//! A thin typed client of the few Consul HTTP endpoints the store uses:
//! KV reads (`?recurse`, `?keys`, consistent when asked), check-and-set
//! writes, and transactions (`/v1/txn`).
//!
//! Owns: [`Consul`], [`Op`], the error mapping (no answer or a 5xx →
//! `Unavailable`, so the API answers 503). Must not: know kala's layout.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kala_store::{Result, StoreError};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::address::ConsulOptions;

/// Operations in one transaction, at most (Consul's limit).
pub(crate) const TXN_MAX_OPS: usize = 64;
/// Bytes of values in one transaction, at most (Consul's request limit is
/// 512 KiB; base64 makes values 4/3 larger, and keys and JSON add more).
pub(crate) const TXN_MAX_BYTES: usize = 256 * 1024;
/// The largest value Consul stores.
pub(crate) const VALUE_MAX_BYTES: usize = 512 * 1024;

/// One KV operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Set(String, Vec<u8>),
    Delete(String),
    DeleteTree(String),
    /// Set only if the key's modify index is still this (0: absent).
    Cas(String, Vec<u8>, u64),
    /// Fail the transaction unless the key's modify index is this.
    CheckIndex(String, u64),
    /// Fail the transaction if the key exists.
    CheckNotExists(String),
}

impl Op {
    pub fn size(&self) -> usize {
        match self {
            Op::Set(k, v) | Op::Cas(k, v, _) => k.len() + v.len(),
            Op::Delete(k) | Op::DeleteTree(k) | Op::CheckIndex(k, _) | Op::CheckNotExists(k) => {
                k.len()
            }
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Op::Set(k, v) => json!({"KV": {"Verb": "set", "Key": k, "Value": B64.encode(v)}}),
            Op::Delete(k) => json!({"KV": {"Verb": "delete", "Key": k}}),
            Op::DeleteTree(k) => json!({"KV": {"Verb": "delete-tree", "Key": k}}),
            Op::Cas(k, v, i) => {
                json!({"KV": {"Verb": "cas", "Key": k, "Value": B64.encode(v), "Index": i}})
            }
            Op::CheckIndex(k, i) => json!({"KV": {"Verb": "check-index", "Key": k, "Index": i}}),
            Op::CheckNotExists(k) => json!({"KV": {"Verb": "check-not-exists", "Key": k}}),
        }
    }
}

/// A key with its value and modify index.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub key: String,
    pub value: Vec<u8>,
    pub modify_index: u64,
}

#[derive(Deserialize)]
struct RawPair {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: Option<String>,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

impl RawPair {
    /// The value decoded; a value that is not base64 is damage, named by key.
    fn decode(self) -> Result<Pair> {
        let value = match self.value {
            None => Vec::new(),
            Some(v) => B64.decode(v).map_err(|e| StoreError::Corrupt {
                key: self.key.clone(),
                reason: format!("base64: {e}"),
            })?,
        };
        Ok(Pair {
            key: self.key,
            value,
            modify_index: self.modify_index,
        })
    }
}

/// Percent-encodes a key for a URL path, keeping `/`.
fn path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Clone)]
pub(crate) struct Consul {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    basic: Option<(String, String)>,
}

/// reqwest's error with its causes ("error sending request for url (…)"
/// alone does not say the connection was refused).
fn unavailable(e: reqwest::Error) -> StoreError {
    let mut msg = format!("consul: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    StoreError::Unavailable(msg)
}

impl Consul {
    pub async fn new(o: &ConsulOptions) -> Result<Consul> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ep = o.endpoint()?;
        let mut b = reqwest::Client::builder()
            .timeout(o.timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(32);
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| {
                StoreError::Backend(format!("consul TLS: cannot read {}: {e}", p.display()))
            })
        };
        if let Some(ca) = &o.tls_ca {
            let cert = reqwest::Certificate::from_pem(&read(ca)?)
                .map_err(|e| StoreError::Backend(format!("consul TLS CA: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        match (&o.tls_cert, &o.tls_key) {
            (Some(c), Some(k)) => {
                let mut pem = read(c)?;
                pem.extend(read(k)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    StoreError::Backend(format!("consul TLS client certificate: {e}"))
                })?;
                b = b.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Backend(
                    "consul TLS: give both --jobdb-tls-certpath and --jobdb-tls-keypath".into(),
                ));
            }
        }
        if let Some(name) = o
            .tls_servername
            .as_ref()
            .filter(|n| !n.is_empty() && ep.tls)
        {
            // Connect to the address, verify the certificate for `name`.
            let addr = tokio::net::lookup_host((ep.host.as_str(), ep.port))
                .await
                .map_err(|e| {
                    StoreError::Unavailable(format!("consul: resolving {}: {e}", ep.host))
                })?
                .next()
                .ok_or_else(|| {
                    StoreError::Unavailable(format!("consul: {} has no address", ep.host))
                })?;
            b = b.resolve(name, addr);
        }
        let http = b
            .build()
            .map_err(|e| StoreError::Backend(format!("consul client: {e}")))?;
        let basic = (!o.username.is_empty() || !o.password.is_empty())
            .then(|| (o.username.clone(), o.password.clone()));
        Ok(Consul {
            http,
            base: ep.base,
            token: o.token(),
            basic,
        })
    }

    fn request(&self, method: Method, url: String) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, url);
        if let Some(t) = &self.token {
            r = r.header("X-Consul-Token", t);
        }
        if let Some((u, p)) = &self.basic {
            r = r.basic_auth(u, Some(p));
        }
        r
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let body = body.trim();
        Err(match status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => StoreError::Backend(format!(
                "consul: permission denied (check the ACL token): {body}"
            )),
            StatusCode::PAYLOAD_TOO_LARGE => {
                StoreError::Backend(format!("consul: request too large: {body}"))
            }
            s if s.is_server_error() => StoreError::Unavailable(format!("consul: {s}: {body}")),
            s => StoreError::Backend(format!("consul: {s}: {body}")),
        })
    }

    /// A KV read: the JSON answer of `GET /v1/kv/<key>?<query>`, or
    /// `None` when nothing is there (404).
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        query: &str,
    ) -> Result<Option<T>> {
        let url = format!("{}/v1/kv/{}?{query}", self.base, path(key));
        let resp = self
            .request(Method::GET, url)
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let bytes = Consul::check(resp)
            .await?
            .bytes()
            .await
            .map_err(unavailable)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Backend(format!("consul: unexpected answer: {e}")))
    }

    /// Every key under `prefix` with its value (`consistent`: read from the
    /// leader with a round of agreement).
    pub async fn list(&self, prefix: &str, consistent: bool) -> Result<Vec<Pair>> {
        let query = if consistent {
            "recurse&consistent"
        } else {
            "recurse"
        };
        let raw: Vec<RawPair> = self.read(prefix, query).await?.unwrap_or_default();
        raw.into_iter().map(RawPair::decode).collect()
    }

    /// The keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.read(prefix, "keys").await?.unwrap_or_default())
    }

    /// One key (consistent read), or `None`.
    pub async fn get(&self, key: &str) -> Result<Option<Pair>> {
        let raw: Vec<RawPair> = self.read(key, "consistent").await?.unwrap_or_default();
        raw.into_iter()
            .find(|p| p.key == key)
            .map(RawPair::decode)
            .transpose()
    }

    /// Writes `value` at `key` only if its modify index is still `index`
    /// (0: only if absent). `Ok(false)`: someone else changed it.
    pub async fn cas(&self, key: &str, value: &[u8], index: u64) -> Result<bool> {
        let url = format!("{}/v1/kv/{}?cas={index}", self.base, path(key));
        let resp = self
            .request(Method::PUT, url)
            .body(value.to_vec())
            .send()
            .await
            .map_err(unavailable)?;
        let text = Consul::check(resp)
            .await?
            .text()
            .await
            .map_err(unavailable)?;
        Ok(text.trim() == "true")
    }

    /// Applies `ops` atomically if every check and check-and-set in them
    /// holds: `Ok(false)` when one did not (nothing was written).
    pub async fn txn_checked(&self, ops: &[Op]) -> Result<bool> {
        Ok(self.send_txn(ops).await?.is_ok())
    }

    /// One `/v1/txn`: `Ok(Err(why))` when Consul rolled it back (409).
    async fn send_txn(&self, ops: &[Op]) -> Result<std::result::Result<(), String>> {
        if ops.is_empty() {
            return Ok(Ok(()));
        }
        let body = Value::Array(ops.iter().map(Op::to_json).collect());
        let resp = self
            .request(Method::PUT, format!("{}/v1/txn", self.base))
            .json(&body)
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status() == StatusCode::CONFLICT {
            return Ok(Err(resp.text().await.unwrap_or_default()));
        }
        Consul::check(resp).await.map(|_| Ok(()))
    }

    /// Waits (up to `wait`) until something under `prefix` changes after
    /// `index` (a blocking query); returns the index now.
    pub async fn wait_change(&self, prefix: &str, index: u64, wait: Duration) -> Result<u64> {
        let url = format!(
            "{}/v1/kv/{}?keys&index={index}&wait={}ms",
            self.base,
            path(prefix),
            wait.as_millis()
        );
        let resp = self
            .request(Method::GET, url)
            .timeout(wait + Duration::from_secs(10))
            .send()
            .await
            .map_err(unavailable)?;
        let now = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(index);
        if resp.status() != StatusCode::NOT_FOUND {
            Consul::check(resp).await?;
        }
        Ok(now)
    }

    /// Applies `ops` (at most [`TXN_MAX_OPS`]) atomically.
    pub async fn txn(&self, ops: &[Op]) -> Result<()> {
        self.send_txn(ops).await?.map_err(|why| {
            StoreError::Backend(format!("consul: transaction rolled back: {}", why.trim()))
        })
    }

    /// The cluster's leader, to check that Consul answers at all.
    pub async fn leader(&self) -> Result<String> {
        let resp = self
            .request(Method::GET, format!("{}/v1/status/leader", self.base))
            .send()
            .await
            .map_err(unavailable)?;
        let text = Consul::check(resp)
            .await?
            .text()
            .await
            .map_err(unavailable)?;
        let leader = text.trim().trim_matches('"').to_string();
        if leader.is_empty() {
            return Err(StoreError::Unavailable(
                "consul: the cluster has no leader".into(),
            ));
        }
        Ok(leader)
    }
}

/// Splits `ops` into transactions within Consul's limits.
pub(crate) fn chunks(ops: &[Op]) -> Vec<&[Op]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, op) in ops.iter().enumerate() {
        let n = i - start;
        if n > 0 && (n == TXN_MAX_OPS || bytes + op.size() > TXN_MAX_BYTES) {
            out.push(&ops[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += op.size();
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

impl Consul {
    /// A task that waits on `prefix` with blocking queries and wakes the
    /// follower whenever its index moves (and after an error, once Consul
    /// answers again).
    pub(crate) fn watch(&self, prefix: String) -> std::sync::Arc<tokio::sync::Notify> {
        let consul = self.clone();
        let signal = std::sync::Arc::new(tokio::sync::Notify::new());
        let wake = signal.clone();
        tokio::spawn(async move {
            let mut index = 0u64;
            loop {
                match consul
                    .wait_change(&prefix, index, Duration::from_secs(10))
                    .await
                {
                    Ok(now) => {
                        if now != index {
                            wake.notify_one();
                        }
                        // An index that goes back (a snapshot restore) starts
                        // over rather than blocking on a future index.
                        index = if now < index { 0 } else { now };
                    }
                    Err(_) => {
                        wake.notify_one();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_both_limits() {
        let small: Vec<Op> = (0..130).map(|i| Op::Delete(format!("k{i}"))).collect();
        let c = chunks(&small);
        assert_eq!(c.iter().map(|c| c.len()).collect::<Vec<_>>(), [64, 64, 2]);
        let big: Vec<Op> = (0..5)
            .map(|i| Op::Set(format!("k{i}"), vec![0; 100 * 1024]))
            .collect();
        assert_eq!(
            chunks(&big).iter().map(|c| c.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn keys_are_escaped_but_slashes_kept() {
        assert_eq!(path("kala/jobs/a b?"), "kala/jobs/a%20b%3F");
    }
}
