//! Kala's `TemplateDelimiters`: the command (local) or URL and body
//! (remote) are rendered as Go templates with the job as data, using the
//! job's own delimiters. Rendering uses `gtmpl`, a port of Go's
//! text/template, so `{{.Name}}`, `{{$.Owner}}`, `{{.Metadata.SuccessCount}}`,
//! pipelines, `if` and `range` behave as in Kala. Field names are Go's
//! (`Name`, `Id`, `RemoteProperties.Url`…); times print in Go's default
//! format (`2026-11-22 15:23:44.516371803 +0000 UTC`).

use std::collections::HashMap;

use gtmpl_value::Value;
use jiff::Timestamp;
use kala_job::Job;

/// Renders `text` with `job` as data when the job has delimiters; returns
/// the text unchanged otherwise.
pub fn render(text: &str, job: &Job) -> Result<String, String> {
    if job.template_delimiters.is_empty() {
        return Ok(text.to_string());
    }
    let (left, right) = job
        .template_delimiters
        .split_once(' ')
        .filter(|(l, r)| !l.is_empty() && !r.is_empty() && !r.contains(' '))
        .ok_or_else(|| "Job has invalid templating delimiters.".to_string())?;
    let source = translate(text, left, right)?;
    let mut tmpl = gtmpl::Template::default();
    tmpl.parse(source)
        .map_err(|e| format!("Error templatizing: Error parsing template: {e}"))?;
    let ctx = gtmpl::Context::from(job_value(job));
    tmpl.render(&ctx)
        .map_err(|e| format!("Error templatizing: {e}"))
}

/// Rewrites a template written with custom delimiters into gtmpl's
/// `{{ }}`, quoting any literal `{{` / `}}` in the text parts.
fn translate(text: &str, left: &str, right: &str) -> Result<String, String> {
    if left == "{{" && right == "}}" {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(left) {
        out.push_str(&quote_text(&rest[..i]));
        let after = &rest[i + left.len()..];
        let j = after
            .find(right)
            .ok_or_else(|| format!("Error templatizing: unclosed action: missing {right:?}"))?;
        out.push_str("{{");
        out.push_str(&after[..j]);
        out.push_str("}}");
        rest = &after[j + right.len()..];
    }
    out.push_str(&quote_text(rest));
    Ok(out)
}

/// Quotes literal `{{` and `}}` so gtmpl prints them as text.
fn quote_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        if s[i..].starts_with("{{") {
            out.push_str("{{\"{{\"}}");
            i += 2;
        } else if s[i..].starts_with("}}") {
            out.push_str("{{\"}}\"}}");
            i += 2;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Go's default time format, `2006-01-02 15:04:05.999999999 -0700 MST`.
pub fn go_time(t: Option<Timestamp>) -> String {
    match t {
        None => "0001-01-01 00:00:00 +0000 UTC".to_string(),
        Some(t) => {
            let dt = t.to_zoned(jiff::tz::TimeZone::UTC).datetime();
            let ns = dt.subsec_nanosecond();
            let frac = if ns == 0 {
                String::new()
            } else {
                format!(".{}", format!("{ns:09}").trim_end_matches('0'))
            };
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            )
        }
    }
}

fn strs(v: &Option<Vec<String>>) -> Value {
    match v {
        None => Value::Nil,
        Some(list) => Value::Array(list.iter().map(|s| Value::from(s.as_str())).collect()),
    }
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
    )
}

/// The job as template data, with Go's field names.
pub fn job_value(job: &Job) -> Value {
    let m = &job.metadata;
    let r = &job.remote_properties;
    let headers = match &r.headers {
        None => Value::Nil,
        Some(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Value::Array(v.iter().map(|s| Value::from(s.as_str())).collect()),
                    )
                })
                .collect(),
        ),
    };
    let codes = match &r.expected_response_codes {
        None => Value::Nil,
        Some(c) => Value::Array(c.iter().map(|c| Value::from(u64::from(*c))).collect()),
    };
    obj(vec![
        ("Name", Value::from(job.name.as_str())),
        ("Id", Value::from(job.id.as_str())),
        ("Command", Value::from(job.command.as_str())),
        ("Owner", Value::from(job.owner.as_str())),
        ("Disabled", Value::from(job.disabled)),
        ("DependentJobs", strs(&job.dependent_jobs)),
        ("ParentJobs", strs(&job.parent_jobs)),
        ("OnFailureJob", Value::from(job.on_failure_job.as_str())),
        ("Schedule", Value::from(job.schedule.as_str())),
        ("Retries", Value::from(job.retries)),
        ("Epsilon", Value::from(job.epsilon.as_str())),
        ("NextRunAt", Value::from(go_time(job.next_run_at))),
        (
            "TemplateDelimiters",
            Value::from(job.template_delimiters.as_str()),
        ),
        (
            "ResumeAtNextScheduledTime",
            Value::from(job.resume_at_next_scheduled_time),
        ),
        (
            "Metadata",
            obj(vec![
                ("SuccessCount", Value::from(m.success_count)),
                ("LastSuccess", Value::from(go_time(m.last_success))),
                ("ErrorCount", Value::from(m.error_count)),
                ("LastError", Value::from(go_time(m.last_error))),
                (
                    "LastAttemptedRun",
                    Value::from(go_time(m.last_attempted_run)),
                ),
                (
                    "NumberOfFinishedRuns",
                    Value::from(m.number_of_finished_runs),
                ),
            ]),
        ),
        ("JobType", Value::from(job.job_type.code())),
        (
            "RemoteProperties",
            obj(vec![
                ("Url", Value::from(r.url.as_str())),
                ("Method", Value::from(r.method.as_str())),
                ("Body", Value::from(r.body.as_str())),
                ("Headers", headers),
                ("Timeout", Value::from(r.timeout)),
                ("ExpectedResponseCodes", codes),
            ]),
        ),
        ("IsDone", Value::from(job.is_done)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(delims: &str) -> Job {
        let mut j = Job::new("mock_job", "echo");
        j.owner = "mr.jedi@master.com".into();
        j.template_delimiters = delims.into();
        j
    }

    #[test]
    fn kala_template_cases() {
        assert_eq!(
            render("echo mr.{{$.Owner}}", &job("")).unwrap(),
            "echo mr.{{$.Owner}}"
        );
        assert_eq!(
            render("echo {{$.Owner}}", &job("{{ }}")).unwrap(),
            "echo mr.jedi@master.com"
        );
        assert_eq!(
            render("http://x/?val=a_{{$.Name}}", &job("{{ }}")).unwrap(),
            "http://x/?val=a_mock_job"
        );
        let mut j = job("${ }");
        j.owner = "young-jedi@master.com".into();
        assert_eq!(
            render(r#"{"owner": "${.Owner}"}"#, &j).unwrap(),
            r#"{"owner": "young-jedi@master.com"}"#
        );
        assert_eq!(
            render("{{ keep }} ${.Name}", &j).unwrap(),
            "{{ keep }} mock_job"
        );
        assert_eq!(
            render(
                "n={{.Metadata.SuccessCount}} t={{.Metadata.LastSuccess}}",
                &job("{{ }}")
            )
            .unwrap(),
            "n=0 t=0001-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            render("{{if .Disabled}}off{{else}}on{{end}}", &job("{{ }}")).unwrap(),
            "on"
        );
    }

    #[test]
    fn bad_templates_fail_the_run() {
        assert!(
            render("{{.Name", &job("{{ }}"))
                .unwrap_err()
                .contains("Error templatizing")
        );
        assert!(
            render("x", &job("{{}}"))
                .unwrap_err()
                .contains("invalid templating delimiters")
        );
        assert!(render("${.Name", &job("${ }")).is_err());
    }

    #[test]
    fn go_time_format() {
        let t: Timestamp = "2026-11-22T15:23:44.516371803Z".parse().unwrap();
        assert_eq!(go_time(Some(t)), "2026-11-22 15:23:44.516371803 +0000 UTC");
    }
}
