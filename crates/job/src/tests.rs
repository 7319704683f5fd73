use super::*;
use crate::wire::{JobOut, job_from_json};
use jiff::SignedDuration;

fn future() -> String {
    (Timestamp::now() + SignedDuration::from_hours(1)).to_string()
}

fn decode(s: &str) -> Result<Job, JobError> {
    job_from_json(s.as_bytes())
}

#[test]
fn decodes_kala_bodies_case_insensitively() {
    let j = decode(r#"{"NAME":"x","Command":"true","templatedelimiters":"{{ }}","ID":"mine","unknown":1,"retries":2}"#).unwrap();
    assert_eq!(
        (
            j.name.as_str(),
            j.command.as_str(),
            j.template_delimiters.as_str(),
            j.retries
        ),
        ("x", "true", "{{ }}", 2)
    );
    assert_ne!(j.id, "mine", "client ids are ignored");
    let j = decode(r#"{"name":"r","type":1,"remote_properties":{"url":"http://127.0.0.1/x","headers":{"X-A":["1","2"]},"expected_response_codes":[200,201]}}"#).unwrap();
    assert_eq!(j.job_type, JobType::Remote);
    assert_eq!(
        j.remote_properties.headers.as_ref().unwrap()["X-A"],
        ["1", "2"]
    );
    // The Go client sends every key with zero values.
    let j = decode(r#"{"name":"g","id":"","command":"true","next_run_at":"0001-01-01T00:00:00Z","stats":null,"metadata":{"success_count":9},"is_done":true,"dependent_jobs":["evil"]}"#).unwrap();
    assert_eq!(j.metadata.success_count, 0);
    assert!(!j.is_done);
    assert_eq!(j.dependent_jobs, None);
}

#[test]
fn decode_errors_name_the_field() {
    let cases = [
        ("", "body: is empty"),
        ("{not json", "body: invalid JSON"),
        (
            "[]",
            "body: expected a JSON object describing the job, found an array",
        ),
        (
            "\"x\"",
            "body: expected a JSON object describing the job, found a string",
        ),
        (r#"{"name":5}"#, "name: expected a string, found a number"),
        (
            r#"{"retries":-1}"#,
            "retries: expected a whole number ≥ 0, found -1",
        ),
        (r#"{"retries":1.5}"#, "retries:"),
        (
            r#"{"type":"1"}"#,
            "type: expected a whole number, found a string",
        ),
        (r#"{"type":7}"#, "type: unknown job type 7"),
        (r#"{"disabled":"yes"}"#, "disabled: expected true or false"),
        (
            r#"{"parent_jobs":"p"}"#,
            "parent_jobs: expected an array of strings",
        ),
        (
            r#"{"remote_properties":{"headers":{"X":"v"}}}"#,
            "remote_properties.headers.X: expected an array of strings",
        ),
        (
            r#"{"remote_properties":{"expected_response_codes":[99999]}}"#,
            "remote_properties.expected_response_codes",
        ),
        (r#"{"overlap":"sometimes"}"#, "overlap:"),
        (r#"{"notify":{}}"#, "notify: expected an array of targets"),
        (r#"{"notify":["x"]}"#, "notify[0]: expected an object"),
        (
            r#"{"notify":[{"on":["failure"],"webhok":"http://x"}]}"#,
            "notify[0].webhok: is not a target field",
        ),
        (
            r#"{"notify":[{"on":["sometimes"],"webhook":"http://x"}]}"#,
            "notify[0].on: \"sometimes\" is not one of",
        ),
        (
            r#"{"notify":[{"on":"failure"}]}"#,
            "notify[0].on: expected an array",
        ),
        (
            r#"{"notify":[{"email":7}]}"#,
            "notify[0].email: expected a string",
        ),
        ("{} trailing", "body: invalid JSON"),
    ];
    for (body, want) in cases {
        let e = decode(body).unwrap_err().to_string();
        assert!(
            e.starts_with(want),
            "{body}: {e:?} should start with {want:?}"
        );
    }
}

#[test]
fn validation_names_the_field() {
    let now = Timestamp::now();
    let check = |body: String, want: &str| {
        let e = decode(&body)
            .unwrap()
            .validate(Some(now))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(want),
            "{body}: {e:?} should start with {want:?}"
        );
    };
    check(r#"{"command":"true"}"#.into(), "name: is required");
    check(r#"{"name":"x"}"#.into(), "command: is required");
    check(
        r#"{"name":"x","command":"true","notify":[{"on":["failure"],"email":"a@b.c"},{"on":[],"webhook":"http://h"}]}"#.into(),
        "notify[1].on: must name at least one",
    );
    check(
        r#"{"name":"x","command":"true","notify":[{"on":["failure"],"email":"ops@x\nBcc: all@x"}]}"#.into(),
        "notify[0].email:",
    );
    check(
        r#"{"name":"x","command":"   "}"#.into(),
        "command: is required",
    );
    check(
        r#"{"name":"x","type":1}"#.into(),
        "remote_properties.url: is required",
    );
    check(
        r#"{"name":"x","type":1,"remote_properties":{"url":"ftp://x"}}"#.into(),
        "remote_properties.url",
    );
    check(
        r#"{"name":"x","command":"true","schedule":"garbage"}"#.into(),
        "schedule: schedule \"garbage\" is not formatted",
    );
    check(
        r#"{"name":"x","command":"true","schedule":"R2/2017-06-04T19:25:16.828696-07:00/PT10S"}"#
            .into(),
        "schedule: start 2017-06-05T02:25:16.828696Z is in the past",
    );
    check(
        format!(
            r#"{{"name":"x","command":"true","schedule":"R/{}/PT0S"}}"#,
            future()
        ),
        "schedule: interval \"PT0S\"",
    );
    check(
        format!(
            r#"{{"name":"x","command":"true","schedule":"R/{}/PT1S","epsilon":"asdasd"}}"#,
            future()
        ),
        "epsilon: interval \"asdasd\"",
    );
    check(
        r#"{"name":"x","command":"true","epsilon":"P1M"}"#.into(),
        "epsilon:",
    );
    check(
        r#"{"name":"x","command":"true","TemplateDelimiters":"{{}}"}"#.into(),
        "TemplateDelimiters:",
    );
    check(
        r#"{"name":"x","command":"true","time_zone":"Mars/Base"}"#.into(),
        "time_zone:",
    );
    check(
        r#"{"name":"x","command":"true","timeout":"soon"}"#.into(),
        "timeout:",
    );
    let ok = decode(&format!(
        r#"{{"name":"x","command":"true","schedule":"R2/{}/PT10S","epsilon":"PT5S"}}"#,
        future()
    ))
    .unwrap();
    ok.validate(Some(now)).unwrap();
    // A reload does not apply the past-start rule.
    let old = decode(r#"{"name":"x","command":"true","schedule":"R2/2017-06-04T19:25:16Z/PT10S"}"#)
        .unwrap();
    old.validate(None).unwrap();
}

#[test]
fn wire_output_is_exactly_kalas_keys_in_order() {
    let mut j = Job::new("sched", "true");
    j.id = "d925fd45-240e-4a1c-4ac0-aeb882d687cf".into();
    j.schedule = "R2/2026-11-22T15:23:47Z/PT2S".into();
    let out = serde_json::to_string(&JobOut::new(&j, None)).unwrap();
    let expected_prefix = concat!(
        r#"{"name":"sched","id":"d925fd45-240e-4a1c-4ac0-aeb882d687cf","command":"true","owner":"","disabled":false,"#,
        r#""dependent_jobs":null,"parent_jobs":null,"on_failure_job":"","schedule":"R2/2026-11-22T15:23:47Z/PT2S","#,
        r#""retries":0,"epsilon":"","next_run_at":"0001-01-01T00:00:00Z","TemplateDelimiters":"","#,
        r#""resume_at_next_scheduled_time":false,"metadata":{"success_count":0,"last_success":"0001-01-01T00:00:00Z","#,
        r#""error_count":0,"last_error":"0001-01-01T00:00:00Z","last_attempted_run":"0001-01-01T00:00:00Z","#,
        r#""number_of_finished_runs":0},"type":0,"remote_properties":{"url":"","method":"","body":"","headers":null,"#,
        r#""timeout":0,"expected_response_codes":null},"stats":null,"is_done":false}"#
    );
    assert_eq!(out, expected_prefix, "exactly Kala's keys");
    // kala's own fields appear only when a job uses them.
    let mut ext = j.clone();
    ext.time_zone = "Europe/Berlin".into();
    ext.overlap = crate::Overlap::Skip;
    let out = serde_json::to_string(&JobOut::new(&ext, None)).unwrap();
    assert!(
        out.ends_with(r#""is_done":false,"time_zone":"Europe/Berlin","overlap":"skip"}"#),
        "{out}"
    );
    ext.notify = vec![crate::NotifyTarget::webhook(
        "https://h.example/x",
        &[crate::NotifyOn::Failure, crate::NotifyOn::Retry],
    )];
    let out = serde_json::to_string(&JobOut::new(&ext, None)).unwrap();
    assert!(
        out.ends_with(r#""overlap":"skip","notify":[{"on":["failure","retry"],"webhook":"https://h.example/x"}]}"#),
        "{out}"
    );
    let back = crate::wire::job_from_value(serde_json::from_str(&out).unwrap()).unwrap();
    assert_eq!(back.notify, ext.notify);
    let rec = RunRecord {
        job_id: j.id.clone(),
        ran_at: "2026-11-22T15:23:44.516371803Z".parse().unwrap(),
        scheduled_at: None,
        trigger: Trigger::Manual,
        outcome: Outcome::Succeeded,
        number_of_retries: 0,
        execution_duration: 1_979_995,
        exit_code: Some(0),
        error: None,
        output: String::new(),
        // kala's extensions stay out of Kala's stats shape.
        run_id: Some("a3c2d1e0-0000-4000-8000-000000000001".into()),
        node: Some("n1".into()),
    };
    let stat = serde_json::to_string(&wire::StatOut::new(&rec)).unwrap();
    assert!(stat.starts_with(r#"{"job_id":"d925fd45-240e-4a1c-4ac0-aeb882d687cf","ran_at":"2026-11-22T15:23:44.516371803Z","number_of_retries":0,"success":true,"execution_duration":1979995}"#), "{stat}");
    let stats = serde_json::to_string(&wire::AppStats::default()).unwrap();
    assert!(stats.starts_with(r#"{"active_jobs":0,"disabled_jobs":0,"jobs":0,"error_count":0,"success_count":0,"next_run_at":"0001-01-01T00:00:00Z","last_attempted_run":"0001-01-01T00:00:00Z","created":"0001-01-01T00:00:00Z"}"#), "{stats}");
}

#[test]
fn storage_round_trip_keeps_every_field() {
    let mut j = decode(r#"{"name":"all","command":"echo {{.Name}}","owner":"o@x","disabled":true,"parent_jobs":["p"],"on_failure_job":"f","schedule":"R/2030-01-01T00:00:00Z/PT1S","retries":3,"epsilon":"PT5S","TemplateDelimiters":"{{ }}","resume_at_next_scheduled_time":true,"time_zone":"Europe/Berlin","timeout":"PT30S","retry_delay":"PT1S","overlap":"skip","type":1,"remote_properties":{"url":"http://127.0.0.1:1/","method":"POST","body":"b","headers":{"A":["1"]},"timeout":-1,"expected_response_codes":[201]}}"#).unwrap();
    j.metadata.success_count = 4;
    j.next_run_at = Some(Timestamp::now());
    j.dependent_jobs = Some(vec!["c".into()]);
    let bytes = serde_json::to_vec(&j).unwrap();
    let back: Job = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, j);
}

#[test]
fn the_plan_holds_the_parsed_timing() {
    let mut j = Job::new("x", "true");
    j.schedule = "R/2030-01-01T00:00:00Z/PT10S".into();
    j.epsilon = "PT30S".into();
    j.timeout = "PT5M".into();
    let p = j.plan().unwrap();
    assert_eq!(p.epsilon(), Some(jiff::SignedDuration::from_secs(30)));
    assert_eq!(p.timeout(), Some(std::time::Duration::from_secs(300)));
    assert_eq!(p.retry_delay(), None);
    let start: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let cadence = p.cadence.unwrap();
    assert_eq!(cadence.start(), Some(start));
    assert_eq!(
        cadence.next_after(start),
        Some(start + jiff::SignedDuration::from_secs(10))
    );
    // A one-off without durations has the empty plan.
    assert_eq!(Job::new("y", "true").plan().unwrap(), Plan::default());
}

#[test]
fn local_jobs_share_one_empty_remote_setting() {
    use std::sync::Arc;
    let a = decode(r#"{"name":"a","command":"true"}"#).unwrap();
    let stored: Job = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    let b = Job::new("b", "true");
    assert!(Arc::ptr_eq(&a.remote_properties, &b.remote_properties));
    assert!(
        Arc::ptr_eq(&stored.remote_properties, &b.remote_properties),
        "a stored local job, loaded, shares it too"
    );
    let r = decode(r#"{"name":"r","type":1,"remote_properties":{"url":"http://x"}}"#).unwrap();
    assert!(!Arc::ptr_eq(&r.remote_properties, &b.remote_properties));
    assert_eq!(r.remote_properties.url, "http://x");
    let back: Job = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}
