//! The words of a notification: one line for a chat message, a subject
//! and a plain-text body for an email.

use kala_job::{NotifyOn, RunRecord};
use kala_store::Notice;

/// How many bytes of a run's output tail go into a message.
pub const OUTPUT_TAIL: usize = 2_000;

/// What happened, as a verb phrase: "failed", "was skipped".
pub fn happened(event: NotifyOn) -> &'static str {
    match event {
        NotifyOn::Failure => "failed",
        NotifyOn::Success => "succeeded",
        NotifyOn::Retry => "failed an attempt and is retried",
        NotifyOn::Skipped => "was skipped",
        NotifyOn::Interrupted => "was interrupted",
    }
}

/// `name` with control characters (a newline that would start a header
/// or a fake line) replaced by spaces, and at most 200 characters.
pub fn clean(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// The last `max` bytes of `s`, cut at a character boundary.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut from = s.len() - max;
    while !s.is_char_boundary(from) {
        from += 1;
    }
    &s[from..]
}

/// One line: `kala: job "backup" failed (exit code 3: …) on node-1`.
pub fn line(n: &Notice) -> String {
    let mut s = format!("kala: job \"{}\" {}", clean(&n.job_name), happened(n.event));
    let r = &n.run;
    match (r.exit_code, &r.error) {
        (Some(code), Some(e)) => s.push_str(&format!(" (exit code {code}: {})", clean(e))),
        (Some(code), None) if code != 0 => s.push_str(&format!(" (exit code {code})")),
        (None, Some(e)) => s.push_str(&format!(" ({})", clean(e))),
        _ => {}
    }
    s.push_str(&format!(" on {} at {}", clean(&n.node), r.ran_at));
    s
}

pub fn subject(n: &Notice) -> String {
    format!("[kala] {}: {}", n.event.as_str(), clean(&n.job_name))
}

fn run_lines(out: &mut String, r: &RunRecord) {
    out.push_str(&format!("Started:    {}\n", r.ran_at));
    if let Some(at) = r.scheduled_at {
        out.push_str(&format!("Scheduled:  {at}\n"));
    }
    out.push_str(&format!("Trigger:    {:?}\n", r.trigger));
    out.push_str(&format!("Outcome:    {:?}\n", r.outcome));
    out.push_str(&format!("Retries:    {}\n", r.number_of_retries));
    out.push_str(&format!(
        "Duration:   {:.3} s\n",
        r.execution_duration as f64 / 1e9
    ));
    if let Some(code) = r.exit_code {
        out.push_str(&format!("Exit code:  {code}\n"));
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("Error:      {e}\n"));
    }
}

/// The body of the email of one notice.
pub fn body(n: &Notice) -> String {
    let mut out = format!(
        "Job \"{}\" {}.\n\nJob:        {} ({})\nEvent:      {}\nNode:       {}\n",
        clean(&n.job_name),
        happened(n.event),
        clean(&n.job_name),
        n.job_id,
        n.event.as_str(),
        n.node,
    );
    run_lines(&mut out, &n.run);
    let output = tail(&n.run.output, OUTPUT_TAIL);
    if !output.is_empty() {
        out.push_str("\nOutput (its end):\n");
        out.push_str(output);
        if !output.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str(&format!("\nNotice {}\n", n.id));
    out
}

/// Subject and body of a summary of `notices` (one job, one address).
pub fn summary(notices: &[Notice]) -> (String, String) {
    let Some(last) = notices.last() else {
        return ("[kala] (no events)".into(), String::new());
    };
    let subject = format!(
        "[kala] {} events of job {} (summary)",
        notices.len(),
        clean(&last.job_name)
    );
    let mut body = format!(
        "Job \"{}\" ({}) had {} events while its notifications to this address were over the rate limit:\n\n",
        clean(&last.job_name),
        last.job_id,
        notices.len()
    );
    for n in notices.iter().take(100) {
        body.push_str(&format!(
            "- {} {} on {}{}\n",
            n.run.ran_at,
            n.event.as_str(),
            n.node,
            n.run
                .error
                .as_deref()
                .map(|e| format!(": {}", clean(e)))
                .unwrap_or_default()
        ));
    }
    if notices.len() > 100 {
        body.push_str(&format!("- … and {} more\n", notices.len() - 100));
    }
    body.push_str("\nThe last of them:\n\n");
    body.push_str(&self::body(last));
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_cut_at_character_boundaries() {
        assert_eq!(tail("héllo", 3), "llo");
        assert_eq!(tail("hé", 1), "");
        assert_eq!(tail("abc", 10), "abc");
    }

    #[test]
    fn names_cannot_break_lines() {
        assert_eq!(clean("a\r\nBcc: x"), "a  Bcc: x");
    }
}
