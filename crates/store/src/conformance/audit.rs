//! The audit log's checks: entries written with the change in one batch
//! round-trip every field, page newest first by id, outlive the job they
//! are about and `delete_all` (which writes its own entry), survive a
//! reopen, and go only through `prune_audit`.

use jiff::Timestamp;
use kala_job::Job;

use crate::{AuditDiff, AuditEntry, Batch, JobStore, audit_id};

/// An entry of `action` about `job` at `at_ns`.
pub fn entry(action: &str, job: &str, at_ns: i128) -> AuditEntry {
    let at = Timestamp::from_nanosecond(at_ns).expect("time");
    AuditEntry {
        id: audit_id(at),
        at,
        actor: "ci-token".into(),
        source: "127.0.0.1:40000".into(),
        request_id: format!("req-{action}"),
        action: action.into(),
        job_id: job.into(),
        job_name: "audited \"job\" ✓".into(),
        owner: "team-a".into(),
        node: "n1".into(),
        diff: AuditDiff::from_value(
            &serde_json::json!({"disabled": {"before": false, "after": true}, "nested": [1, "two", null], "text": "a \"quoted\" ✓\n"}),
        ),
    }
}

pub(super) async fn audit(s: &dyn JobStore) {
    let name = s.name();
    s.prune_audit(Timestamp::MAX)
        .await
        .expect("prune everything");
    assert!(
        s.audit(None, 10).await.expect("audit").is_empty(),
        "[{name}] prune_audit(MAX) leaves no entry"
    );
    let job = Job::new("audited", "true");
    let base: i128 = 1_900_000_000_000_000_000;
    let created = entry("create", &job.id, base);
    s.apply(Batch {
        put: vec![job.clone()],
        audit: vec![created.clone()],
        ..Batch::default()
    })
    .await
    .expect("create with its entry");
    assert_eq!(
        s.audit(None, 10).await.expect("audit"),
        vec![created.clone()],
        "[{name}] an entry round-trips every field"
    );
    // Several in one batch, then one per batch: newest first by id.
    let more: Vec<AuditEntry> = (1..=5)
        .map(|k| entry(&format!("change-{k}"), &job.id, base + k * 1_000))
        .collect();
    s.apply(Batch {
        audit: more[..2].to_vec(),
        ..Batch::default()
    })
    .await
    .expect("two entries");
    for e in &more[2..] {
        s.apply(Batch {
            audit: vec![e.clone()],
            ..Batch::default()
        })
        .await
        .expect("one entry");
    }
    let mut newest_first: Vec<AuditEntry> = more.iter().rev().cloned().collect();
    newest_first.push(created.clone());
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = s.audit(before.as_deref(), 2).await.expect("page");
        assert!(page.len() <= 2, "[{name}] a page holds at most its limit");
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        paged.extend(page);
    }
    assert_eq!(
        paged, newest_first,
        "[{name}] pages go newest first, each entry once"
    );

    // The job goes; its entries stay. delete_all writes its own entry and
    // keeps the log.
    let deleted = entry("delete", &job.id, base + 10_000);
    s.apply(Batch {
        delete: vec![job.id.clone()],
        audit: vec![deleted.clone()],
        ..Batch::default()
    })
    .await
    .expect("delete with its entry");
    let all = entry("delete_all", "", base + 20_000);
    s.delete_all(vec![all.clone()]).await.expect("delete_all");
    let after = s.audit(None, 100).await.expect("audit");
    assert_eq!(after.len(), 8, "[{name}] deletes keep the log: {after:?}");
    assert_eq!(after[0], all, "[{name}] delete_all's entry is written");
    assert_eq!(after[1], deleted);

    // Pruning drops by time only.
    let dropped = s
        .prune_audit(Timestamp::from_nanosecond(base + 3_500).expect("time"))
        .await
        .expect("prune");
    assert_eq!(dropped, 4, "[{name}] prune_audit counts what it drops");
    let left: Vec<String> = s
        .audit(None, 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        left,
        ["delete_all", "delete", "change-5", "change-4"],
        "[{name}] older entries are pruned, newer kept"
    );
}
