//! Watching deliveries from outside the notifier, and printing notifications instead of
//! sending them: `umpire local` shows each notification and the receiver's answer in its
//! view, and with `--print-alerts` (or a route whose Secret is absent) prints what would be
//! sent. Secrets never appear in a printed body: their place holds the Secret's name.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use umpire_api::compile::{PlannedRoute, RouteTarget};
use umpire_core::alert::notification::Notification;

use super::{pagerduty, webhook};

/// What became of one notification.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it after this many attempts.
    Delivered { attempts: u32 },
    /// The receiver refused it (not retried); its words.
    Rejected(String),
    /// This attempt failed; another follows.
    Retrying { attempt: u32, reason: String },
    /// Printed instead of sent: the body that would have been sent.
    Printed(Value),
    /// Retried for the route's `maxDeliveryAge`, then moved to the dead-letter stream.
    DeadLettered { attempts: u32, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    pub notification: Notification,
    pub outcome: DeliveryOutcome,
}

/// Receives every [`DeliveryReport`] of a notifier.
#[derive(Clone)]
pub struct DeliveryObserver(Arc<dyn Fn(DeliveryReport) + Send + Sync>);

impl DeliveryObserver {
    pub fn new(observe: impl Fn(DeliveryReport) + Send + Sync + 'static) -> Self {
        Self(Arc::new(observe))
    }

    pub(super) fn report(&self, notification: &Notification, outcome: DeliveryOutcome) {
        (self.0)(DeliveryReport {
            notification: notification.clone(),
            outcome,
        });
    }
}

impl std::fmt::Debug for DeliveryObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryObserver")
    }
}

/// Routes whose notifications are printed instead of sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum PrintedRoutes {
    #[default]
    None,
    All,
    Only(BTreeSet<String>),
}

impl PrintedRoutes {
    pub fn includes(&self, route: &str) -> bool {
        match self {
            PrintedRoutes::None => false,
            PrintedRoutes::All => true,
            PrintedRoutes::Only(routes) => routes.contains(route),
        }
    }
}

/// The body the route would send, with each Secret's value replaced by its reference.
pub fn preview(route: &PlannedRoute, notification: &Notification) -> Value {
    match &route.target {
        RouteTarget::PagerDuty {
            routing_key,
            component,
            class,
            ..
        } => {
            let placeholder = format!(
                "<from Secret {}, key {}>",
                routing_key.name, routing_key.key
            );
            let fields = pagerduty::PagerDutyFields {
                component: component.clone(),
                class: class.clone(),
            };
            pagerduty::event(notification, &placeholder, &fields)
        }
        RouteTarget::Webhook { .. } => webhook::body(notification),
    }
}
