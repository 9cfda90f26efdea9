//! One delivery attempt: `POST` the CloudEvent to the subscription's URL, signed, bounded by
//! the per-delivery timeout, and reduced to an [`Outcome`].
//!
//! The target is checked again here (an IP-literal host by [`check_literal`], a host name by
//! the client's guarded resolver on every new connection), so a URL that became forbidden
//! since the subscription was created is refused without a request being made. Redirects are
//! not followed (a 3xx is a failure). The response body is never read. Error texts are
//! categories ("timeout", "connection failed", "target address not allowed"), never a URL,
//! and go into the delivery log that admins read.

use std::time::{Duration, Instant};

use chrono::Utc;
use platform::webhook::{self, TargetError, WebhookUrl};

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// Anything else; retried until the give-up deadline.
    Failed { status: Option<u16>, error: String },
}

/// What a sender needs besides the delivery itself.
#[derive(Clone)]
pub struct Sender {
    pub client: reqwest::Client,
    pub allow_private: bool,
    pub timeout: Duration,
}

/// One delivery to make.
pub struct Attempt<'a> {
    pub url: &'a str,
    pub body: &'a str,
    pub secret: &'a str,
    pub event_id: &'a str,
    pub delivery_id: i64,
}

impl Sender {
    /// Sends one attempt; returns the outcome and how long it took.
    pub async fn send(&self, attempt: &Attempt<'_>) -> (Outcome, Duration) {
        let started = Instant::now();
        let outcome = self.try_send(attempt).await;
        (outcome, started.elapsed())
    }

    async fn try_send(&self, attempt: &Attempt<'_>) -> Outcome {
        let target = match WebhookUrl::parse(attempt.url) {
            Ok(target) => target,
            Err(e) => return failed(None, e.to_string()),
        };
        if let Err(e) = webhook::check_literal(&target, self.allow_private) {
            return failed(None, e.to_string());
        }
        let signature = webhook::sign(
            attempt.secret,
            Utc::now().timestamp(),
            attempt.body.as_bytes(),
        );
        let request = self
            .client
            .post(target.url().clone())
            .timeout(self.timeout)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/cloudevents+json",
            )
            .header(webhook::SIGNATURE_HEADER, signature)
            .header("FileEngine-Event-Id", attempt.event_id)
            .header("FileEngine-Delivery-Id", attempt.delivery_id.to_string())
            .body(attempt.body.to_owned());
        match request.send().await {
            Ok(response) if response.status().is_success() => Outcome::Delivered {
                status: response.status().as_u16(),
            },
            Ok(response) => {
                let status = response.status();
                failed(Some(status.as_u16()), format!("receiver answered {status}"))
            }
            Err(e) => failed(None, describe(&e)),
        }
    }
}

fn failed(status: Option<u16>, error: String) -> Outcome {
    Outcome::Failed { status, error }
}

/// A category for a transport error, never including the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(target) = s.downcast_ref::<TargetError>() {
            return target.to_string();
        }
        source = s.source();
    }
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(allow_private: bool) -> Sender {
        Sender {
            client: webhook::delivery_client(allow_private).unwrap(),
            allow_private,
            timeout: Duration::from_secs(2),
        }
    }

    fn attempt(url: &str) -> Attempt<'_> {
        Attempt {
            url,
            body: "{}",
            secret: "whsec_test",
            event_id: "e1",
            delivery_id: 1,
        }
    }

    fn error_of(outcome: Outcome) -> String {
        match outcome {
            Outcome::Failed {
                status: None,
                error,
            } => error,
            other => panic!("expected a failure without a response, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn forbidden_literal_targets_are_refused_at_delivery_time() {
        let (outcome, _) = sender(false).send(&attempt("http://127.0.0.1:9/x")).await;
        assert!(error_of(outcome).contains("loopback"));
        let (outcome, _) = sender(true).send(&attempt("http://169.254.169.254/")).await;
        assert!(error_of(outcome).contains("link-local"));
    }

    #[tokio::test]
    async fn names_rebound_to_forbidden_addresses_are_refused_at_delivery_time() {
        // A name that passed the check at creation but now resolves to loopback.
        let (outcome, _) = sender(false).send(&attempt("http://localhost:9/x")).await;
        assert!(error_of(outcome).contains("loopback"));
    }

    #[tokio::test]
    async fn errors_never_quote_the_url() {
        let url = "http://127.0.0.1:1/secret-token-in-path";
        let (outcome, _) = sender(true).send(&attempt(url)).await;
        let error = error_of(outcome);
        assert!(!error.contains("secret-token"), "{error}");
        assert_eq!(error, "connection failed");
    }
}
