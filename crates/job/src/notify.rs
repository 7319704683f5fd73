//! Notification targets: who hears about a job's runs, and on which
//! events. Pure data and validation; delivery is `kala-notify`'s.
//!
//! Owns: [`NotifyTarget`], [`NotifyOn`], [`validate_targets`].

use serde::{Deserialize, Serialize};

use crate::{JobError, Outcome};

/// At most this many targets per job (and in the server's defaults).
pub const MAX_TARGETS: usize = 16;

/// An event of a run that can be notified.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// The run failed (after its retries).
    Failure,
    Success,
    /// An attempt failed and is retried.
    Retry,
    /// The run was skipped (too late for `epsilon`, or `overlap: skip`).
    Skipped,
    /// The run was cut short by a crash or kill of the instance running it.
    Interrupted,
}

impl NotifyOn {
    pub const ALL: [NotifyOn; 5] = [
        NotifyOn::Failure,
        NotifyOn::Success,
        NotifyOn::Retry,
        NotifyOn::Skipped,
        NotifyOn::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Failure => "failure",
            NotifyOn::Success => "success",
            NotifyOn::Retry => "retry",
            NotifyOn::Skipped => "skipped",
            NotifyOn::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<NotifyOn> {
        NotifyOn::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event a finished run is.
    pub fn of(outcome: Outcome) -> NotifyOn {
        match outcome {
            Outcome::Succeeded => NotifyOn::Success,
            Outcome::Failed => NotifyOn::Failure,
            Outcome::Skipped => NotifyOn::Skipped,
            Outcome::Interrupted => NotifyOn::Interrupted,
        }
    }
}

/// One receiver of a job's notifications: a webhook (a signed JSON POST,
/// or a Slack/Mattermost message with `format: "slack"`) or an email
/// address. Exactly one of `webhook` and `email` is set.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyTarget {
    /// The events that are sent.
    pub on: Vec<NotifyOn>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub webhook: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// `""` (kala's JSON) or `"slack"` (a Slack/Mattermost incoming-webhook
    /// body); webhooks only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
}

impl NotifyTarget {
    pub fn webhook(url: impl Into<String>, on: &[NotifyOn]) -> NotifyTarget {
        NotifyTarget {
            on: on.to_vec(),
            webhook: url.into(),
            email: String::new(),
            format: String::new(),
        }
    }

    pub fn email(address: impl Into<String>, on: &[NotifyOn]) -> NotifyTarget {
        NotifyTarget {
            on: on.to_vec(),
            webhook: String::new(),
            email: address.into(),
            format: String::new(),
        }
    }

    pub fn wants(&self, event: NotifyOn) -> bool {
        self.on.contains(&event)
    }

    /// Checks one target; errors name `field` (like `notify[0]`).
    pub fn validate(&self, field: &str) -> Result<(), JobError> {
        if self.on.is_empty() {
            return Err(JobError::new(
                format!("{field}.on"),
                "must name at least one of \"failure\", \"success\", \"retry\", \"skipped\", \"interrupted\"",
            ));
        }
        match (self.webhook.is_empty(), self.email.is_empty()) {
            (true, true) => {
                return Err(JobError::new(
                    field,
                    "needs a \"webhook\" (an http:// or https:// URL) or an \"email\" address",
                ));
            }
            (false, false) => {
                return Err(JobError::new(
                    field,
                    "has both \"webhook\" and \"email\"; use one target for each",
                ));
            }
            (false, true) => check_url(&format!("{field}.webhook"), &self.webhook)?,
            (true, false) => check_email(&format!("{field}.email"), &self.email)?,
        }
        match self.format.as_str() {
            "" => Ok(()),
            "slack" if !self.webhook.is_empty() => Ok(()),
            "slack" => Err(JobError::new(
                format!("{field}.format"),
                "\"slack\" applies to webhooks only",
            )),
            other => Err(JobError::new(
                format!("{field}.format"),
                format!("{other:?} is not one of \"\", \"slack\""),
            )),
        }
    }
}

/// Checks a list of targets (a job's `notify`, or the server's defaults).
pub fn validate_targets(field: &str, targets: &[NotifyTarget]) -> Result<(), JobError> {
    if targets.len() > MAX_TARGETS {
        return Err(JobError::new(
            field,
            format!("has {} targets; at most {MAX_TARGETS}", targets.len()),
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        t.validate(&format!("{field}[{i}]"))?;
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<(), JobError> {
    if url.len() > 2048 {
        return Err(JobError::new(field, "is longer than 2048 bytes"));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            JobError::new(
                field,
                format!("{url:?} must start with http:// or https://"),
            )
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(JobError::new(field, format!("{url:?} has no host")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(JobError::new(
            field,
            format!("{url:?} contains spaces or control characters"),
        ));
    }
    Ok(())
}

/// A plain `local@domain` address (no display name, no comments): what
/// goes into a `To:` header must not be able to add headers or
/// recipients.
pub fn check_email(field: &str, address: &str) -> Result<(), JobError> {
    let bad = |why: &str| JobError::new(field, format!("{address:?} {why}"));
    if address.len() > 254 {
        return Err(bad("is longer than 254 bytes"));
    }
    if !address
        .chars()
        .all(|c| c.is_ascii_graphic() && !"<>,;:\"()[]\\".contains(c))
    {
        return Err(bad(
            "is not a plain address like ops@example.com (no spaces, names, brackets or lists)",
        ));
    }
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..") =>
        {
            Ok(())
        }
        _ => Err(bad("is not an address like ops@example.com")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_field_by_field() {
        let ok = NotifyTarget::webhook("https://hooks.example.com/x", &[NotifyOn::Failure]);
        assert!(ok.validate("notify[0]").is_ok());
        let cases = [
            (
                NotifyTarget::webhook("ftp://x", &[NotifyOn::Failure]),
                "notify[0].webhook",
            ),
            (
                NotifyTarget::webhook("https://", &[NotifyOn::Failure]),
                "notify[0].webhook",
            ),
            (
                NotifyTarget::webhook("https://a b", &[NotifyOn::Failure]),
                "notify[0].webhook",
            ),
            (NotifyTarget::webhook("https://x", &[]), "notify[0].on"),
            (
                NotifyTarget::email("ops", &[NotifyOn::Failure]),
                "notify[0].email",
            ),
            (
                NotifyTarget::email("a@b.c\r\nBcc: x@y.z", &[NotifyOn::Failure]),
                "notify[0].email",
            ),
            (
                NotifyTarget::email("a@b.c, d@e.f", &[NotifyOn::Failure]),
                "notify[0].email",
            ),
            (
                NotifyTarget::email("A <a@b.c>", &[NotifyOn::Failure]),
                "notify[0].email",
            ),
            (
                NotifyTarget::email("a@@b", &[NotifyOn::Failure]),
                "notify[0].email",
            ),
        ];
        for (t, field) in cases {
            let e = t.validate("notify[0]").unwrap_err();
            assert_eq!(e.field, field, "{t:?}: {e}");
        }
        let mut both = ok.clone();
        both.email = "a@b.c".into();
        assert_eq!(both.validate("notify[0]").unwrap_err().field, "notify[0]");
        let mut slack_mail = NotifyTarget::email("a@b.c", &[NotifyOn::Failure]);
        slack_mail.format = "slack".into();
        assert_eq!(
            slack_mail.validate("notify[0]").unwrap_err().field,
            "notify[0].format"
        );
        let many = vec![ok; MAX_TARGETS + 1];
        assert_eq!(
            validate_targets("notify", &many).unwrap_err().field,
            "notify"
        );
    }

    #[test]
    fn outcomes_map_to_events() {
        assert_eq!(NotifyOn::of(Outcome::Failed), NotifyOn::Failure);
        for e in NotifyOn::ALL {
            assert_eq!(NotifyOn::parse(e.as_str()), Some(e));
        }
        assert_eq!(NotifyOn::parse("FAILURE"), None);
    }
}
