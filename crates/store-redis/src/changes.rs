//! The change channel: Redis pub/sub wakes the follower of every
//! instance when a batch appended changes.
//!
//! Owns: the subscriber task. Must not: read the changes (`cluster`).

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::Notify;

/// Subscribes to the change channel on a connection of its own; every
/// message (and every reconnection) wakes the follower.
pub(crate) async fn listen(client: &redis::Client, channel: String) -> Option<Arc<Notify>> {
    let signal = Arc::new(Notify::new());
    let wake = signal.clone();
    let client = client.clone();
    tokio::spawn(async move {
        loop {
            match client.get_async_pubsub().await {
                Ok(mut ps) => {
                    if ps.subscribe(&channel).await.is_ok() {
                        wake.notify_one();
                        let mut messages = ps.on_message();
                        while messages.next().await.is_some() {
                            wake.notify_one();
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "redis subscribe failed; retrying"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Some(signal)
}
