//! The fencing checks of the cluster suite: a batch fenced by a lease
//! that moved on (another node, an old token, expiry) is refused whole;
//! a run's record is refused when the lease changed hands, and written
//! when it only ran out (`Fence::for_record`).

use jiff::Timestamp;
use kala_job::Job;

use super::journal::open_run;
use super::nodes::{A, B, at, req, tok};
use crate::{Batch, Coordination, Fence, JobChange, JobStore, JobUpdate, RunDelta, StoreError};

pub(super) async fn fencing(name: &str, s: &dyn JobStore, c: &dyn Coordination) {
    let job = Job::new("fenced", "true");
    s.apply(Batch::put(job.clone())).await.expect("put");
    let all = c.lease(req(A, &[7], &[], at(10))).await.expect("lease");
    let token = tok(&all, A, 7).expect("held");
    let fenced = |node: &str, token: u64, now: Timestamp, run: &str| Batch {
        begin: vec![open_run(run, &job.id, Some(1_900_000_000_000_000_000))],
        audit: vec![super::audit::entry(run, &job.id, 1_900_000_100_000_000_000)],
        fence: Some(Fence {
            partition: 7,
            node: node.into(),
            token,
            now,
        }),
        ..Batch::default()
    };
    s.apply(fenced(A, token, at(11), "f-ok"))
        .await
        .expect("a holds the lease");
    for (why, batch) in [
        ("another node", fenced(B, token, at(11), "f-1")),
        ("an old token", fenced(A, token - 1, at(11), "f-2")),
        ("an expired lease", fenced(A, token, at(14), "f-3")),
    ] {
        match s.apply(batch).await {
            Err(StoreError::Fenced(_)) => {}
            other => panic!("[{name}] a batch fenced by {why} must fail Fenced, got {other:?}"),
        }
    }
    let open: Vec<String> = s
        .open_runs()
        .await
        .expect("open")
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert!(
        open.contains(&"f-ok".to_string()),
        "[{name}] the fenced batch that held is written"
    );
    assert!(
        !open.iter().any(|r| r.starts_with("f-") && r != "f-ok"),
        "[{name}] refused batches write nothing: {open:?}"
    );
    let audited: Vec<String> = s
        .audit(None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("f-"))
        .collect();
    assert_eq!(
        audited,
        ["f-ok"],
        "[{name}] a refused batch writes no audit entry; the one that held does"
    );
    // Taken over: the old holder's token no longer works even before expiry.
    c.lease(req(A, &[], &[7], at(11))).await.expect("release");
    c.lease(req(B, &[7], &[], at(11))).await.expect("take");
    assert!(
        matches!(
            s.apply(fenced(A, token, at(11), "f-4")).await,
            Err(StoreError::Fenced(_))
        ),
        "[{name}] a lease that changed hands fences its old holder"
    );
    // The record of a run journaled under the old lease (its write waited
    // on a stalled link while the partition changed hands) is refused
    // whole: no record, no counters, its journal entry still open.
    let mut record = super::outbox::run_of(&job, at(12));
    record.run_id = Some("f-ok".into());
    let refused = s
        .apply(Batch {
            runs: vec![record],
            end: vec!["f-ok".into()],
            update: vec![JobUpdate {
                job_id: job.id.clone(),
                change: JobChange::Ran(RunDelta {
                    successes: 1,
                    finished: 1,
                    ..RunDelta::default()
                }),
            }],
            fence: Some(Fence {
                partition: 7,
                node: A.into(),
                token,
                now: at(11),
            }),
            ..Batch::default()
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Fenced(_))),
        "[{name}] a run's record under a lease that changed hands is refused, got {refused:?}"
    );
    assert!(
        s.runs(&job.id, None).await.expect("runs").is_empty(),
        "[{name}] the refused record is not written"
    );
    let kept = s.get(&job.id).await.expect("get").expect("exists");
    assert_eq!(kept.metadata.success_count, 0, "[{name}] nor its counters");
    assert!(
        s.open_runs()
            .await
            .expect("open")
            .iter()
            .any(|r| r.run_id == "f-ok"),
        "[{name}] and its journal entry stays open"
    );
    // A record under a lease that ran out but did not change hands (no
    // one took it over, so no one recorded the run interrupted) is
    // written: Fence::for_record does not check expiry.
    let b_token = tok(&c.leases().await.expect("leases"), B, 7).expect("b holds it");
    let b_fence = Fence {
        partition: 7,
        node: B.into(),
        token: b_token,
        now: at(12),
    };
    s.apply(Batch {
        begin: vec![open_run("f-b", &job.id, None)],
        fence: Some(b_fence.clone()),
        ..Batch::default()
    })
    .await
    .expect("b holds the lease");
    let mut late = super::outbox::run_of(&job, at(12));
    late.run_id = Some("f-b".into());
    let expired = Fence {
        now: at(3600),
        ..b_fence
    };
    assert!(
        matches!(
            s.apply(Batch {
                begin: vec![open_run("f-5", &job.id, None)],
                fence: Some(expired.clone()),
                ..Batch::default()
            })
            .await,
            Err(StoreError::Fenced(_))
        ),
        "[{name}] an expired lease fences a journal entry"
    );
    s.apply(Batch {
        runs: vec![late],
        end: vec!["f-b".into()],
        fence: Some(expired.for_record()),
        ..Batch::default()
    })
    .await
    .unwrap_or_else(|e| panic!("[{name}] a record under an expired lease nobody took: {e}"));
    assert_eq!(
        s.runs(&job.id, None).await.expect("runs").len(),
        1,
        "[{name}] the record under the unchanged lease is written"
    );
    s.apply(Batch {
        end: vec!["f-ok".into()],
        delete: vec![job.id.clone()],
        ..Batch::default()
    })
    .await
    .expect("end");
}
