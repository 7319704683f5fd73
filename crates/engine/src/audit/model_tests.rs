//! The audit model's checks: masking, the diff's text, and (ignored)
//! what an entry costs.

use super::*;

mod checks {
    use super::*;

    #[test]
    fn secrets_are_masked_and_only_changes_listed() {
        let mut a = Job::new("x", "true");
        a.job_type = kala_job::JobType::Remote;
        let rp = kala_job::RemoteProperties {
            url: "https://user:pw@example.com/hook?key=abc".into(),
            headers: Some(
                [
                    (
                        "Authorization".to_string(),
                        vec!["Bearer s3cret".to_string()],
                    ),
                    ("Accept".to_string(), vec!["text/plain".to_string()]),
                ]
                .into_iter()
                .collect(),
            ),
            ..kala_job::RemoteProperties::default()
        };
        a.remote_properties = rp.shared();
        let created = diff(None, Some(&a));
        let text = created.as_str().to_string();
        let created = created.to_value();
        assert!(
            !text.contains("s3cret") && !text.contains(":pw@") && !text.contains("key=abc"),
            "{text}"
        );
        assert!(text.contains("text/plain"), "{text}");
        assert!(created["name"]["after"] == "x" && created["name"].get("before").is_none());
        let mut b = a.clone();
        b.disabled = true;
        b.metadata.success_count = 9;
        assert_eq!(
            diff(Some(&a), Some(&b)).to_value(),
            json!({"disabled": {"before": false, "after": true}})
        );
    }

    /// The text a create's or delete's diff is written as is the tree of
    /// the job's masked JSON, fields at their defaults left out.
    #[test]
    fn one_sided_text_is_the_masked_fields_set() {
        let mut a = Job::new("report \"q\" ✓", "echo 'hi'\n");
        a.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
        a.owner = "team-a".into();
        a.retries = 3;
        a.publish = Some(Box::new(kala_job::Publish {
            broker: "events".into(),
            to: "orders".into(),
            headers: [("X-Api-Key".to_string(), "k3y".to_string())]
                .into_iter()
                .collect(),
            ..kala_job::Publish::default()
        }));
        let mut want = masked(&a);
        let blank = masked(&Job::new("", ""));
        want.retain(|k, v| matches!(k.as_str(), "id" | "name") || blank.get(k) != Some(v));
        let want: Map<String, Value> = want
            .into_iter()
            .map(|(k, v)| (k, json!({"after": v})))
            .collect();
        let got = diff(None, Some(&a));
        assert_eq!(got.to_value(), Value::Object(want.clone()));
        assert!(!got.as_str().contains("k3y"), "{got:?}");
        assert!(want.contains_key("retries") && want.contains_key("publish"));
        let gone = deleted(&a, Some("parent-id")).to_value();
        assert_eq!(gone["deleted_with"], "parent-id");
        assert_eq!(gone["owner"]["before"], "team-a");
        assert_eq!(gone.as_object().map(Map::len), Some(want.len() + 1));
    }
}

/// What an entry costs to make and encode, in release builds:
/// `cargo test --release -p kala-engine --lib audit_cost -- --ignored --nocapture`.
mod cost {
    use super::*;

    #[test]
    #[ignore = "a measurement, not a check"]
    fn audit_cost() {
        let mut job = Job::new("nightly report", "true");
        job.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
        job.owner = "team-a".into();
        let n = 20_000;
        let t = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            let d = diff(None, Some(&job));
            bytes += serde_json::to_string(&d).map_or(0, |s| s.len());
        }
        let per = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            bytes += diff(None, Some(&job)).as_str().len();
        }
        let only = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let v = serde_json::to_value(JobOut::new(&job, None)).unwrap_or(Value::Null);
            bytes += v.is_null() as usize;
        }
        let to_value = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            bytes += serde_json::to_vec(&JobOut::new(&job, None))
                .map(|v| v.len())
                .unwrap_or(0);
        }
        let to_vec = t.elapsed() / n;
        eprintln!(
            "diff + to_string: {per:?}; diff alone: {only:?}; JobOut to_value: {to_value:?}; JobOut to_vec: {to_vec:?} ({bytes})"
        );
    }
}
