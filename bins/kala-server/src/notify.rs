//! The notification flags of `serve`: targets every job gets, the SMTP
//! server, the webhook signature's secret, retries and the email rate
//! limit; turned into the engine's [`NotifySettings`].

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use jiff::SignedDuration;
use kala_engine::NotifySettings;
use kala_engine::kala_notify::{Notifier, NotifierConfig};
use kala_job::{NotifyOn, NotifyTarget};

#[derive(Args, Debug, Clone)]
pub struct NotifyArgs {
    /// A webhook every job notifies (besides its own `notify` targets), on
    /// the events of --notify-on. Repeat for several.
    #[arg(
        long = "notify-webhook",
        env = "KALA_NOTIFY_WEBHOOK",
        value_delimiter = ','
    )]
    pub notify_webhook: Vec<String>,
    /// An email address every job notifies, on the events of --notify-on
    /// (needs --smtp-url). Repeat for several.
    #[arg(
        long = "notify-email",
        env = "KALA_NOTIFY_EMAIL",
        value_delimiter = ','
    )]
    pub notify_email: Vec<String>,
    /// The events of --notify-webhook and --notify-email: failure,
    /// success, retry, skipped, interrupted (comma-separated).
    #[arg(
        long = "notify-on",
        env = "KALA_NOTIFY_ON",
        value_delimiter = ',',
        default_value = "failure"
    )]
    pub notify_on: Vec<String>,
    /// The SMTP server for email: `smtp://user:pass@host:port` (user,
    /// password and port optional; add `?tls=required` for STARTTLS,
    /// `?tls=opportunistic` for STARTTLS when offered) or `smtps://…` (TLS
    /// from the start).
    #[arg(long = "smtp-url", env = "KALA_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The From: address of notification emails (default: kala@ and the
    /// host name).
    #[arg(long = "notify-from", env = "KALA_NOTIFY_FROM")]
    pub notify_from: Option<String>,
    /// Signs webhook bodies: the Kala-Signature header is the hex
    /// HMAC-SHA256 of the body with this key.
    #[arg(
        long = "notify-secret",
        env = "KALA_NOTIFY_SECRET",
        hide_env_values = true
    )]
    pub notify_secret: Option<String>,
    /// Seconds one delivery attempt may take.
    #[arg(
        long = "notify-timeout",
        env = "KALA_NOTIFY_TIMEOUT",
        default_value_t = 10
    )]
    pub notify_timeout: u64,
    /// Attempts before a notification is dropped (waits between them
    /// double from 1 s up to 5 min).
    #[arg(
        long = "notify-attempts",
        env = "KALA_NOTIFY_ATTEMPTS",
        default_value_t = 8
    )]
    pub notify_attempts: u32,
    /// Emails per job and address per --notify-email-window; the events
    /// past it are sent as one summary when the window ends.
    #[arg(
        long = "notify-email-burst",
        env = "KALA_NOTIFY_EMAIL_BURST",
        default_value_t = 5
    )]
    pub notify_email_burst: u32,
    /// Seconds of the email rate limit's window.
    #[arg(
        long = "notify-email-window",
        env = "KALA_NOTIFY_EMAIL_WINDOW",
        default_value_t = 600
    )]
    pub notify_email_window: u64,
}

impl NotifyArgs {
    pub fn settings(&self) -> anyhow::Result<NotifySettings> {
        let mut on = Vec::new();
        for e in &self.notify_on {
            let ev = NotifyOn::parse(e.trim()).with_context(|| {
                format!(
                    "--notify-on: {e:?} is not one of failure, success, retry, skipped, interrupted"
                )
            })?;
            on.push(ev);
        }
        let mut defaults: Vec<NotifyTarget> = self
            .notify_webhook
            .iter()
            .map(|u| NotifyTarget::webhook(u.trim(), &on))
            .collect();
        defaults.extend(
            self.notify_email
                .iter()
                .map(|a| NotifyTarget::email(a.trim(), &on)),
        );
        kala_job::notify::validate_targets("defaults", &defaults).map_err(|e| {
            let flag = if e.field.ends_with(".email") {
                "--notify-email"
            } else if e.field.ends_with(".on") {
                "--notify-on"
            } else {
                "--notify-webhook"
            };
            anyhow::anyhow!("{flag}: {}", e.message)
        })?;
        if !self.notify_email.is_empty() && self.smtp_url.is_none() {
            anyhow::bail!("--notify-email needs --smtp-url (the SMTP server that sends it)");
        }
        let from = self
            .notify_from
            .clone()
            .unwrap_or_else(|| format!("kala@{}", kala_engine::default_node_id()));
        let deliver = Notifier::shared(NotifierConfig {
            secret: self.notify_secret.clone().filter(|s| !s.is_empty()),
            smtp_url: self.smtp_url.clone().filter(|s| !s.is_empty()),
            from,
            timeout: Duration::from_secs(self.notify_timeout.max(1)),
        })?;
        Ok(NotifySettings {
            deliver: Some(deliver),
            defaults,
            max_attempts: self.notify_attempts.max(1),
            email_burst: self.notify_email_burst.max(1),
            email_window: SignedDuration::from_secs(
                i64::try_from(self.notify_email_window.max(1)).unwrap_or(i64::MAX),
            ),
            ..NotifySettings::default()
        })
    }
}
