//! What a chaos run does besides its faults: the draw (a small seeded
//! generator) and the operations through the healthy instances.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use super::{Chaos, now_s};

/// xorshift64*: enough to draw faults, reproducible with `--seed`.
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn secs(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo * 1000 + self.next() % ((hi - lo) * 1000 + 1))
    }
}

/// What the operations did, for the oracle: the jobs running every
/// second, the one-offs, every stop (job, when its disable or delete
/// answered, until when), and the jobs deleted.
#[derive(Default)]
pub(super) struct Ledger {
    pub every: Vec<String>,
    pub one_offs: Vec<String>,
    pub stops: Vec<(String, f64, f64)>,
    pub deleted: BTreeSet<String>,
}

/// Operations through healthy instances while faults come and go: a
/// one-off job; a job disabled through one instance and enabled through
/// another a moment later; now and then a job deleted and replaced.
pub(super) async fn ops(
    c: &mut Chaos,
    rng: &mut Rng,
    victim: usize,
    command: &str,
    l: &mut Ledger,
) {
    let Ledger {
        every,
        one_offs,
        stops,
        deleted,
    } = l;
    let Ok((_, base)) = c.healthy(rng, Some(victim)) else {
        return;
    };
    if let Ok(v) = c
        .post(
            &format!("{base}/api/v1/job/"),
            Some(json!({"name": "one-off", "command": command})),
        )
        .await
        && let Some(id) = v["id"].as_str()
    {
        one_offs.push(id.to_string());
    }
    let live: Vec<&String> = every.iter().filter(|id| !deleted.contains(*id)).collect();
    if live.is_empty() {
        return;
    }
    let id = live[rng.below(live.len())].clone();
    c.event(format!("disable {id} sent to {base}"));
    if c.post(&format!("{base}/api/v1/job/disable/{id}/"), None)
        .await
        .is_ok()
    {
        let from = now_s();
        c.event(format!("disable {id} answered"));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let other = c
            .healthy(rng, Some(victim))
            .map(|(_, b)| b)
            .unwrap_or(base.clone());
        c.event(format!("enable {id} sent to {other}"));
        let _ = c
            .post(&format!("{other}/api/v1/job/enable/{id}/"), None)
            .await;
        c.event(format!("enable {id} answered"));
        // The enable's catch-up run may start as soon as it is sent.
        stops.push((id.clone(), from, now_s() - 0.05));
    }
    if rng.below(6) == 0 {
        let gone = live[rng.below(live.len())].clone();
        if let Ok(r) = c
            .http
            .delete(format!("{base}/api/v1/job/{gone}/"))
            .send()
            .await
            && r.status().is_success()
        {
            c.event(format!("deleted {gone}"));
            stops.push((gone.clone(), now_s(), f64::INFINITY));
            deleted.insert(gone);
            let start = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
            let body = json!({"name": "replacement", "command": command, "schedule": format!("R/{start}/PT1S")});
            if let Ok(v) = c.post(&format!("{base}/api/v1/job/"), Some(body)).await
                && let Some(id) = v["id"].as_str()
            {
                every.push(id.to_string());
            }
        }
    }
}
