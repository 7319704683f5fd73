//! Round trips and damage of the packed form.

use super::*;
use crate::NotifyOn;

fn full() -> Job {
    let mut j = Job::new("nightly backup ✓", "tar -czf /tmp/x.tgz /etc");
    j.owner = "ops@example.com".into();
    j.disabled = true;
    j.dependent_jobs = Some(vec![uuid::Uuid::new_v4().to_string(), "custom-id".into()]);
    j.parent_jobs = Some(vec![]);
    j.on_failure_job = uuid::Uuid::new_v4().to_string();
    j.schedule = "R5/2030-01-02T03:04:05Z/PT1H30M".into();
    j.retries = 300;
    j.epsilon = "PT5M".into();
    j.template_delimiters = "{{ }}".into();
    j.resume_at_next_scheduled_time = true;
    j.job_type = JobType::Remote;
    j.remote_properties = Arc::new(RemoteProperties {
        url: "http://127.0.0.1:1/x".into(),
        method: "POST".into(),
        body: "{\"a\":1}".into(),
        headers: Some([("X-A".to_string(), vec!["1".to_string()])].into()),
        timeout: -1,
        expected_response_codes: Some(vec![200, 204]),
    });
    j.time_zone = "Europe/Paris".into();
    j.timeout = "PT1M".into();
    j.retry_delay = "PT2S".into();
    j.overlap = Overlap::Skip;
    j.notify = vec![NotifyTarget::webhook(
        "http://127.0.0.1:2/",
        &[NotifyOn::Failure],
    )];
    j.metadata = Metadata {
        success_count: 7,
        last_success: Some(Timestamp::new(1_900_000_000, 123).expect("time")),
        error_count: 1 << 40,
        last_error: Some(Timestamp::new(0, -999_999_999).expect("time")),
        last_attempted_run: Some(Timestamp::MAX),
        number_of_finished_runs: u64::MAX,
    };
    j.next_run_at = Some(Timestamp::MIN);
    j.is_done = true;
    j.scheduled_runs = 3;
    j.last_scheduled_at = Some(Timestamp::UNIX_EPOCH);
    j.disabled_at = Some(Timestamp::new(1_800_000_000, 5).expect("time"));
    j.enabled_at = Some(Timestamp::new(1_800_000_009, 0).expect("time"));
    j
}

/// A publish job (type 3) with every `publish` field set.
fn published() -> Job {
    let mut j = full();
    j.job_type = crate::JobType::Publish;
    j.remote_properties = crate::RemoteProperties::shared_default();
    j.publish = Some(Box::new(crate::Publish {
        broker: "events".into(),
        to: "orders.tick".into(),
        exchange: "amq.topic".into(),
        payload: "{{.Run.ScheduledAt}}".into(),
        headers: [("k".to_string(), "v".to_string())].into(),
        qos: Some(2),
        retain: true,
    }));
    j.run_on = Some(Box::new(crate::RunOn {
        tags: [("role".to_string(), "etl".to_string())].into(),
        count: Some(2),
        every: false,
    }));
    j
}

#[test]
fn every_field_survives_a_round_trip() {
    for job in [Job::new("", ""), full(), published()] {
        let bytes = encode(&job);
        assert_eq!(decode(&bytes), Ok(job.clone()));
        assert_eq!(decode_id(&bytes), Ok(job.id.clone()));
        assert_eq!(
            decode_counters(&bytes),
            Ok((job.disabled, job.metadata.clone()))
        );
        let v = view(&bytes).expect("a view");
        assert_eq!(v.id, encode_id(&job.id).as_slice());
        assert_eq!(v.timing, job.timing());
        assert_eq!(
            (
                v.disabled,
                v.resume_at_next_scheduled_time,
                v.is_done,
                v.is_child
            ),
            (
                job.disabled,
                job.resume_at_next_scheduled_time,
                job.is_done,
                job.is_child()
            )
        );
        assert_eq!(
            (
                &v.metadata,
                v.next_run_at,
                v.last_scheduled_at,
                v.created_at,
                v.disabled_at,
                v.enabled_at
            ),
            (
                &job.metadata,
                job.next_run_at,
                job.last_scheduled_at,
                job.created_at,
                job.disabled_at,
                job.enabled_at
            )
        );
        assert_eq!(id_prefix(&bytes), encode_id(&job.id).as_slice());
    }
}

#[test]
fn a_uuid_id_takes_17_bytes_and_other_ids_keep_their_text() {
    let job = Job::new("a", "true");
    assert_eq!(encode_id(&job.id).len(), 17);
    for id in [
        "x",
        "",
        "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
        "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
    ] {
        let mut j = job.clone();
        j.id = id.to_string();
        assert_eq!(encode_id(id)[0], ID_TEXT, "{id}");
        assert_eq!(decode(&encode(&j)).map(|j| j.id), Ok(id.to_string()));
    }
}

#[test]
fn a_typical_job_is_small() {
    let mut j = Job::new("bench-000123", "true");
    j.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
    assert!(encode(&j).len() < 90, "{}", encode(&j).len());
}

#[test]
fn damaged_bytes_are_errors_never_panics() {
    let bytes = encode(&full());
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n]).is_err(), "truncated at {n}");
        assert!(view(&bytes[..n]).is_err(), "truncated at {n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer).is_err());
    // Every single-byte change either decodes to some job or fails.
    for i in 0..bytes.len() {
        for v in [0u8, 0x7f, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = decode(&b);
            let _ = decode_counters(&b);
            let _ = view(&b);
        }
    }
    assert!(
        decode(&[
            ID_TEXT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .is_err()
    );
    assert!(decode(&[9]).is_err());
    assert_eq!(id_prefix(&[9]), &[] as &[u8]);
}
