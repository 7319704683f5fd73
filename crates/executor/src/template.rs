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

mod parsed;
mod quick;
use parsed::parsed;
pub use quick::renders_quickly;

/// Longest template source accepted (after delimiter translation).
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// Deepest nesting of blocks (`if`, `with`, `range`) or parentheses.
pub const MAX_NESTING: usize = 16;
/// Widest `printf` width or precision (`%70000d` panics inside gtmpl).
pub const MAX_FORMAT_WIDTH: u32 = 1000;
/// Longest rendered text; a longer one fails the run.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Renders `text` with `job` as data when the job has delimiters; returns
/// the text unchanged otherwise. The template is first held to the limits
/// of [`check`], so a stored job that predates them fails its run instead
/// of exhausting the stack.
pub fn render(text: &str, job: &Job) -> Result<String, String> {
    render_for(text, job, None)
}

/// [`render`], with the run's identity as `.Run` (`.Run.JobId`,
/// `.Run.JobName`, `.Run.RunId`, `.Run.ScheduledAt` — empty when not from
/// the schedule —, `.Run.Attempt`, `.Run.Node`) when there is one.
pub fn render_for(
    text: &str,
    job: &Job,
    run: Option<&crate::RunContext>,
) -> Result<String, String> {
    render_delimited(text, &job.template_delimiters, job, run)
}

/// [`render_for`] with `delimiters` in place of the job's.
pub(crate) fn render_delimited(
    text: &str,
    delimiters: &str,
    job: &Job,
    run: Option<&crate::RunContext>,
) -> Result<String, String> {
    if delimiters.is_empty() {
        return Ok(text.to_string());
    }
    let tmpl = parsed(text, delimiters)?;
    let mut data = job_value(job);
    if let (Some(run), Value::Object(fields)) = (run, &mut data) {
        fields.insert(
            "Run".to_string(),
            obj(vec![
                ("JobId", Value::from(run.job_id.as_str())),
                ("JobName", Value::from(run.job_name.as_str())),
                ("RunId", Value::from(run.run_id.as_str())),
                (
                    "ScheduledAt",
                    Value::from(run.scheduled_at.map(|t| t.to_string()).unwrap_or_default()),
                ),
                ("Attempt", Value::from(run.attempt)),
                ("Node", Value::from(run.node.as_str())),
            ]),
        );
    }
    let ctx = gtmpl::Context::from(data);
    let out = no_panic(|| {
        tmpl.render(&ctx)
            .map_err(|e| format!("Error templatizing: {e}"))
    })?;
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(format!(
            "Error templatizing: the rendered text is longer than {MAX_OUTPUT_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// Whether `text` is a template kala will render with these delimiters:
/// it translates, stays within the limits, and parses. Rendering cost is
/// bounded by construction: no `define`/`template`/`block` (the only way
/// to recurse), nesting at most [`MAX_NESTING`] deep, no `range` inside a
/// `range` (which multiplies), `printf` widths at most
/// [`MAX_FORMAT_WIDTH`]. Empty delimiters: not a template, always fine.
pub fn check(text: &str, delimiters: &str) -> Result<(), String> {
    let Some(source) = checked_source(text, delimiters)? else {
        return Ok(());
    };
    no_panic(|| {
        gtmpl::Template::default()
            .parse(source)
            .map_err(|e| format!("Error templatizing: Error parsing template: {e}"))
    })
}

/// gtmpl panics on some malformed input (its lexer slices inside a
/// multi-byte character; found by fuzzing the create path): a panic is a
/// template error, not a crash.
fn no_panic<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("Error templatizing: the template could not be parsed".to_string()))
}

/// The job's templates checked at creation: the command of a local job,
/// the URL and body of a remote one. The error names the field.
pub fn check_job(job: &Job) -> Result<(), (&'static str, String)> {
    let d = &job.template_delimiters;
    match job.job_type {
        kala_job::JobType::Local => check(&job.command, d).map_err(|e| ("command", e)),
        kala_job::JobType::Remote => {
            check(&job.remote_properties.url, d).map_err(|e| ("remote_properties.url", e))?;
            check(&job.remote_properties.body, d).map_err(|e| ("remote_properties.body", e))
        }
        kala_job::JobType::InProcess => Ok(()),
        kala_job::JobType::Publish => match &job.publish {
            Some(p) => check(&p.payload, crate::publish::payload_delimiters(job))
                .map_err(|e| ("publish.payload", e)),
            None => Ok(()),
        },
    }
}

/// The template in gtmpl's `{{ }}`, checked against the limits; `None`
/// when the job has no delimiters (no templating).
fn checked_source(text: &str, delimiters: &str) -> Result<Option<String>, String> {
    if delimiters.is_empty() {
        return Ok(None);
    }
    let (left, right) = delimiters
        .split_once(' ')
        .filter(|(l, r)| !l.is_empty() && !r.is_empty() && !r.contains(' '))
        .ok_or_else(|| "Job has invalid templating delimiters.".to_string())?;
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "Error templatizing: the template is longer than {MAX_TEMPLATE_BYTES} bytes"
        ));
    }
    let source = translate(text, left, right)?;
    if source.len() > 4 * MAX_TEMPLATE_BYTES {
        return Err(format!(
            "Error templatizing: the template is longer than {MAX_TEMPLATE_BYTES} bytes"
        ));
    }
    limits(&source).map_err(|e| format!("Error templatizing: {e}"))?;
    Ok(Some(source))
}

/// Walks the actions of a `{{ }}` template (string literals respected)
/// and refuses what could make parsing or rendering unbounded.
fn limits(source: &str) -> Result<(), String> {
    let b = source.as_bytes();
    let mut blocks: Vec<&str> = Vec::new();
    let mut i = 0;
    while let Some(open) = source[i..].find("{{").map(|o| i + o) {
        let mut j = open + 2;
        // The first word of the action, after an optional trim marker.
        let head = source[j..]
            .trim_start_matches('-')
            .trim_start()
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .next()
            .unwrap_or("");
        match head {
            "define" | "template" | "block" => {
                return Err(format!(
                    "{{{{{head}}}}} is not allowed: kala templates cannot define or call templates (recursion could exhaust the server's stack)"
                ));
            }
            "if" | "with" | "range" => {
                if head == "range" && blocks.contains(&"range") {
                    return Err(
                        "a range inside a range is not allowed (its cost multiplies)".into(),
                    );
                }
                blocks.push(head);
            }
            "end" => {
                blocks.pop();
            }
            _ => {}
        }
        if blocks.len() > MAX_NESTING {
            return Err(format!("blocks nest deeper than {MAX_NESTING} levels"));
        }
        let body = source[j..].trim_start_matches('-').trim_start();
        if body.starts_with("/*") {
            // A comment: text up to `*/` is not code.
            let skip = source.len() - body.len();
            j = source[skip..]
                .find("*/")
                .map(|e| skip + e + 2)
                .ok_or("unclosed comment in an action")?;
        }
        let mut parens = 0usize;
        loop {
            match b.get(j) {
                None => return Err("unclosed action: missing \"}}\"".into()),
                Some(b'}') if b.get(j + 1) == Some(&b'}') => {
                    j += 2;
                    break;
                }
                Some(b'(') => {
                    parens += 1;
                    if parens > MAX_NESTING {
                        return Err(format!("parentheses nest deeper than {MAX_NESTING} levels"));
                    }
                    j += 1;
                }
                Some(b')') => {
                    parens = parens.saturating_sub(1);
                    j += 1;
                }
                Some(&q @ (b'"' | b'`' | b'\'')) => {
                    let end = literal_end(b, j, q)?;
                    format_widths(&source[j + 1..end])?;
                    j = end + 1;
                }
                Some(_) => j += 1,
            }
        }
        i = j;
    }
    Ok(())
}

/// The index of the quote closing the literal that opens at `start`.
/// Escapes are held to Go's rules (gtmpl's lexer loops for ever on some
/// others, e.g. `\x` without two hex digits; found by fuzzing).
fn literal_end(b: &[u8], start: usize, quote: u8) -> Result<usize, String> {
    let mut k = start + 1;
    while let Some(&c) = b.get(k) {
        if c == b'\\' && quote != b'`' {
            k += 1 + escape_len(&b[k + 1..])
                .ok_or_else(|| "invalid escape in a string of an action".to_string())?;
            continue;
        }
        if c == b'\\' {
            // gtmpl's lexer loops for ever on a backslash in a raw string.
            return Err("a backslash in a raw (`…`) string is not supported".into());
        }
        if c == b'\n' && quote != b'`' {
            return Err("a string of an action runs past the end of its line".into());
        }
        if c == quote {
            return Ok(k);
        }
        k += 1;
    }
    Err("unterminated string in an action".into())
}

/// The length of a valid Go escape after its backslash, if it is one.
fn escape_len(rest: &[u8]) -> Option<usize> {
    let hex = |n: usize| {
        (rest.len() > n && rest[1..=n].iter().all(u8::is_ascii_hexdigit)).then_some(n + 1)
    };
    match rest.first()? {
        b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'\\' | b'"' | b'\'' => Some(1),
        b'x' => hex(2),
        b'u' => hex(4),
        b'U' => hex(8),
        b'0'..=b'7' => {
            (rest.len() >= 3 && rest[..3].iter().all(|c| (b'0'..=b'7').contains(c))).then_some(3)
        }
        _ => None,
    }
}

/// Refuses `%` verbs whose width or precision exceeds [`MAX_FORMAT_WIDTH`].
fn format_widths(literal: &str) -> Result<(), String> {
    let b = literal.as_bytes();
    let mut k = 0;
    while k < b.len() {
        if b[k] != b'%' {
            k += 1;
            continue;
        }
        k += 1;
        while k < b.len() && b"+-# 0".contains(&b[k]) {
            k += 1;
        }
        for _ in 0..2 {
            let digits_start = k;
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            let digits = &literal[digits_start..k];
            if digits.len() > 4 || digits.parse::<u32>().is_ok_and(|n| n > MAX_FORMAT_WIDTH) {
                return Err(format!(
                    "a format width or precision over {MAX_FORMAT_WIDTH} is not allowed"
                ));
            }
            if b.get(k) == Some(&b'.') {
                k += 1;
            } else {
                break;
            }
        }
    }
    Ok(())
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
mod tests;
