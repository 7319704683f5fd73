//! Email: one plain-text message per notice (or one summary for several)
//! through the SMTP server of `--smtp-url`, with lettre.

use std::time::Duration;

use kala_store::Notice;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::text;
use crate::{ConfigError, DeliveryError};

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `url`: `smtp://[user:pass@]host[:port]` (plain; `?tls=required`
    /// for STARTTLS, `?tls=opportunistic` for STARTTLS when offered) or
    /// `smtps://…` (TLS from the start).
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Mailer, ConfigError> {
        // lettre's rustls needs the process's crypto provider too.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| ConfigError::Smtp(format!("{}: {e}", redact(url))))?
            .timeout(Some(timeout))
            .build();
        kala_job::notify::check_email("--notify-from", from)
            .map_err(|e| ConfigError::From(e.message))?;
        let from: Mailbox = from
            .parse()
            .map_err(|e| ConfigError::From(format!("{from:?}: {e}")))?;
        Ok(Mailer { transport, from })
    }

    pub async fn send(&self, notice: &Notice) -> Result<(), DeliveryError> {
        self.send_text(
            &notice.target.email,
            &notice.id,
            text::subject(notice),
            text::body(notice),
        )
        .await
    }

    pub async fn summarize(&self, notices: &[Notice]) -> Result<(), DeliveryError> {
        let Some(first) = notices.first() else {
            return Ok(());
        };
        let (subject, body) = text::summary(notices);
        let id = format!("{}-summary-{}", first.id, notices.len());
        self.send_text(&first.target.email, &id, subject, body)
            .await
    }

    /// `notice_id` makes the `Message-ID` (RFC 5322): the same on every
    /// retry of one notification, so replies thread and filters dedup.
    async fn send_text(
        &self,
        to: &str,
        notice_id: &str,
        subject: String,
        body: String,
    ) -> Result<(), DeliveryError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| DeliveryError::permanent(format!("address {to:?}: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id(notice_id, self.from.email.domain())))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| DeliveryError::permanent(format!("building the message: {e}")))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            let message = format!("SMTP: {e}");
            if e.is_permanent() {
                DeliveryError::permanent(message)
            } else {
                DeliveryError::retry(message)
            }
        })
    }
}

/// `<notice-id@domain>`, with anything a msg-id may not hold in the id
/// replaced by `_`.
fn message_id(notice_id: &str, domain: &str) -> String {
    let id: String = notice_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("<kala.{id}@{domain}>")
}

/// `url` with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("smtp://me:secret@mail:587?tls=required"),
            "smtp://me:***@mail:587?tls=required"
        );
        assert_eq!(redact("smtp://mail:25"), "smtp://mail:25");
    }

    #[test]
    fn a_bad_url_or_sender_is_a_config_error() {
        let t = Duration::from_secs(1);
        assert!(Mailer::new("http://x", "a@b.c", t).is_err());
        assert!(Mailer::new("smtp://127.0.0.1:25", "not an address", t).is_err());
        assert!(Mailer::new("smtp://127.0.0.1:25", "kala@example.com", t).is_ok());
    }
}
