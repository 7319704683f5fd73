//! The cluster checks, for backends with [`JobStore::coordination`]:
//! leases are exclusive and change hands only when free or expired (with a
//! new token), a fenced batch is refused whole when the lease moved on,
//! job updates apply to the stored job and commute, and definition
//! changes appear in the change sequence.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kala_job::Job;

use super::nodes::{A, B, at, req, tok};
use crate::{Batch, Coordination, JobChange, JobStore, JobUpdate, NodeInfo, RunDelta};

pub(super) async fn cluster(s: Arc<dyn JobStore>) {
    let name = s.name();
    let Some(c) = s.coordination() else { return };
    for n in [A, B] {
        c.leave(n).await.expect("leave");
    }
    leases(name, c).await;
    super::fencing::fencing(name, &*s, c).await;
    updates(name, s.clone(), c).await;
    membership(name, c).await;
}

async fn leases(name: &str, c: &dyn Coordination) {
    let all = c.lease(req(A, &[1, 2], &[], at(0))).await.expect("lease");
    let (t1, t2) = (tok(&all, A, 1), tok(&all, A, 2));
    assert!(
        t1.is_some() && t2.is_some(),
        "[{name}] free leases are taken: {all:?}"
    );
    let all = c.lease(req(B, &[2, 3], &[], at(1))).await.expect("lease");
    assert_eq!(tok(&all, A, 2), t2, "[{name}] a held lease stays");
    assert!(
        tok(&all, B, 2).is_none(),
        "[{name}] a held lease is not taken"
    );
    let t3 = tok(&all, B, 3);
    assert!(t3.is_some(), "[{name}] b gets the free one");
    // A renews 1 only; 2 expires at 3 s and B takes it with a new token.
    c.lease(req(A, &[1], &[], at(2))).await.expect("renew");
    let all = c.lease(req(B, &[2, 3], &[], at(4))).await.expect("lease");
    assert_eq!(
        tok(&all, A, 1),
        t1,
        "[{name}] a renewed lease keeps its token"
    );
    assert_eq!(
        tok(&all, B, 2),
        t2.map(|t| t + 1),
        "[{name}] an expired lease is taken, token grows"
    );
    assert_eq!(tok(&all, B, 3), t3, "[{name}] renewal keeps the token");
    // Release frees at once; leave frees everything.
    c.lease(req(A, &[], &[1], at(4))).await.expect("release");
    let all = c.lease(req(B, &[1], &[], at(4))).await.expect("lease");
    assert_eq!(
        tok(&all, B, 1),
        t1.map(|t| t + 1),
        "[{name}] a released lease is taken at once"
    );
    c.leave(B).await.expect("leave");
    let all = c
        .lease(req(A, &[1, 2, 3], &[], at(5)))
        .await
        .expect("lease");
    assert_eq!(
        [tok(&all, A, 1), tok(&all, A, 2), tok(&all, A, 3)],
        [t1.map(|t| t + 2), t2.map(|t| t + 2), t3.map(|t| t + 1)],
        "[{name}] leave frees every lease"
    );
    let listed = c.leases().await.expect("leases");
    assert_eq!(
        tok(&listed, A, 3),
        t3.map(|t| t + 1),
        "[{name}] leases() lists them"
    );
}

async fn updates(name: &str, s: Arc<dyn JobStore>, c: &dyn Coordination) {
    let mut job = Job::new("updated", "true");
    job.metadata.success_count = 5;
    let other = Job::new("other", "true");
    s.apply(Batch {
        put: vec![job.clone(), other.clone()],
        ..Batch::default()
    })
    .await
    .expect("put");
    let from = c.last_change().await.expect("last_change");
    // 20 concurrent deltas from "different instances": none is lost.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, id) = (s.clone(), job.id.clone());
        tasks.push(tokio::spawn(async move {
            let delta = RunDelta {
                point: Some(at(100 + i)),
                attempted_at: Some(at(100 + i)),
                successes: 1,
                errors: u64::from(i % 2 == 0),
                finished: 1,
                ..RunDelta::default()
            };
            s.apply(Batch {
                update: vec![JobUpdate {
                    job_id: id,
                    change: JobChange::Ran(delta),
                }],
                ..Batch::default()
            })
            .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("delta applied");
    }
    let got = s.get(&job.id).await.expect("get").expect("exists");
    assert_eq!(
        got.metadata.success_count, 25,
        "[{name}] concurrent deltas add up"
    );
    assert_eq!(
        got.metadata.error_count, 10,
        "[{name}] concurrent deltas add up"
    );
    assert_eq!(got.scheduled_runs, 20, "[{name}] every point counted");
    assert_eq!(
        got.last_scheduled_at,
        Some(at(119)),
        "[{name}] the latest point wins"
    );
    assert_eq!(got.name, "updated", "[{name}] the rest of the job is kept");
    let deltas_only = c.changes(from, 100).await.expect("changes");
    assert!(
        deltas_only.is_empty(),
        "[{name}] run deltas are not announced: {deltas_only:?}"
    );
    // Definition changes are announced; an update of a missing job is skipped.
    let disable = |disabled: bool, t: i64| JobChange::Disabled {
        disabled,
        at: at(t),
    };
    s.apply(Batch {
        update: vec![
            JobUpdate {
                job_id: job.id.clone(),
                change: disable(true, 200),
            },
            JobUpdate {
                job_id: job.id.clone(),
                change: JobChange::AddChild(other.id.clone()),
            },
            JobUpdate {
                job_id: "no-such-job".into(),
                change: disable(true, 200),
            },
        ],
        ..Batch::default()
    })
    .await
    .expect("definition updates");
    let got = s.get(&job.id).await.expect("get").expect("exists");
    assert!(got.disabled, "[{name}] Disabled applied");
    assert_eq!(
        got.disabled_stretch(),
        Some((at(200), None)),
        "[{name}] the stretch begins at the disable"
    );
    // A second disable keeps the stretch's beginning; the enable ends it
    // (an instance taking the partition over reads it there), never
    // before it began; `last_scheduled_at` and `scheduled_runs` stay.
    let last = got.last_scheduled_at;
    let runs_before = got.scheduled_runs;
    for (changes, want) in [
        (vec![disable(true, 250)], Some((at(200), None))),
        (
            vec![disable(false, 300), disable(false, 400)],
            Some((at(200), Some(at(300)))),
        ),
        (
            vec![disable(true, 500), disable(false, 450)],
            Some((at(500), Some(at(500)))),
        ),
    ] {
        s.apply(Batch {
            update: changes
                .into_iter()
                .map(|change| JobUpdate {
                    job_id: job.id.clone(),
                    change,
                })
                .collect(),
            ..Batch::default()
        })
        .await
        .expect("disable and enable");
        let got = s.get(&job.id).await.expect("get").expect("exists");
        assert_eq!(
            got.disabled_stretch(),
            want,
            "[{name}] the disabled stretch"
        );
        assert_eq!(got.disabled, want.is_some_and(|(_, e)| e.is_none()));
        assert_eq!(
            (got.last_scheduled_at, got.scheduled_runs),
            (last, runs_before),
            "[{name}] the points consumed are kept"
        );
    }
    assert_eq!(
        got.dependent_jobs,
        Some(vec![other.id.clone()]),
        "[{name}] AddChild applied"
    );
    assert!(
        s.get("no-such-job").await.expect("get").is_none(),
        "[{name}] no job appears from an update"
    );
    s.apply(Batch {
        delete: vec![other.id.clone()],
        ..Batch::default()
    })
    .await
    .expect("delete");
    let changes = c.changes(from, 100).await.expect("changes");
    let ids: Vec<&str> = changes.iter().map(|(_, id)| id.as_str()).collect();
    assert!(
        ids.contains(&job.id.as_str()) && ids.contains(&other.id.as_str()),
        "[{name}] changes: {ids:?}"
    );
    assert!(
        changes.windows(2).all(|w| w[0].0 < w[1].0),
        "[{name}] changes in sequence order"
    );
    assert!(
        changes.iter().all(|(seq, _)| *seq > from),
        "[{name}] only changes after the cursor"
    );
    let last = c.last_change().await.expect("last_change");
    assert_eq!(
        Some(last),
        changes.last().map(|c| c.0),
        "[{name}] last_change is the newest"
    );
    assert!(
        c.changes(last, 100).await.expect("changes").is_empty(),
        "[{name}] nothing after the newest"
    );
    let many = c
        .get_many(&[job.id.clone(), other.id.clone(), "none".into()])
        .await
        .expect("get_many");
    assert_eq!(
        many.len(),
        1,
        "[{name}] get_many returns the jobs that exist"
    );
    s.apply(Batch {
        delete: vec![job.id.clone()],
        ..Batch::default()
    })
    .await
    .expect("delete");
    c.prune_changes(Timestamp::now() + SignedDuration::from_secs(60))
        .await
        .expect("prune");
    assert!(
        c.changes(from, 100).await.expect("changes").is_empty(),
        "[{name}] pruned"
    );
    // A job put and updated in one batch is stored with its updates.
    let fresh = Job::new("put and updated", "true");
    s.apply(Batch {
        put: vec![fresh.clone()],
        update: vec![
            JobUpdate {
                job_id: fresh.id.clone(),
                change: JobChange::Disabled {
                    disabled: true,
                    at: at(0),
                },
            },
            JobUpdate {
                job_id: fresh.id.clone(),
                change: JobChange::AddChild("child".into()),
            },
        ],
        ..Batch::default()
    })
    .await
    .expect("put and update");
    let got = s.get(&fresh.id).await.expect("get").expect("exists");
    assert!(got.disabled, "[{name}] the update of a put job applied");
    assert_eq!(
        got.dependent_jobs,
        Some(vec!["child".to_string()]),
        "[{name}] both updates of a put job applied"
    );
    s.apply(Batch {
        delete: vec![fresh.id.clone()],
        ..Batch::default()
    })
    .await
    .expect("delete");
}

async fn membership(name: &str, c: &dyn Coordination) {
    let node = |n: &str, beat: i64| NodeInfo {
        name: n.into(),
        address: "127.0.0.1:1".into(),
        started_at: at(0),
        heartbeat_at: at(beat),
        expires_at: at(beat + 3),
        runs_done: 7,
        leaving: false,
        // m2 has tags, m1 none: both round-trip.
        tags: if n == "m2" {
            [("role", "etl"), ("zone", "eu-1")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into()
        } else {
            Default::default()
        },
        // m2 is a worker, m1 the default: both round-trip.
        role: if n == "m2" {
            crate::NodeRole::Worker
        } else {
            crate::NodeRole::Both
        },
    };
    c.heartbeat(&node("m1", 0)).await.expect("heartbeat");
    let all = c.heartbeat(&node("m2", 1)).await.expect("heartbeat");
    let names: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
    assert!(
        names.contains(&"m1") && names.contains(&"m2"),
        "[{name}] nodes: {names:?}"
    );
    assert_eq!(
        all.iter().find(|n| n.name == "m2"),
        Some(&node("m2", 1)),
        "[{name}] node round trip"
    );
    c.leave("m1").await.expect("leave");
    let all = c.heartbeat(&node("m2", 2)).await.expect("heartbeat");
    assert!(
        !all.iter().any(|n| n.name == "m1"),
        "[{name}] a node that left is gone"
    );
    // A node silent for over an hour is forgotten.
    let all = c.heartbeat(&node("m3", 2 + 4000)).await.expect("heartbeat");
    assert!(
        !all.iter().any(|n| n.name == "m2"),
        "[{name}] long-dead nodes are forgotten"
    );
    c.leave("m3").await.expect("leave");
}
