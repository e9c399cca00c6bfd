//! Delivering notifications from the outbox: a durable consumer per policy with at most one
//! notification in flight across all replicas (so a trigger is never overtaken by its
//! resolve), retried with backoff on 429, 5xx and transport errors until the receiver
//! accepts it, and finished without retry when the receiver rejects it (other 4xx).

pub mod consumers;
mod outbox_consumer;
pub mod pagerduty;
pub mod report;
pub mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};
use umpire_api::common::SecretKeyRef;
use umpire_api::compile::{PlannedRoute, RouteTarget, WebhookUrl};
use umpire_core::alert::notification::Notification;
use umpire_runtime::https::{JsonClient, TransportError, snippet};
use umpire_runtime::retry::Backoff;
use umpire_runtime::secrets::MountedSecrets;

use crate::metrics::{AlertMetrics, AttemptLabels};
pub use outbox_consumer::run_deliveries;
use report::{DeliveryObserver, DeliveryOutcome, PrintedRoutes};

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    /// Waits between attempts (exponential, full jitter, at least 50 ms).
    pub backoff: Backoff,
    /// Where Kubernetes mounts the policy's Secrets: `<dir>/<secret>/<key>`.
    pub secret_dir: Option<PathBuf>,
    /// Routes printed (reported as [`DeliveryOutcome::Printed`]) instead of sent.
    pub printed: PrintedRoutes,
    /// Told about every attempt's outcome.
    pub observer: Option<DeliveryObserver>,
    /// Where notifications may go (`None`: anywhere).
    pub egress: Option<umpire_runtime::egress::EgressPolicy>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60))
                .with_floor(Duration::from_millis(50)),
            secret_dir: None,
            printed: PrintedRoutes::None,
            observer: None,
            egress: None,
        }
    }
}

/// URL, extra headers and body of one delivery request.
type Request = (String, Vec<(HeaderName, HeaderValue)>, Bytes);

/// One attempt's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Do not retry: the receiver refused the notification itself.
    Rejected(String),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Not sent: printed (`umpire local --print-alerts`); this is the body.
    Printed(serde_json::Value),
}

pub struct Notifier {
    client: JsonClient,
    routes: HashMap<String, PlannedRoute>,
    settings: DeliverySettings,
    metrics: Arc<AlertMetrics>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the notifier: {0}")]
pub struct NotifierSetupError(String);

impl Notifier {
    pub fn new(
        routes: Vec<PlannedRoute>,
        settings: DeliverySettings,
        metrics: Arc<AlertMetrics>,
    ) -> Result<Self, NotifierSetupError> {
        let client = JsonClient::new(4, 64 << 10, settings.egress.clone())
            .map_err(|e| NotifierSetupError(e.to_string()))?;
        Ok(Self {
            client,
            routes: routes.into_iter().map(|r| (r.name.clone(), r)).collect(),
            settings,
            metrics,
        })
    }

    /// How long `route`'s notifications are retried (the default for unknown routes).
    pub fn max_delivery_age(&self, route: &str) -> Duration {
        self.routes
            .get(route)
            .map_or(umpire_api::compile::DEFAULT_MAX_DELIVERY_AGE, |r| {
                r.max_delivery_age
            })
    }

    /// A route's Secret value, read at every attempt (a rotated key is used at once).
    fn secret(&self, reference: &SecretKeyRef) -> Result<String, String> {
        MountedSecrets::new(self.settings.secret_dir.clone())
            .read(&reference.name, &reference.key)
            .map(|value| value.expose().to_owned())
            .map_err(|e| e.to_string())
    }

    /// Sends a notification once. Secrets are read at every attempt, so a rotated key is
    /// used without a restart.
    pub async fn attempt(&self, notification: &Notification) -> Attempt {
        let Some(route) = self.routes.get(&notification.route) else {
            return Attempt::Rejected(format!("route {} is not defined", notification.route));
        };
        if self.settings.printed.includes(&route.name) {
            return Attempt::Printed(report::preview(route, notification));
        }
        let prepared = match &route.target {
            RouteTarget::PagerDuty {
                url,
                routing_key,
                component,
                class,
            } => self.secret(routing_key).map(|key| {
                let fields = pagerduty::PagerDutyFields {
                    component: component.clone(),
                    class: class.clone(),
                };
                let body = pagerduty::event(notification, &key, &fields);
                (url.clone(), Vec::new(), Bytes::from(body.to_string()))
            }),
            RouteTarget::Webhook { url, hmac_key } => {
                self.webhook_request(notification, url, hmac_key.as_ref())
            }
        };
        let (url, headers, body) = match prepared {
            Ok(request) => request,
            // A Secret not mounted yet (or being rotated): worth retrying.
            Err(reason) => {
                return Attempt::Retry {
                    reason,
                    after: None,
                };
            }
        };
        let result = self
            .client
            .post_json(&url, &headers, body, self.settings.timeout)
            .await;
        let (label, attempt) = classify(result);
        self.metrics
            .attempts
            .get_or_create(&AttemptLabels {
                route: route.name.clone(),
                result: label,
            })
            .inc();
        attempt
    }

    fn webhook_request(
        &self,
        notification: &Notification,
        url: &WebhookUrl,
        hmac_key: Option<&SecretKeyRef>,
    ) -> Result<Request, String> {
        let url = match url {
            WebhookUrl::Plain(url) => url.clone(),
            WebhookUrl::Secret(secret) => self.secret(secret)?,
        };
        let body = Bytes::from(webhook::body(notification).to_string());
        let mut headers = Vec::new();
        if let Ok(id) = HeaderValue::from_str(&notification.id()) {
            headers.push((HeaderName::from_static("x-umpire-notification-id"), id));
        }
        if let Some(key) = hmac_key {
            let key = self.secret(key)?;
            let signature = webhook::signature(key.as_bytes(), &body);
            let value = HeaderValue::from_str(&signature).map_err(|e| e.to_string())?;
            headers.push((HeaderName::from_static("x-umpire-signature"), value));
        }
        Ok((url, headers, body))
    }

    fn report(&self, notification: &Notification, outcome: DeliveryOutcome) {
        if let Some(observer) = &self.settings.observer {
            observer.report(notification, outcome);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.settings.backoff.delay(attempt)
    }
}

fn classify(result: Result<umpire_runtime::https::Reply, TransportError>) -> (String, Attempt) {
    match result {
        Err(error) => (
            "transport".into(),
            Attempt::Retry {
                reason: error.to_string(),
                after: None,
            },
        ),
        Ok(reply) if reply.status.is_success() => ("2xx".into(), Attempt::Delivered),
        Ok(reply) if reply.status == StatusCode::TOO_MANY_REQUESTS => (
            "429".into(),
            Attempt::Retry {
                reason: "rate limited (429)".into(),
                after: reply.retry_after,
            },
        ),
        Ok(reply) if reply.status.is_server_error() => (
            "5xx".into(),
            Attempt::Retry {
                reason: format!("{}: {}", reply.status, snippet(&reply.text)),
                after: reply.retry_after,
            },
        ),
        Ok(reply) => (
            "4xx".into(),
            Attempt::Rejected(format!("{}: {}", reply.status, snippet(&reply.text))),
        ),
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn rfc3339(unix_nano: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nano))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Where notifications go when their route gave up on them: the project's dead-letter stream,
/// subject `umpire.dlq.<ns>.<project>.<policy>.notifications`, header `Umpire-Reason`.
#[derive(Clone)]
pub struct DeadLetters {
    js: async_nats::jetstream::Context,
    subject: String,
}

impl DeadLetters {
    pub fn new(
        js: async_nats::jetstream::Context,
        names: &umpire_nats::topology::ProjectNames,
        policy: &str,
    ) -> Self {
        Self {
            js,
            subject: names.notification_dead_letter_subject(policy),
        }
    }

    /// Stores `notification`; true once JetStream has it.
    pub async fn store(&self, notification: &Notification, reason: &str) -> bool {
        let Ok(payload) = serde_json::to_vec(notification) else {
            return false;
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Umpire-Reason",
            umpire_nats::headers::reason_value(reason).as_str(),
        );
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}/dead", notification.id()).as_str(),
        );
        match self
            .js
            .publish_with_headers(self.subject.clone(), headers, payload.into())
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        }
    }
}
