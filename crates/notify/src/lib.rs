//! # kala-notify
//!
//! Delivery of kala's run notifications ([`kala_store::Notice`]): a
//! webhook gets a signed JSON POST (or a Slack/Mattermost message), an
//! email address a plain-text message over SMTP. One call is one attempt;
//! retries, backoff, rate limits and the outbox are the engine's.
//!
//! Owns: [`Deliver`] (what the engine calls), [`Notifier`] (the real
//! thing), the wire format of a webhook ([`webhook::body`]) and the text of
//! an email ([`text`]).

pub mod email;
pub mod text;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kala_store::Notice;

/// A boxed future (the trait is object-safe without `async-trait`).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub message: String,
    /// Trying again cannot help (a 4xx answer, no SMTP server
    /// configured): the notice is dropped now.
    pub permanent: bool,
}

impl DeliveryError {
    pub fn retry(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            message: message.into(),
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// What the engine's deliverer calls: one attempt each.
pub trait Deliver: Send + Sync + 'static {
    /// Delivers one notice to its target.
    fn deliver<'a>(&'a self, notice: &'a Notice) -> BoxFut<'a, Result<(), DeliveryError>>;

    /// One email standing for several notices of one job to one address
    /// (the rate limit's summary).
    fn summarize<'a>(&'a self, notices: &'a [Notice]) -> BoxFut<'a, Result<(), DeliveryError>>;

    /// Whether email targets can be delivered (an SMTP server is set).
    fn can_email(&self) -> bool;
}

/// How the [`Notifier`] reaches the world.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// The HMAC-SHA256 key of the `Kala-Signature` header; `None`: the
    /// header is not sent.
    pub secret: Option<String>,
    /// `smtp://[user:pass@]host[:port][?tls=required|opportunistic]` or
    /// `smtps://…` (implicit TLS); `None`: no email.
    pub smtp_url: Option<String>,
    /// The `From:` address of emails.
    pub from: String,
    /// Per attempt (connect, send, answer).
    pub timeout: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            secret: None,
            smtp_url: None,
            from: "kala@localhost".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--smtp-url: {0}")]
    Smtp(String),
    #[error("--notify-from: {0}")]
    From(String),
    #[error("webhook client: {0}")]
    Http(String),
}

/// Delivers notices over HTTP and SMTP.
pub struct Notifier {
    webhook: webhook::Webhooks,
    email: Option<email::Mailer>,
}

impl Notifier {
    pub fn new(config: NotifierConfig) -> Result<Notifier, ConfigError> {
        let webhook = webhook::Webhooks::new(config.secret.as_deref(), config.timeout)?;
        let email = match &config.smtp_url {
            None => None,
            Some(url) => Some(email::Mailer::new(url, &config.from, config.timeout)?),
        };
        Ok(Notifier { webhook, email })
    }

    pub fn shared(config: NotifierConfig) -> Result<Arc<dyn Deliver>, ConfigError> {
        Ok(Arc::new(Notifier::new(config)?))
    }
}

impl Deliver for Notifier {
    fn deliver<'a>(&'a self, notice: &'a Notice) -> BoxFut<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            if !notice.target.webhook.is_empty() {
                self.webhook.send(notice).await
            } else {
                match &self.email {
                    Some(m) => m.send(notice).await,
                    None => Err(no_smtp()),
                }
            }
        })
    }

    fn summarize<'a>(&'a self, notices: &'a [Notice]) -> BoxFut<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            match &self.email {
                Some(m) => m.summarize(notices).await,
                None => Err(no_smtp()),
            }
        })
    }

    fn can_email(&self) -> bool {
        self.email.is_some()
    }
}

fn no_smtp() -> DeliveryError {
    DeliveryError::permanent("no SMTP server is configured (--smtp-url)")
}
