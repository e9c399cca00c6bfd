//! Alert destinations.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, NAME_PATTERN, SecretKeyRef, URL_PATTERN};

/// The PagerDuty Events API v2 endpoint (US service region).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A named destination for alerts. Exactly one of `pagerDuty` or `webhook`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pagerDuty) != has(self.webhook)").message("a route needs exactly one of pagerDuty or webhook"))]
pub struct Route {
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pager_duty: Option<PagerDutyRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRoute>,
    /// How long a notification is retried; past it, it is moved to the project's dead-letter
    /// stream (counted in `umpire_notifications_dead_lettered_total`) so the route
    /// moves on. Default 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delivery_age: Option<Duration>,
}

/// PagerDuty Events API v2. Incidents trigger and resolve by themselves; the `dedup_key` is
/// stable per policy, rule and group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PagerDutyRoute {
    /// Secret key holding the integration's routing key.
    pub routing_key_secret_ref: SecretKeyRef,
    /// Events API URL. Default `https://events.pagerduty.com/v2/enqueue`; EU accounts use
    /// `https://events.eu.pagerduty.com/v2/enqueue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = URL_PATTERN))]
    pub url: Option<String>,
    /// `payload.component`. Default: the TraceProject name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub component: Option<String>,
    /// `payload.class`. Default: the judge or `latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub class: Option<String>,
}

/// A generic JSON webhook (body documented in the README), optionally HMAC-signed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of url or urlSecretRef"))]
pub struct WebhookRoute {
    /// The URL, when it holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = URL_PATTERN))]
    pub url: Option<String>,
    /// Secret key holding the URL (Slack-style URLs embed a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding an HMAC-SHA256 key: the body's signature is sent in
    /// `X-Umpire-Signature: sha256=<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_ref: Option<SecretKeyRef>,
}
